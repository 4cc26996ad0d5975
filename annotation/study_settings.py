"""A study's settings and their bounds, stated once.

``SETTINGS`` is the table; ``study_settings_validate`` is the one check that the import,
``configure_study`` and the admin call (and any later form or API), and
``study_check_constraints`` turns the same bounds into the database's constraints. Errors
name the setting (``votes_per_pair``), never a command-line flag.

This module imports no model: ``annotation.models`` builds its constraints from it.
"""

import math
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db import models

from annotation.errors import InvalidSetting

# What a researcher types to turn a quality-control rule off; stored as null.
OFF = "off"
SLUG_RE = re.compile(r"^[a-z0-9]+(?:[-_][a-z0-9]+)*$")
# Words the researcher pages use under /studies/ (a study named so could not be opened).
RESERVED_SLUGS = frozenset({"new", "imports"})


class Design(models.TextChoices):
    REF_VS_TEST = "ref-vs-test", "Reference vs test (DiffIQA)"
    PAIRWISE = "pairwise", "Pairwise within a scene (SRIQA-Bench)"
    NR_PAIRWISE = "nr-pairwise", "Pairwise, no reference shown"


class StudyStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    LIVE = "live", "Live"
    CLOSED = "closed", "Closed"


class Sampling(models.TextChoices):
    UNIFORM = "uniform", "Uniform: every pair its votes_per_pair"
    ACTIVE = "active", "Active: votes where the expected information gain is highest"


class Policy(models.TextChoices):
    """How a trial's pair was chosen (recorded per trial, exported per vote)."""

    UNIFORM = "uniform", "Uniform"
    EARLY_STOP = "early-stop", "Uniform, stopping when the label is decided"
    ACTIVE = "active", "Active sampling"


def study_policy(*, sampling: str, stop_when_decided: bool) -> str:
    """The policy of a study with these settings (they never both apply: see
    ``sampling_settings_check``)."""
    if sampling == Sampling.ACTIVE:
        return Policy.ACTIVE
    return Policy.EARLY_STOP if stop_when_decided else Policy.UNIFORM


def sampling_settings_check(design: str, values: dict) -> None:
    """``InvalidSetting`` when a sampling setting does not apply to the design: stopping
    when decided is for majority labels (ref-vs-test), active sampling for scaled designs
    (pairwise, nr-pairwise), whose scores use every vote."""
    if values.get("stop_when_decided") and design != Design.REF_VS_TEST:
        raise InvalidSetting(
            f"stop_when_decided applies to ref-vs-test (majority labels), not {design}: a "
            "scaled design's scores use every vote (use sampling=active to spend fewer)",
            field="stop_when_decided",
        )
    if values.get("sampling") == Sampling.ACTIVE and design == Design.REF_VS_TEST:
        raise InvalidSetting(
            "sampling=active applies to the pairwise designs (scores by scaling), not "
            "ref-vs-test (use stop_when_decided for majority labels)",
            field="sampling",
        )


@dataclass(frozen=True)
class Setting:
    """One setting: its type and bounds. ``min``/``max`` are inclusive unless ``max_open``."""

    name: str
    kind: type  # bool, int, float, str or dict (metric deltas)
    description: str
    min: float | None = None
    max: float | None = None
    max_open: bool = False
    choices: tuple[str, ...] = ()
    max_length: int | None = None
    format: str = ""  # "slug" or "url": checked beyond the type
    unit: str = ""  # named in messages, e.g. "milliseconds"
    nullable: bool = False  # None (or OFF) turns the rule off
    required: bool = False  # a new study must give it
    fixed: bool = False  # set by the import: the pairs were generated from it


def _fraction(name: str, description: str, *, nullable: bool = True) -> Setting:
    return Setting(name, float, description, min=0.0, max=1.0, nullable=nullable)


