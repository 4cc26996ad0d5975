"""What a report needs of the votes, and two ways to get it.

A report uses the votes for three things only: the quality-control table (the rules'
measures per annotator, then the researcher's decisions), the counted counts per pair
(the labels) and two totals. ``VoteTally`` is those. ``tally_frame`` computes it from a
votes frame (``StudyData.votes``: ``agreement_report``, the exact snapshot);
``tally_state`` from the live state's kept counts (``analysis/live.py``: the live
snapshot); ``tally_streamed`` builds such a state from the database a few thousand
sessions at a time, so a report over a million votes holds 13 bytes a vote instead of a
frame of them (the export and its bundle). The three give equal tables for the same
votes (``tests/analysis/test_tally.py``).
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis import live
from analysis.quality import EVIDENCE, Rules, annotator_quality, apply_decisions
from analysis.selectors import StudyData
from analysis.snapshot_selectors import session_counters, session_votes
from annotation import aggregation
from annotation.models import Study

# Sessions read per query by ``tally_streamed``: at most this many votes at a time (a
# session holds at most its quota; one larger than this is read alone).
STREAM_VOTES = 50_000


@dataclass(frozen=True)
class VoteTally:
    # the quality-control table with the decisions in force (``quality.apply_decisions``)
    annotators: pd.DataFrame
    # per pair, in the study's pair order: pair_id, is_gold, n_votes, n_a, n_similar, n_b,
    # p_a, majority (the votes that make labels: never practice, never excluded)
    labels: pd.DataFrame
    votes: int  # non-practice answers
    counted_votes: int  # label answers on study pairs that make labels

    @property
    def excluded(self) -> set:
        return set(self.annotators.loc[self.annotators["excluded"], "annotator"])


def pair_labels(votes: pd.DataFrame, pairs: pd.DataFrame) -> pd.DataFrame:
    """The labels of ``pairs`` (``pair_id``, ``gold_answer``; in their order) from
    ``votes`` (the counted ones)."""
    counts = aggregation.pair_counts(votes, pairs["pair_id"])
    return live.labels_frame(
        pairs["pair_id"].to_numpy(),
        (pairs["gold_answer"] != "").to_numpy(),
        counts[["n_a", "n_similar", "n_b"]].to_numpy(),
    )


def counted_votes(votes: pd.DataFrame, pairs: pd.DataFrame, excluded: set) -> pd.DataFrame:
    """The votes that make labels: study pairs' label answers (late ones too) and gold
    pairs' gold answers; never practice, never an excluded annotator's."""
    gold_ids = set(pairs.loc[pairs["gold_answer"] != "", "pair_id"])
    kind_fits = (votes["kind"] == "gold") == votes["pair_id"].isin(gold_ids)
    keep = kind_fits & (votes["kind"] != "practice") & ~votes["annotator"].isin(excluded)
    return votes[keep]


def tally_frame(data: StudyData) -> VoteTally:
    """From ``data.votes``."""
    annotators = apply_decisions(annotator_quality(data.votes, data.rules), data.decisions)
    excluded = set(annotators.loc[annotators["excluded"], "annotator"])
    votes = counted_votes(data.votes, data.pairs, excluded)
    return VoteTally(
        annotators=annotators,
        labels=pair_labels(votes, data.pairs),
        votes=int((data.votes["kind"] != "practice").sum()),
        counted_votes=int((votes["kind"] == "label").sum()),
    )


def tally_state(state: live.LiveState, data: StudyData) -> VoteTally:
    """From the live state's kept counts (built for ``data.pairs`` and ``data.rules``)."""
    annotators = apply_decisions(live.annotator_quality(state, data.rules), data.decisions)
    excluded = set(annotators.loc[annotators["excluded"], "annotator"])
    counts = live.counted_counts(state, excluded)  # (ordered by pair id)
    at = np.searchsorted(state.pair_ids, data.pairs["pair_id"].to_numpy(dtype=np.int64))
    labels = live.labels_frame(state.pair_ids[at], state.gold[at] >= 0, counts[at])
    return VoteTally(
        annotators=annotators,
        labels=labels,
        votes=int(state.stats[:, EVIDENCE.index("n_votes")].sum()),
        counted_votes=int(labels.loc[~labels["is_gold"], "n_votes"].sum()),
    )


def state_streamed(
    study: Study, pairs: pd.DataFrame, rules: Rules, *, chunk: int = STREAM_VOTES
) -> live.LiveState:
    """A live state (for ``pairs`` and ``rules``) of every vote of the study, read session
    by session in groups of at most ``chunk`` votes (a group is one query; the sessions
    read so far stay in the counters each group passes, so none of them reads as gone).
    Raises ``ValueError`` for a vote on a pair not in ``pairs``."""
    state = live.state_new(pairs, rules)
    counters = session_counters(study=study).sort_values("session_id", ignore_index=True)
    answered = counters["answered"].to_numpy(dtype=np.int64)
    start = 0
    while start < len(counters):
        end, total = start, 0
        while end < len(counters) and (end == start or total + answered[end] <= chunk):
            total += answered[end]
            end += 1
        ids = counters["session_id"].to_numpy()[start:end]
        votes = session_votes(study=study, session_ids=ids)
        state = live.state_apply(state, counters.iloc[:end], votes)
        # The votes read are these sessions' counts from now on: a vote committed since
        # the counters were read must not make a session read as changed (or gone) in
        # the next group, whose votes do not hold it.
        seen = state.seen[pd.Index(state.session_ids).get_indexer(ids)]
        counters.iloc[start:end, counters.columns.get_loc("answered")] = seen
        start = end
    return state


def tally_streamed(study: Study, data: StudyData, *, chunk: int = STREAM_VOTES) -> VoteTally:
    """``tally_state`` of ``state_streamed``: the tally without a frame of the votes."""
    return tally_state(state_streamed(study, data.pairs, data.rules, chunk=chunk), data)
