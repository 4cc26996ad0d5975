"""The live agreement report, kept up to date as votes arrive instead of recomputed.

Pure functions on arrays (no ORM); ``services.agreement_snapshot_refresh`` feeds them.

What is kept (``LiveState``, per study in the worker process, checkpointed to
``AgreementState.data`` at most every ``services.STATE_CHECKPOINT_SECONDS``):

- every vote read so far in compact arrays (session, pair, kind, answer, side, response
  time: 13 bytes a vote);
- per pair, the counts of a/similar/b among the non-practice votes whose kind fits the
  pair (label votes on study pairs, gold votes on gold pairs) of every annotator, and
  among the label votes (the leave-one-out majority of quality control counts those);
- per annotator (session), the counts ``quality.quality_table`` judges and the median
  response time;
- per variant (in the variant's snapshot row, ``fits_dump``), the scene fits and the
  counts they were fitted on (the warm start).

How the new votes are found. Vote ids are UUIDs, so there is no high-water mark in the
votes themselves; the sessions' answer counters are one (every vote increments its
session's ``n_done`` or ``n_practice_done`` in the statement that inserts it, so a
session's counter equals its vote rows at every commit). A refresh reads the counters
first, then the full vote list of every session whose counter differs from the votes
read for it last time (a session has at most its quota of votes): the session's old
rows and counts are replaced by the new ones. A vote whose transaction commits late is
picked up by the next refresh that sees its counter; a retry adds no row and no count;
a late answer is a vote like any other; a session that is gone loses its rows. Nothing
is regrouped from all votes: the pair counts move by the changed sessions' votes only,
and the majority agreement of quality control moves by the votes on the pairs those
touch (their leave-one-out majorities before and after).

Exclusions do not change votes, only which annotators count: the counted counts are
the kept counts minus the excluded annotators' votes. Only the scenes whose counted
counts changed are refitted, each warm-started from its previous fit.
"""

import io
from dataclasses import dataclass, field, fields

import numpy as np
import pandas as pd

from analysis import scaling
from analysis.quality import EVIDENCE, Rules, quality_table
from annotation import aggregation

KINDS = ("label", "gold", "practice")
ANSWERS = tuple(aggregation.ANSWERS)  # a, similar, b
CHOICES = ("left", "similar", "right")
LABEL, GOLD, PRACTICE = 0, 1, 2
# Session counter columns and vote columns the refresh reads.
COUNTER_COLUMNS = ["session_id", "pseudonym", "answered"]
VOTE_COLUMNS = ["session_id", "pair_id", "kind", "choice", "preferred", "response_ms"]


def _i(n: int = 0, dtype=np.int64) -> np.ndarray:
    return np.zeros(n, dtype=dtype)


@dataclass
class LiveState:
    """The kept arrays (see the module docstring); ``thresholds`` are the rules' response
    times the counts ``n_fast`` / ``n_below`` were counted with (NaN: the rule is off)."""

    thresholds: np.ndarray  # [fast_response_ms, min_median_response_ms]
    pair_ids: np.ndarray  # sorted; the study's pairs
    gold: np.ndarray  # per pair: the gold answer's index in ANSWERS, -1 when not gold
    session_ids: np.ndarray
    pseudonyms: np.ndarray
    seen: np.ndarray  # per session: its votes read
    v_session: np.ndarray = field(default_factory=lambda: _i(0, np.int32))
    v_pair: np.ndarray = field(default_factory=lambda: _i(0, np.int32))
    v_kind: np.ndarray = field(default_factory=lambda: _i(0, np.int8))
    v_answer: np.ndarray = field(default_factory=lambda: _i(0, np.int8))
    v_choice: np.ndarray = field(default_factory=lambda: _i(0, np.int8))
    v_ms: np.ndarray = field(default_factory=lambda: _i(0, np.int32))  # -1: not timed
    fit_counts: np.ndarray = field(default_factory=lambda: _i(0).reshape(0, 3))
    label_counts: np.ndarray = field(default_factory=lambda: _i(0).reshape(0, 3))
    stats: np.ndarray = field(default_factory=lambda: _i(0).reshape(0, len(EVIDENCE)))
    medians: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def votes(self) -> int:
        return len(self.v_session)