SETTINGS: dict[str, Setting] = {
    s.name: s
    for s in (
        Setting("slug", str, "The study's name in URLs and commands.", max_length=64,
                format="slug", required=True, fixed=True),
        Setting("design", str, "What is compared with what.", choices=tuple(Design.values),
                required=True, fixed=True),
        Setting("show_reference", bool, "Pairwise design: show the reference between A and B.",
                fixed=True),
        Setting("reference_is_candidate", bool,
                "Pairwise design: the reference is compared like any other image.", fixed=True),
        Setting("votes_per_pair", int, "Target votes per pair.", min=1, max=1000, fixed=True),
        Setting("title", str, "For researchers only: annotators never see it (it may name "
                "the methods compared).", max_length=200),
        Setting("instructions", str, "Shown to annotators before the first trial."),
        Setting("status", str, "Whether annotators may join.", choices=tuple(StudyStatus.values)),
        Setting("gold_rate", float, "Share of gold trials in a session.", min=0.0, max=1.0,
                max_open=True),
        Setting("trials_per_session", int, "Quota per session (gold included).", min=1,
                max=100_000),
        Setting("practice_trials", int, "Uncounted trials at the start of a session.",
                min=0, max=50),
        Setting("completion_url", str,
                "Where annotators go when done (https; plain http only on localhost).",
                max_length=500, format="url"),
        Setting("require_participant_id", bool,
                "Refuse sessions without a Prolific or MTurk id of the right format "
                "(a new study with a completion URL turns it on unless told otherwise)."),
        Setting("lease_seconds", int, "How long an issued trial holds its pair.", min=10,
                max=86_400, unit="seconds"),
        Setting("hold_seconds", int, "How long a trial keeps its pair from others while its "
                "annotator gives no answer (then someone with nothing else to do may get it "
                "too, and a later answer is one vote past the target).", min=10, max=86_400,
                unit="seconds"),
        Setting("min_response_ms", int, "Answers sooner than this after their trial was "
                "issued (measured by the server) are kept but not counted.", min=0,
                max=600_000, unit="milliseconds"),
        Setting("min_counted_trials", int, "Counted trials a session needs for the completion "
                "code ('off': the quota).", min=1, max=100_000, nullable=True),
        Setting("break_every", int, "Suggest a break every N trials (0: never).", min=0,
                max=100_000),
        Setting("consent", str, "Consent text shown before the first trial."),
        _fraction("qc_min_gold_accuracy", "Exclude below this gold accuracy."),
        Setting("qc_min_median_response_ms", float, "Exclude below this median response time.",
                min=0.0, max=600_000.0, unit="milliseconds", nullable=True),
        _fraction("qc_side_bias_alpha", "Exclude when the binomial test of 'left' gives p below."),
        _fraction("qc_min_majority_agreement", "Exclude below this agreement with the majority."),
        _fraction("qc_max_similar_share", "Exclude above this share of 'similar'."),
        Setting("qc_fast_response_ms", float, "Answers faster than this count as too fast.",
                min=0.0, max=600_000.0, unit="milliseconds"),
        Setting("qc_test", str, "How a rule judges an annotator: 'binomial' (a one-sided exact "
                "test of the rate against the threshold) or 'threshold' (the rate itself).",
                choices=("binomial", "threshold")),
        Setting("qc_correction", str, "Multiple-testing correction of the binomial tests across "
                "annotators and rules: 'holm', 'bh' (Benjamini-Hochberg) or 'none'.",
                choices=("holm", "bh", "none")),
        Setting("qc_alpha", float, "The study-level error rate of the binomial tests.",
                min=0.0, max=1.0, max_open=True),
        Setting("qc_min_answers", int, "Answers a rate rule needs to judge an annotator.",
                min=0, max=100_000),
        Setting("qc_min_gold", int, "Gold trials the gold-accuracy rule needs.", min=0,
                max=100_000),
        Setting("stop_when_decided", bool, "Ref-vs-test: a pair gets no more trials once its "
                "majority label cannot change with the votes still due (on by default for "
                "a new ref-vs-test study)."),
        Setting("sampling", str, "Pairwise designs: 'uniform' (every pair votes_per_pair "
                "votes) or 'active' (a scene's pairs x votes_per_pair votes go where the "
                "expected information gain is highest).", choices=tuple(Sampling.values)),
        Setting("sampling_every", int, "Active sampling: re-plan a scene after this many "
                "counted votes.", min=1, max=10_000),
        Setting("metric_deltas", dict, "Per-metric tie band for agreement: psnr=0.5, one "
                "metric a line (the API takes a map, {\"psnr\": 0.5})."),
    )
}  # fmt: skip

