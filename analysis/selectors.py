"""The one read that feeds the statistics: a study's images, pairs, votes and scores as
data frames. Everything after this is pure functions on arrays."""

import tempfile
from dataclasses import dataclass, field

import pandas as pd
from django.db import connection
from django.db.models import Count, F, Q
from django.db.models.functions import Coalesce

from analysis.quality import DECISION_COLUMNS, Rules, no_decisions
from annotation.models import AnnotatorSession, ExclusionDecision, Image, Pair, Study, Vote
from scoring.models import Score
from scoring.selectors import scores_latest_versions


@dataclass(frozen=True)
class StudyData:
    slug: str
    design: str
    rules: Rules
    deltas: dict[str, float]
    # image_id, name, scene, condition, role, gold
    images: pd.DataFrame
    # pair_id, scene, image_a, image_b, gold_answer
    pairs: pd.DataFrame
    # vote_id, annotator, pair_id, kind, choice, preferred, late, response_ms, gold_answer
    votes: pd.DataFrame
    # metric, image_id, value, lower_better: the latest version's successful scores, FR
    # ones against the scene's reference
    scores: pd.DataFrame
    versions: dict[str, str] = field(default_factory=dict)
    # annotator, excluded, reason, decided_by, decided_at: the researcher's decision in
    # force per annotator (the latest), which overrides the rules for that annotator
    decisions: pd.DataFrame = field(default_factory=no_decisions)


def study_rules(study: Study) -> Rules:
    return Rules(
        min_gold_accuracy=study.qc_min_gold_accuracy,
        min_median_response_ms=study.qc_min_median_response_ms,
        side_bias_alpha=study.qc_side_bias_alpha,
        min_majority_agreement=study.qc_min_majority_agreement,
        max_similar_share=study.qc_max_similar_share,
        fast_response_ms=study.qc_fast_response_ms,
        test=study.qc_test,
        correction=study.qc_correction,
        alpha=study.qc_alpha,
        min_answers=study.qc_min_answers,
        min_gold=study.qc_min_gold,
    )


def exclusion_decisions(study: Study) -> pd.DataFrame:
    """The decision in force per annotator: each session's latest (by time, then id)."""
    rows = list(
        ExclusionDecision.objects.filter(session__study=study, session__pilot=False)
        .order_by("session_id", "decided_at", "id")
        .values_list(
            "session__pseudonym", "excluded", "reason", "decided_by__username", "decided_at"
        )
    )
    decisions = pd.DataFrame(rows, columns=DECISION_COLUMNS)
    return decisions.drop_duplicates("annotator", keep="last").reset_index(drop=True)


def study_votes(study: Study) -> pd.DataFrame:
    """Every vote of the study that counts, one query: vote_id, annotator (the pseudonym),
    pair_id, kind, choice, preferred, late, response_ms, gold_answer. Answers too fast to
    count (assignment rule 14) and pilot answers (a researcher's preview) are left out;
    ``response_ms`` is the server's measure where
    there is one (the client's for imported votes): what quality control judges."""
    return pd.DataFrame(
        list(
            Vote.objects.filter(pair__study=study, too_fast=False, pilot=False).values(
                "pair_id",
                "kind",
                "choice",
                "preferred",
                "late",
                vote_id=F("id"),
                measured_ms=Coalesce("server_ms", "response_ms"),
                annotator=F("session__pseudonym"),
                gold_answer=F("pair__gold_answer"),
            )
        ),
        columns=["vote_id", "annotator", "pair_id", "kind", "choice", "preferred", "late",
         "measured_ms", "gold_answer"],
    ).rename(columns={"measured_ms": "response_ms"})  # fmt: skip


_VOTE_COLUMNS = ["vote_id", "annotator", "pair_id", "kind", "choice", "preferred", "late",
                 "response_ms", "gold_answer"]  # fmt: skip
_COMPACT_VOTES = """
    COPY (
        SELECT v.id, s.pseudonym, v.pair_id, v.kind, v.choice, v.preferred, v.late,
               coalesce(v.server_ms, v.response_ms), p.gold_answer
        FROM {vote} v
        JOIN {pair} p ON p.id = v.pair_id
        JOIN {session} s ON s.id = v.session_id
        WHERE p.study_id = {study} AND NOT v.too_fast AND NOT v.pilot
        ORDER BY v.id
    ) TO STDOUT WITH (FORMAT csv, HEADER false)
"""