def thresholds(rules: Rules) -> np.ndarray:
    below = rules.min_median_response_ms
    return np.array([rules.fast_response_ms, np.nan if below is None else below], dtype=float)


def state_new(pairs: pd.DataFrame, rules: Rules) -> LiveState:
    """An empty state for the study's pairs (``pair_id``, ``gold_answer``)."""
    ordered = pairs.sort_values("pair_id")
    answer = {name: code for code, name in enumerate(ANSWERS)}
    gold = ordered["gold_answer"].map(answer).fillna(-1).to_numpy().astype(np.int8)
    n = len(ordered)
    return LiveState(
        thresholds=thresholds(rules),
        pair_ids=ordered["pair_id"].to_numpy(dtype=np.int64),
        gold=gold,
        session_ids=_i(),
        pseudonyms=np.array([], dtype="U64"),
        seen=_i(),
        fit_counts=_i(n * 3).reshape(n, 3),
        label_counts=_i(n * 3).reshape(n, 3),
    )


def state_fits(state: LiveState, pairs: pd.DataFrame, rules: Rules) -> bool:
    """Whether the state was built for these pairs and these thresholds (else rebuild)."""
    return np.array_equal(
        state.pair_ids, np.sort(pairs["pair_id"].to_numpy(dtype=np.int64))
    ) and np.array_equal(state.thresholds, thresholds(rules), equal_nan=True)


def changed_sessions(state: LiveState, counters: pd.DataFrame) -> np.ndarray:
    """Ids of the sessions whose answer counter differs from their votes read (new
    sessions with answers included) and of the sessions that are gone."""
    kept = pd.Series(state.seen, index=state.session_ids)
    now = pd.Series(counters["answered"].to_numpy(dtype=np.int64), index=counters["session_id"])
    differ = now.index[now.to_numpy() != kept.reindex(now.index).fillna(0).to_numpy()]
    gone = kept[kept > 0].index.difference(now.index)
    return np.union1d(differ.to_numpy(dtype=np.int64), gone.to_numpy(dtype=np.int64))


