"""``export_study``: a study's tables as CSV, Parquet or JSON Lines, plus a datasheet.

Raw and complete: every vote is exported, practice and gold included and marked, so
nothing is hidden from the researcher. Images are named by their stable name in the
study (``scene/file.png``) in every table. Each file is written beside its final name
and moved into place, so a failed export never leaves a half-written table.
"""

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd
from django.db.models import F

from analysis.report import study_report
from analysis.selectors import study_data
from annotation import designs
from annotation.models import AnnotatorSession, Image, Pair, Study, Trial, Vote
from core.errors import DomainError
from scoring.selectors import scores_frame

FORMATS = ("csv", "parquet", "jsonl")

VOTE_COLUMNS = [
    "vote_id", "trial_id", "scene", "pair_id", "image_a", "image_b", "reference",
    "left_image", "right_image", "choice", "preferred", "annotator", "is_gold",
    "is_practice", "is_late", "excluded", "response_ms", "device_pixel_ratio",
    "viewport_width", "viewport_height", "created_at",
]  # fmt: skip
PAIR_COLUMNS = [
    "pair_id", "scene", "image_a", "image_b", "reference", "condition_a", "condition_b",
    "shown_reference", "is_gold", "gold_answer", "target_votes", "n_votes", "n_a",
    "n_similar", "n_b", "p_a", "majority",
]  # fmt: skip
SESSION_COLUMNS = [
    "annotator", "source", "created_at", "completed_at", "n_done", "n_practice_done",
    "device_pixel_ratio", "viewport_width", "viewport_height", "user_agent",
]  # fmt: skip


class ExportError(DomainError):
    code = "export_refused"


@dataclass(frozen=True)
class WrittenTable:
    name: str
    path: Path
    rows: int


def _references(study: Study) -> dict[int, str]:
    """Scene id -> its reference's name, for designs whose metrics score against it."""
    if not designs.is_full_reference(study.design):
        return {}
    return dict(
        Image.objects.filter(scene__study=study, role=Image.Role.REFERENCE).values_list(
            "scene_id", "name"
        )
    )


def _client_columns(frame: pd.DataFrame, keys: tuple[str, ...]) -> None:
    """Spread the ``client_info`` JSON into one column per key (None where absent)."""
    for key in keys:
        frame[key] = frame["client_info"].map(lambda info, key=key: (info or {}).get(key))


def pairs_frame(study: Study, labels: pd.DataFrame) -> pd.DataFrame:
    """The study's pairs with their labels (``labels``: pair_id, n_votes, n_a, n_similar,
    n_b, p_a, majority, from the report, after exclusions)."""
    rows = list(
        Pair.objects.filter(study=study)
        .order_by("scene__name", "id")
        .values(
            "scene_id",
            "target_votes",
            "gold_answer",
            pair_id=F("id"),
            scene_name=F("scene__name"),
            image_a_name=F("image_a__name"),
            image_b_name=F("image_b__name"),
            condition_a=F("image_a__condition"),
            condition_b=F("image_b__condition"),
            shown_reference_name=F("shown_reference__name"),
        )
    )
    pairs = pd.DataFrame(
        rows,
        columns=[
            "scene_id", "target_votes", "gold_answer", "pair_id", "scene_name", "image_a_name",
            "image_b_name", "condition_a", "condition_b", "shown_reference_name",
        ],
    ).rename(columns=lambda c: c.removesuffix("_name"))  # fmt: skip
    references = _references(study)
    pairs["reference"] = pairs["scene_id"].map(references).fillna("")
    pairs["shown_reference"] = pairs["shown_reference"].fillna("")
    pairs["is_gold"] = pairs["gold_answer"] != ""
    label_columns = ["n_votes", "n_a", "n_similar", "n_b", "p_a", "majority"]
    pairs = pairs.merge(labels[["pair_id", *label_columns]], on="pair_id", how="left")
    return pairs[PAIR_COLUMNS]