QC_SETTINGS = tuple(name for name in SETTINGS if name.startswith("qc_"))
# What a running study's researcher may change (configure_study, the dashboard's form,
# PATCH): everything the import did not fix, but the status, which has its own actions.
CHANGEABLE_SETTINGS = tuple(
    name for name, setting in SETTINGS.items() if not setting.fixed and name != "status"
)
FIXED_SETTINGS = tuple(name for name, setting in SETTINGS.items() if setting.fixed)

# Names from earlier migrations, kept so that unchanged checks are not dropped and re-added.
_CONSTRAINT_NAMES = {
    "design": "study_design_known",
    "votes_per_pair": "study_votes_per_pair_positive",
    "gold_rate": "study_gold_rate_fraction",
    "trials_per_session": "study_quota_positive",
}


def study_settings_validate(values: dict, *, partial: bool) -> dict:
    """The given settings checked and cleaned (numbers as numbers, OFF as None, zero metric
    deltas dropped); raises ``InvalidSetting`` naming the first setting at fault, with
    every setting at fault and its message in ``fields`` (a form shows them all at once).

    ``partial=False``: a new study's settings (the required ones must be there; the others
    take the model's defaults). ``partial=True``: a change to an existing study, which may
    not touch the settings fixed at import.
    """
    if partial:
        refused = sorted(name for name in values if name not in SETTINGS or SETTINGS[name].fixed)
        if refused:
            raise InvalidSetting(
                f"cannot change {', '.join(refused)} after import", field=refused[0]
            )
    else:
        unknown = sorted(set(values) - set(SETTINGS))
        if unknown:
            raise InvalidSetting(f"{unknown[0]} is not a study setting", field=unknown[0])
        for name, setting in SETTINGS.items():
            if setting.required and name not in values:
                raise InvalidSetting(f"{name} is required", field=name)
    cleaned, refused = {}, {}
    for name in SETTINGS:
        if name in values:
            try:
                cleaned[name] = _clean(SETTINGS[name], values[name])
            except InvalidSetting as exc:
                refused[name] = [str(exc)]
    if refused:
        first = next(iter(refused))
        message = "; ".join(messages[0] for messages in refused.values())
        raise InvalidSetting(message, field=first, fields=refused)
    if not partial and "require_participant_id" not in cleaned:
        # A completion URL means paid crowd workers from a recruiter: their sessions carry
        # the recruiter's id, and a session without one is a stranger's script.
        cleaned["require_participant_id"] = bool(cleaned.get("completion_url"))
    design = cleaned.get("design")
    if not partial and "stop_when_decided" not in cleaned:
        # Majority labels: a third vote after two that agree cannot change the label.
        cleaned["stop_when_decided"] = design == Design.REF_VS_TEST
    if design is not None:
        sampling_settings_check(design, cleaned)
    if cleaned.get("show_reference") and design is not None and design != Design.PAIRWISE:
        raise InvalidSetting(
            f"show_reference applies to the pairwise design only, not {design} "
            "(ref-vs-test always shows the reference; nr-pairwise never does)",
            field="show_reference",
        )
    return cleaned


def study_check_constraints() -> list[models.CheckConstraint]:
    """The table's bounds as the ``Study`` model's database constraints."""
    constraints = []
    for name, setting in SETTINGS.items():
        if setting.choices:
            condition = models.Q(**{f"{name}__in": list(setting.choices)})
        elif setting.min is not None or setting.max is not None:
            bounds = {}
            if setting.min is not None:
                bounds[f"{name}__gte"] = setting.min
            if setting.max is not None:
                bounds[f"{name}__{'lt' if setting.max_open else 'lte'}"] = setting.max
            condition = models.Q(**bounds)
            if setting.nullable:
                condition = models.Q(**{f"{name}__isnull": True}) | condition
        else:
            continue
        constraints.append(
            models.CheckConstraint(
                condition=condition, name=_CONSTRAINT_NAMES.get(name, f"study_{name}_valid")
            )
        )
    return constraints


def _clean(setting: Setting, value: object) -> object:
    name = setting.name
    if setting.nullable and (value is None or value == OFF):
        return None
    if setting.kind is bool:
        if not isinstance(value, bool):
            raise InvalidSetting(f"{name} must be true or false, not {value!r}", field=name)
        return value
    if setting.kind is int:
        return _check_range(setting, _integer(name, value), value)
    if setting.kind is float:
        return _check_range(setting, _number(setting, value), value)
    if setting.kind is dict:
        return _metric_deltas(name, value)
    return _text(setting, value)