def _loo(state: LiveState, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For the label votes ``rows``: (has a leave-one-out majority, agrees with it), from
    the state's current label counts (``quality.leave_one_out_majority``)."""
    answer = state.v_answer[rows].astype(np.int64)
    others = state.label_counts[state.v_pair[rows]].copy()
    others[np.arange(len(rows)), answer] -= 1
    loo = aggregation.majority(others[:, 0], others[:, 1], others[:, 2])
    has = loo != aggregation.NONE
    return has, has & (loo == np.array(ANSWERS, dtype=object)[answer])


def _majority_evidence(state: LiveState, pairs: np.ndarray, sign: int) -> None:
    """Add (``sign`` 1) or take away (-1) the majority evidence of every label vote on
    ``pairs`` (pair indices), as the state's label counts stand now."""
    rows = np.flatnonzero((state.v_kind == LABEL) & np.isin(state.v_pair, pairs))
    has, agrees = _loo(state, rows)
    n = len(state.session_ids)
    column = EVIDENCE.index("n_majority"), EVIDENCE.index("n_agree")
    who = state.v_session[rows]
    state.stats[:, column[0]] += sign * np.bincount(who[has], minlength=n)
    state.stats[:, column[1]] += sign * np.bincount(who[agrees], minlength=n)


def _pair_counts(state: LiveState, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(fitting counts, label counts) of the vote ``rows``, both (pairs, 3)."""
    n = len(state.pair_ids)
    pair, answer, kind = state.v_pair[rows], state.v_answer[rows], state.v_kind[rows]
    fits = (kind != PRACTICE) & ((kind == GOLD) == (state.gold[pair] >= 0))
    label = kind == LABEL

    def count(keep):
        return np.bincount(pair[keep] * 3 + answer[keep], minlength=3 * n).reshape(n, 3)

    return count(fits), count(label)


def _session_stats(state: LiveState, sessions: np.ndarray) -> None:
    """Recount the per-session evidence other than the majority agreement of
    ``sessions`` (session indices) from their rows, and their medians."""
    rows = np.flatnonzero(np.isin(state.v_session, sessions))
    rows = rows[state.v_kind[rows] != PRACTICE]
    who = state.v_session[rows]
    kind, answer, choice = state.v_kind[rows], state.v_answer[rows], state.v_choice[rows]
    ms = state.v_ms[rows].astype(np.float64)
    timed = ms >= 0
    n = len(state.session_ids)
    fast, below = state.thresholds
    gold = kind == GOLD
    values = {
        "n_votes": np.ones(len(rows), dtype=bool),
        "n_gold": gold,
        "n_gold_right": gold & (answer == state.gold[state.v_pair[rows]]),
        "n_timed": timed,
        "n_fast": timed & (ms < fast),
        "n_below": timed & (ms < below) if np.isfinite(below) else np.zeros(len(rows), bool),
        "n_left": choice == 0,
        "n_sided": choice != 1,
        "n_similar": choice == 1,
    }
    for name, mask in values.items():
        state.stats[sessions, EVIDENCE.index(name)] = np.bincount(who[mask], minlength=n)[sessions]
    medians = pd.Series(ms[timed]).groupby(who[timed]).median()
    state.medians[sessions] = medians.reindex(sessions).to_numpy()


def state_apply(
    state: LiveState, counters: pd.DataFrame, votes: pd.DataFrame, changed: np.ndarray | None = None
) -> LiveState:
    """The state with the sessions of ``votes`` replaced by their votes there.

    ``counters``: every session of the study with answers (``COUNTER_COLUMNS``), read
    before ``votes``; ``votes``: the full vote lists (``VOTE_COLUMNS``) of the sessions
    ``changed_sessions`` named (``changed``, when the caller has them). A changed session
    with no row in ``votes`` (gone) loses its rows. Raises ``ValueError`` for a vote on a
    pair the state does not know."""
    if changed is None:
        changed = changed_sessions(state, counters)
    known = pd.Index(state.session_ids)
    new = pd.Index(changed).difference(known)
    if len(new):
        names = counters.set_index("session_id")["pseudonym"].reindex(new)
        state.session_ids = np.concatenate([state.session_ids, new.to_numpy(dtype=np.int64)])
        state.pseudonyms = np.concatenate([state.pseudonyms, names.to_numpy(dtype=str)])
        state.seen = np.concatenate([state.seen, _i(len(new))])
        state.stats = np.vstack(
            [state.stats, _i(len(new) * len(EVIDENCE)).reshape(-1, len(EVIDENCE))]
        )
        state.medians = np.concatenate([state.medians, np.full(len(new), np.nan)])
    index = pd.Index(state.session_ids)
    touched = index.get_indexer(changed)
    old_rows = np.flatnonzero(np.isin(state.v_session, touched))

    votes = votes[votes["session_id"].isin(changed)]
    pair = pd.Index(state.pair_ids).get_indexer(votes["pair_id"])
    if (pair < 0).any():
        raise ValueError("votes on pairs the live state does not know: rebuild it")
    add = {
        "v_session": index.get_indexer(votes["session_id"]).astype(np.int32),
        "v_pair": pair.astype(np.int32),
        "v_kind": pd.Categorical(votes["kind"], categories=KINDS).codes.astype(np.int8),
        "v_answer": pd.Categorical(votes["preferred"], categories=ANSWERS).codes.astype(np.int8),
        "v_choice": pd.Categorical(votes["choice"], categories=CHOICES).codes.astype(np.int8),
        "v_ms": votes["response_ms"].astype("float64").fillna(-1).to_numpy().astype(np.int32),
    }
    pairs_touched = np.union1d(state.v_pair[old_rows], add["v_pair"])
    _majority_evidence(state, pairs_touched, -1)
    old_fit, old_label = _pair_counts(state, old_rows)
    keep = np.ones(state.votes, dtype=bool)
    keep[old_rows] = False
    for name, values in add.items():
        setattr(state, name, np.concatenate([getattr(state, name)[keep], values]))
    new_rows = np.arange(state.votes - len(votes), state.votes)
    new_fit, new_label = _pair_counts(state, new_rows)
    state.fit_counts += new_fit - old_fit
    state.label_counts += new_label - old_label
    _majority_evidence(state, pairs_touched, 1)
    _session_stats(state, touched)
    state.seen[touched] = np.bincount(add["v_session"], minlength=len(index))[touched]
    return state


def annotator_quality(state: LiveState, rules: Rules) -> pd.DataFrame:
    """``quality.annotator_quality``'s table from the kept counts: the annotators with a
    non-practice answer, sorted by name."""
    has = state.stats[:, EVIDENCE.index("n_votes")] > 0
    order = np.flatnonzero(has)[np.argsort(state.pseudonyms[has], kind="stable")]
    evidence = {name: state.stats[order, c] for c, name in enumerate(EVIDENCE)}
    table = quality_table(state.pseudonyms[order].astype(object), evidence,
                          state.medians[order], rules)  # fmt: skip
    return table


def counted_counts(state: LiveState, excluded: set) -> np.ndarray:
    """(pairs, 3) counts of the votes that make labels: the kept fitting counts minus the
    excluded annotators' votes."""
    if not excluded:
        return state.fit_counts.copy()
    out = np.isin(state.pseudonyms, list(excluded))
    rows = np.flatnonzero(out[state.v_session])
    fits, _ = _pair_counts(state, rows)
    return state.fit_counts - fits


def labels(state: LiveState, counts: np.ndarray) -> pd.DataFrame:
    """``tally.pair_labels``'s frame (ordered by pair id) from counted counts."""
    return labels_frame(state.pair_ids, state.gold >= 0, counts)


def labels_frame(pair_ids: np.ndarray, is_gold: np.ndarray, counts: np.ndarray) -> pd.DataFrame:
    """The labels frame of these pairs from their (pairs, 3) counts of a/similar/b: counts,
    share for a (similar counts a half) and the DiffIQA majority."""
    n_a, n_s, n_b = counts[:, 0], counts[:, 1], counts[:, 2]
    out = pd.DataFrame({"pair_id": pair_ids, "is_gold": is_gold})
    out["n_votes"] = counts.sum(axis=1)
    out["n_a"], out["n_similar"], out["n_b"] = n_a, n_s, n_b
    out["p_a"] = aggregation.p_a(n_a, n_s, out["n_votes"].to_numpy())
    out["majority"] = aggregation.majority(n_a, n_s, n_b)
    return out


def image_scores(
    pair_ids: np.ndarray, study_pairs: pd.DataFrame, images: pd.DataFrame, previous: tuple | None
) -> tuple[pd.DataFrame, int, tuple]:
    """The compared images' Thurstone and Bradley-Terry scores with the columns the
    snapshot uses (scene, image, condition, image_id, n_votes, thurstone,
    thurstone_0_100, bradley_terry), refitting only the scenes whose counts changed since
    the ``previous`` fits (``fits_load``), each warm-started from them; how many scenes
    were refitted; and the fits to keep (``pair_ids``: the study's, sorted)."""
    layout, ia, ib = scaling.scene_layout(study_pairs)
    codes, names = pd.factorize(layout["scene"], sort=True)
    sizes = np.bincount(codes, minlength=len(names))
    pair_scene = pd.Series(np.arange(len(names)), index=names)[study_pairs["scene"]].to_numpy()
    counts = study_pairs[["n_a", "n_similar", "n_b"]].to_numpy(dtype=np.int64)
    where = pd.Index(pair_ids).get_indexer(study_pairs["pair_id"])
    now = np.zeros((len(pair_ids), 3), dtype=np.int32)
    now[where] = counts
    results = {m: np.zeros(len(layout)) for m in scaling.MODELS}
    dirty = np.ones(len(names), dtype=bool)
    if previous is not None:
        fitted, ids, old = previous
        moved = (fitted[where] != counts).any(axis=1)
        dirty = np.bincount(pair_scene[moved], minlength=len(names)) > 0
        at = pd.Index(ids).get_indexer(layout["image_id"])
        for m, model in enumerate(scaling.MODELS):
            results[model] = np.where(at >= 0, old[m][at], 0.0)
        dirty |= np.bincount(codes[at < 0], minlength=len(names)) > 0
    local = layout["local"].to_numpy()
    for k in np.unique(sizes[dirty]):
        scenes = np.flatnonzero(dirty & (sizes == k))
        slot = np.full(len(names), -1)
        slot[scenes] = np.arange(len(scenes))
        chosen = np.isin(pair_scene, scenes)
        stack = scaling.count_matrices(
            slot[pair_scene[chosen]], ia[chosen], ib[chosen], counts[chosen, 0],
            counts[chosen, 1], counts[chosen, 2], len(scenes), int(k),
        )  # fmt: skip
        members = np.isin(codes, scenes)
        at = (slot[codes[members]], local[members])
        for model in scaling.MODELS:
            start = np.zeros((len(scenes), int(k)))
            start[at] = results[model][members]
            results[model][members] = scaling.fit(stack, model, initial=start)[at]
    fits = (now, layout["image_id"].to_numpy(dtype=np.int64),
            np.stack([results["thurstone"], results["bradley-terry"]]))  # fmt: skip
    out = layout[["scene", "image_id"]].copy()
    for model, column in (("thurstone", "thurstone"), ("bradley-terry", "bradley_terry")):
        out[column] = scaling.merge_ties(results[model], codes)
    out["thurstone_0_100"] = scaling.scaled_0_100(out["thurstone"].to_numpy(), groups=codes)
    n_votes = np.bincount(
        np.concatenate([layout_index(layout, study_pairs["image_a"]),
                        layout_index(layout, study_pairs["image_b"])]),
        weights=np.tile(counts.sum(axis=1), 2), minlength=len(layout),
    )  # fmt: skip
    out["n_votes"] = n_votes.astype(np.int64)
    info = images.set_index("image_id")
    out["image"] = info["name"].reindex(out["image_id"]).to_numpy()
    out["condition"] = info["condition"].reindex(out["image_id"]).to_numpy()
    return out.reset_index(drop=True), int(dirty.sum()), fits


def layout_index(layout: pd.DataFrame, image_ids) -> np.ndarray:
    return pd.Index(layout["image_id"]).get_indexer(np.asarray(image_ids))


_ARRAYS = [f.name for f in fields(LiveState)]
_FITS = ["counts", "image_ids", "values"]


def _dump(arrays: dict) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def state_dump(state: LiveState) -> bytes:
    """The state as ``.npz`` bytes (no pickles)."""
    return _dump({name: getattr(state, name) for name in _ARRAYS})


def state_load(data: bytes) -> LiveState:
    with np.load(io.BytesIO(bytes(data)), allow_pickle=False) as stored:
        return LiveState(**{name: stored[name] for name in _ARRAYS})


def fits_dump(fits: tuple) -> bytes:
    return _dump(dict(zip(_FITS, fits, strict=True)))


def fits_load(data: bytes | None) -> tuple | None:
    if not data:
        return None
    with np.load(io.BytesIO(bytes(data)), allow_pickle=False) as stored:
        return tuple(stored[name] for name in _FITS)