def votes_frame(study: Study, excluded: set[str]) -> pd.DataFrame:
    rows = list(
        Vote.objects.filter(pair__study=study)
        .order_by("created_at", "id")
        .values(
            "pair_id",
            "choice",
            "preferred",
            "response_ms",
            "created_at",
            "kind",
            "client_info",
            "trial_id",
            vote_id=F("id"),
            scene_id=F("pair__scene_id"),
            scene_name=F("pair__scene__name"),
            image_a_name=F("pair__image_a__name"),
            image_b_name=F("pair__image_b__name"),
            a_on_left=F("trial__a_on_left"),
            annotator=F("session__pseudonym"),
            is_late=F("late"),
        )
    )
    columns = [
        "pair_id", "choice", "preferred", "response_ms", "created_at", "kind", "client_info",
        "trial_id", "vote_id", "scene_id", "scene_name", "image_a_name", "image_b_name",
        "a_on_left", "annotator", "is_late",
    ]  # fmt: skip
    votes = pd.DataFrame(rows, columns=columns).rename(columns=lambda c: c.removesuffix("_name"))
    votes["vote_id"] = votes["vote_id"].astype(str)
    votes["trial_id"] = votes["trial_id"].astype(str)
    votes["reference"] = votes["scene_id"].map(_references(study)).fillna("")
    a_on_left = votes["a_on_left"].astype(bool).to_numpy()
    votes["left_image"] = np.where(a_on_left, votes["image_a"], votes["image_b"])
    votes["right_image"] = np.where(a_on_left, votes["image_b"], votes["image_a"])
    votes["is_gold"] = votes["kind"] == Trial.Kind.GOLD
    votes["is_practice"] = votes["kind"] == Trial.Kind.PRACTICE
    votes["excluded"] = votes["annotator"].isin(excluded)
    _client_columns(votes, ("device_pixel_ratio", "viewport_width", "viewport_height"))
    votes["response_ms"] = votes["response_ms"].astype("Int64")
    votes["created_at"] = pd.to_datetime(votes["created_at"], utc=True)
    return votes[VOTE_COLUMNS]


def sessions_frame(study: Study) -> pd.DataFrame:
    rows = list(
        AnnotatorSession.objects.filter(study=study)
        .order_by("created_at")
        .values(
            "source",
            "created_at",
            "completed_at",
            "n_done",
            "n_practice_done",
            "client_info",
            annotator=F("pseudonym"),
        )
    )
    sessions = pd.DataFrame(
        rows,
        columns=[
            "source", "created_at", "completed_at", "n_done", "n_practice_done", "client_info",
            "annotator",
        ],
    )  # fmt: skip
    _client_columns(
        sessions, ("device_pixel_ratio", "viewport_width", "viewport_height", "user_agent")
    )
    for column in ("created_at", "completed_at"):
        sessions[column] = pd.to_datetime(sessions[column], utc=True)
    return sessions[SESSION_COLUMNS]


def _write(frame: pd.DataFrame, path: Path, fmt: str) -> None:
    if fmt == "csv":
        frame.to_csv(path, index=False, date_format="%Y-%m-%dT%H:%M:%S.%fZ")
    elif fmt == "parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_json(path, orient="records", lines=True, date_format="iso", date_unit="us")


def _exclusions(report) -> list[str]:
    rules = ", ".join(
        f"{name} {value:g}" if value is not None else f"{name} off"
        for name, value in report.rules.as_dict().items()
    )
    excluded = report.excluded
    lines = [f"Rules: {rules}.", ""]
    if len(excluded) == 0:
        lines.append(f"No annotator is excluded ({len(report.annotators)} checked).")
    else:
        lines.append(
            f"{len(excluded)} of {len(report.annotators)} annotators are excluded from "
            "labels, image scores and agreement (their votes are kept, `excluded` marks them):"
        )
        lines.append("")
        lines += [f"- `{row.annotator}`: {row.reasons}" for row in excluded.itertuples()]
    return lines