def _integer(name: str, value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise InvalidSetting(f"{name} must be a whole number, not {value!r}", field=name)


def _number(setting: Setting, value: object) -> float:
    try:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise TypeError
        number = float(value)
    except (TypeError, ValueError):
        off = f" or {OFF!r}" if setting.nullable else ""
        raise InvalidSetting(
            f"{setting.name} must be a number{off}, not {value!r}", field=setting.name
        ) from None
    if not math.isfinite(number):
        raise InvalidSetting(
            f"{setting.name} must be a finite number, not {value!r}", field=setting.name
        )
    return number


def _check_range(setting: Setting, number: float, value: object) -> float:
    low, high, name = setting.min, setting.max, setting.name
    too_low = low is not None and number < low
    too_high = high is not None and (number >= high if setting.max_open else number > high)
    if not (too_low or too_high):
        return number
    if setting.kind is int:
        bound = f"at least {low}" if too_low else f"at most {high}"
    elif low is not None and high is not None:
        bound = f"in [{low:g}, {high:g})" if setting.max_open else f"between {low:g} and {high:g}"
    else:
        unit = f"{setting.unit} " if setting.unit else ""
        bound = f"{unit}>= {low:g}" if too_low else f"{unit}<= {high:g}"
    raise InvalidSetting(f"{name} must be {bound}, not {value!r}", field=name)


def _metric_deltas(name: str, value: object) -> dict[str, float]:
    """Delta per metric name; whether the names are metrics is for the scoring layer."""
    if not isinstance(value, dict) or not all(
        isinstance(metric, str)
        and metric.strip()
        and isinstance(delta, int | float)
        and not isinstance(delta, bool)
        and math.isfinite(delta)
        and delta >= 0
        for metric, delta in value.items()
    ):
        raise InvalidSetting(
            f"{name} must map metric names to numbers >= 0, not {value!r}", field=name
        )
    # A delta of 0 is the default: it is not stored.
    return {metric: float(delta) for metric, delta in value.items() if delta > 0}


def _text(setting: Setting, value: object) -> str:
    name = setting.name
    if not isinstance(value, str):
        raise InvalidSetting(f"{name} must be text, not {value!r}", field=name)
    if setting.format == "slug" and not (
        SLUG_RE.match(value) and len(value) <= (setting.max_length or len(value))
    ):
        raise InvalidSetting(
            f"{name} {value!r} is not valid (lower-case letters, digits, '-' and '_'; "
            f"at most {setting.max_length})",
            field=name,
        )
    if setting.format == "slug" and value in RESERVED_SLUGS:
        raise InvalidSetting(
            f"{name} {value!r} is reserved by the researcher pages (/studies/{value}/)",
            field=name,
        )
    if setting.choices and value not in setting.choices:
        raise InvalidSetting(
            f"unknown {name} {value!r} (expected one of {', '.join(setting.choices)})",
            field=name,
        )
    if setting.max_length is not None and len(value) > setting.max_length:
        raise InvalidSetting(
            f"{name} must be at most {setting.max_length} characters, not {len(value)}",
            field=name,
        )
    if setting.format == "url" and value:
        try:
            URLValidator(schemes=["http", "https"])(value)
        except ValidationError:
            raise InvalidSetting(f"{name} {value!r} is not an http(s) URL", field=name) from None
        if not web_url_allowed(value):
            raise InvalidSetting(
                f"{name} {value!r} must use https (plain http only for localhost, "
                "127.0.0.1 or [::1])",
                field=name,
            )
    return value


# Hosts a URL setting may name over plain http: a researcher's own machine.
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]"})


def web_url_allowed(url: str) -> bool:
    """Whether a URL setting (the completion URL) may be given to annotators' browsers:
    https, or http to ``LOCAL_HOSTS``; never javascript:, data: or any other scheme."""
    try:
        URLValidator(schemes=["http", "https"])(url)
    except ValidationError:
        return False
    parts = urlsplit(url)
    if "\\" in url or parts.username is not None or parts.password is not None:
        # Browsers read "http://evil.example\\@localhost/" as evil.example; no user info.
        return False
    if parts.scheme.lower() == "https":
        return True
    host = parts.hostname or ""  # lower case, an IPv6 address without its brackets
    return parts.scheme.lower() == "http" and (f"[{host}]" if ":" in host else host) in LOCAL_HOSTS