def study_votes_compact(study: Study) -> pd.DataFrame:
    """``study_votes``'s frame for a study of any size (the export's report reads it):
    PostgreSQL streams the rows with ``COPY`` into a temporary file that pandas parses, so
    no row is ever a Python object and the text columns are packed strings (tens of bytes
    a vote instead of about a kilobyte). The same columns and values, ordered by vote id;
    ``vote_id`` is its text. Other databases: ``study_votes``."""
    if connection.vendor != "postgresql":
        return study_votes(study)
    sql = _COMPACT_VOTES.format(
        vote=Vote._meta.db_table,
        pair=Pair._meta.db_table,
        session=AnnotatorSession._meta.db_table,
        study=int(study.pk),
    )
    with tempfile.TemporaryFile() as spool:
        with connection.cursor() as cursor, cursor.cursor.copy(sql) as copy:
            for block in copy:
                spool.write(block)
        spool.seek(0)
        text = dict.fromkeys(["vote_id", "annotator", "kind", "choice", "preferred"], "str")
        return pd.read_csv(
            spool,
            header=None,
            names=_VOTE_COLUMNS,
            dtype={**text, "gold_answer": "str", "pair_id": "int64"},
            true_values=["t"],
            false_values=["f"],
            keep_default_na=False,
            na_values={"response_ms": [""]},
        )


def study_data(study: Study, *, compact_votes: bool = False, votes: bool = True) -> StudyData:
    """Seven queries, whatever the study's size. ``compact_votes`` reads the votes with
    ``study_votes_compact`` (the exact snapshot: a million votes in a fraction of the memory);
    ``votes=False`` reads none (an empty frame: the live report keeps its own counts)."""
    images = pd.DataFrame(
        list(
            Image.objects.filter(scene__study=study).values(
                "name", "condition", "role", "gold", image_id=F("id"), scene_name=F("scene__name")
            )
        ),
        columns=["image_id", "name", "scene_name", "condition", "role", "gold"],
    ).rename(columns={"scene_name": "scene"})
    pairs = pd.DataFrame(
        list(
            Pair.objects.filter(study=study).values(
                "gold_answer",
                pair_id=F("id"),
                scene_name=F("scene__name"),
                a=F("image_a_id"),
                b=F("image_b_id"),
            )
        ),
        columns=["pair_id", "scene_name", "a", "b", "gold_answer"],
    ).rename(columns={"scene_name": "scene", "a": "image_a", "b": "image_b"})
    read = study_votes_compact if compact_votes else study_votes
    votes = read(study) if votes else pd.DataFrame(columns=_VOTE_COLUMNS)
    # A metric's scores of its most recent version with successful scores (pyiqa or the
    # weights may have changed; a later run that only failed hides nothing).
    study_scores = Score.objects.filter(image__scene__study=study)
    latest = scores_latest_versions(study)
    references = dict(
        Image.objects.filter(scene__study=study, role=Image.Role.REFERENCE).values_list(
            "scene_id", "id"
        )
    )
    rows = list(
        study_scores.filter(error="").values_list(
            "metric", "version", "image_id", "reference_id", "value", "lower_better",
            "image__scene_id",
        )
    )  # fmt: skip
    scores = pd.DataFrame(
        rows,
        columns=["metric", "version", "image_id", "reference_id", "value", "lower_better",
                 "scene_id"],
    )  # fmt: skip
    current = scores["version"].to_numpy() == scores["metric"].map(latest).to_numpy()
    # FR scores against the scene's reference; NR scores have none.
    against = scores["reference_id"].isna() | (
        scores["reference_id"] == scores["scene_id"].map(references)
    )
    scores = scores[current & against][["metric", "image_id", "value", "lower_better"]]
    return StudyData(
        slug=study.slug,
        design=study.design,
        rules=study_rules(study),
        deltas={name: float(value) for name, value in (study.metric_deltas or {}).items()},
        images=images,
        pairs=pairs,
        votes=votes,
        scores=scores.reset_index(drop=True),
        versions=latest,
        decisions=exclusion_decisions(study),
    )


def scene_pair_counts(scene_id: int) -> pd.DataFrame:
    """A scene's pairs (gold pairs aside) with their counted votes, one query: pair_id,
    image_a, image_b, n_a, n_similar, n_b. Counted: label votes, not too fast, not a
    pilot's (what assignment counts toward a pair's target); exclusions by quality control
    are not applied (active sampling plans on every vote that cost the study)."""
    counted = Q(votes__kind="label", votes__too_fast=False, votes__pilot=False)
    rows = (
        Pair.objects.filter(scene_id=scene_id, gold_answer="")
        .order_by("pk")
        .values("image_a", "image_b", pair_id=F("pk"))
        .annotate(
            n_a=Count("votes", filter=counted & Q(votes__preferred="a")),
            n_similar=Count("votes", filter=counted & Q(votes__preferred="similar")),
            n_b=Count("votes", filter=counted & Q(votes__preferred="b")),
        )
    )
    return pd.DataFrame(
        list(rows), columns=["pair_id", "image_a", "image_b", "n_a", "n_similar", "n_b"]
    )