def _datasheet(study: Study, tables: dict[str, pd.DataFrame], report) -> str:
    votes, pairs = tables["votes"], tables["pairs"]
    study_pairs = pairs[~pairs["is_gold"]]
    at_target = int((study_pairs["n_votes"] >= study_pairs["target_votes"]).sum())
    kinds = {
        "counted": int((~votes["is_gold"] & ~votes["is_practice"]).sum()),
        "gold": int(votes["is_gold"].sum()),
        "practice": int(votes["is_practice"].sum()),
        "late": int(votes["is_late"].sum()),
    }
    versions = ", ".join(
        f"{name} {metadata.version(name)}" for name in ("django", "pandas", "numpy", "pyarrow")
    )
    lines = [
        f"# {study.title or study.slug}",
        "",
        f"Exported {datetime.now(UTC).isoformat(timespec='seconds')} from study `{study.slug}`.",
        "",
        "## Settings",
        "",
        f"- design: {study.design}",
        f"- votes per pair: {study.votes_per_pair}",
        f"- gold rate: {study.gold_rate}",
        f"- show reference: {study.show_reference}",
        f"- reference is a candidate: {study.reference_is_candidate}",
        f"- trials per session: {study.trials_per_session}",
        f"- practice trials: {study.practice_trials}",
        f"- lease: {study.lease_seconds} s",
        f"- status: {study.status}",
        "",
        "## Counts",
        "",
        f"- scenes: {pairs['scene'].nunique()}",
        f"- pairs: {len(study_pairs)} (+ {int(pairs['is_gold'].sum())} gold pairs)",
        f"- pairs at their target: {at_target}",
        f"- votes: {len(votes)} ({kinds['counted']} counted, {kinds['gold']} gold, "
        f"{kinds['practice']} practice; {kinds['late']} late)",
        f"- annotators: {len(tables['sessions'])} "
        f"({int(tables['sessions']['completed_at'].notna().sum())} completed)",
        "",
        "## Exclusions",
        "",
        *_exclusions(report),
        "",
        "## Tables",
        "",
        "- `votes`: every answer, raw (`is_gold`, `is_practice`, `is_late` mark the kinds; "
        "`preferred` is the choice in the pair's terms, sides undone).",
        "- `pairs`: counted votes per pair (late answers count; practice and excluded "
        "annotators never), p_a with similar as 0.5, and the DiffIQA majority (none on a tie).",
        "- `sessions`: one row per annotator, pseudonymous.",
        "- `annotators`: quality control per annotator (gold accuracy, agreement with the "
        "others' majority, response times, share of left and its binomial p, share of "
        "similar), `excluded` and the `reasons`.",
        "- `image_scores`: per scene, Thurstone Case V MAP scores (sum zero), scaled to "
        "0..100 per scene, and Bradley-Terry, with 95% bootstrap intervals over votes "
        f"({report.samples} resamples, seed {report.seed}).",
        "- `metric_scores`: every metric score of the study's images (FR: against the "
        "scene's reference, the reference against itself included; NR: reference empty), "
        "with `lower_better`, the `version` (pyiqa and weights) and, for a failed score, "
        "the `error` (value empty).",
        "- `agreement`: per metric and subset, accuracy with the A-FINE rule at `delta` "
        "(0, and the metric's own delta when set) with its 95% bootstrap interval over "
        "pairs; strict 2AFC accuracy on pairs with a clear preference; SRCC, KRCC, PLCC "
        "against the Thurstone scores within scenes, averaged over `n_scenes` scenes.",
        "- `comparisons`: paired bootstrap tests of accuracy between every two metrics.",
        "",
        f"Software: {versions}.",
        "",
    ]
    return "\n".join(lines)


def study_export(
    *,
    study: Study,
    out: Path,
    fmt: str = "csv",
    on_table: Callable | None = None,
    samples: int = 1000,
    seed: int = 0,
) -> list[WrittenTable]:
    """Write the study's tables into ``out`` (created if needed); returns what was written.

    ``samples`` and ``seed`` drive the bootstrap intervals of ``image_scores`` and
    ``agreement``, so the same data export the same numbers."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r} (expected one of {', '.join(FORMATS)})")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out}: exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    report = study_report(study_data(study), samples=samples, seed=seed)
    excluded = set(report.excluded["annotator"])
    tables = {
        "votes": votes_frame(study, excluded),
        "pairs": pairs_frame(study, report.pairs),
        "sessions": sessions_frame(study),
        "annotators": report.annotators,
        "image_scores": report.image_scores.drop(columns="image_id"),
        "metric_scores": scores_frame(study),
        "agreement": report.agreement,
        "comparisons": report.comparisons,
    }
    written = []
    with tempfile.TemporaryDirectory(dir=out, prefix=".export-") as tmp:
        staged = []
        for name, frame in tables.items():
            path = Path(tmp) / f"{name}.{fmt}"
            _write(frame, path, fmt)
            staged.append((name, path, len(frame)))
        sheet = Path(tmp) / "README.md"
        sheet.write_text(_datasheet(study, tables, report))
        staged.append(("README", sheet, 0))
        for name, path, rows in staged:
            final = out / path.name
            os.replace(path, final)
            written.append(WrittenTable(name=name, path=final, rows=rows))
            if on_table:
                on_table(written[-1])
    return written
