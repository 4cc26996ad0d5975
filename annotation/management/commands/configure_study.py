"""``python manage.py configure_study SLUG [--status live] [--trials-per-session N] ...``."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from annotation.models import Study
from annotation.selectors import study_get
from annotation.services.studies import study_configure
from annotation.study_settings import QC_SETTINGS
from core.errors import DomainError


class Command(BaseCommand):
    help = "Change a study's settings after import, e.g. open it to annotators (--status live)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug")
        parser.add_argument("--status", choices=Study.Status.values)
        parser.add_argument("--title")
        parser.add_argument("--instructions")
        parser.add_argument("--gold-rate", type=float)
        parser.add_argument("--trials-per-session", type=int)
        parser.add_argument("--practice-trials", type=int)
        parser.add_argument("--completion-url")
        parser.add_argument("--lease-seconds", type=int)
        parser.add_argument(
            "--hold-seconds",
            type=int,
            help="How long a trial keeps its pair from others while its annotator gives no "
            "answer (default 60).",
        )
        parser.add_argument(
            "--min-response-ms",
            type=int,
            help="Answers sooner than this after their trial's issue (server clock) are kept "
            "but not counted (default 400; 0 counts every answer).",
        )
        parser.add_argument(
            "--min-counted-trials",
            help="Counted trials a session needs for the completion code ('off': the quota).",
        )
        parser.add_argument(
            "--require-participant-id",
            choices=["on", "off"],
            help="Refuse sessions without a Prolific or MTurk id of the right format.",
        )
        parser.add_argument(
            "--break-every", type=int, help="Suggest a break every N trials (0: never)."
        )
        parser.add_argument(
            "--stop-when-decided",
            choices=["on", "off"],
            help="Ref-vs-test: no more trials for a pair once its majority label is decided.",
        )
        parser.add_argument(
            "--sampling",
            choices=["uniform", "active"],
            help="Pairwise designs: 'active' spends each scene's pairs x votes_per_pair votes "
            "where they tell most; switching re-targets the pairs.",
        )
        parser.add_argument(
            "--sampling-every", type=int, help="Active sampling: re-plan after N counted votes."
        )
        parser.add_argument(
            "--consent-file", type=Path, help="A text file: the consent shown before the study."
        )
        rules = parser.add_argument_group(
            "quality control", "Exclusion thresholds; 'off' turns a rule off."
        )
        rules.add_argument("--qc-min-gold-accuracy", help="Default 0.7.")
        rules.add_argument("--qc-min-median-response-ms", help="Default 500.")
        rules.add_argument("--qc-side-bias-alpha", help="Binomial test level; default 0.001.")
        rules.add_argument("--qc-min-majority-agreement", help="Default off.")
        rules.add_argument("--qc-max-similar-share", help="Default 0.9.")
        rules.add_argument("--qc-fast-response-ms", help="'Too fast' in reports; default 300.")
        rules.add_argument("--qc-test", help="'binomial' (default) or 'threshold'.")
        rules.add_argument("--qc-correction", help="'holm' (default), 'bh' or 'none'.")
        rules.add_argument("--qc-alpha", help="Study-level error rate of the tests; default 0.05.")
        rules.add_argument("--qc-min-answers", help="Evidence of a rate rule; default 20.")
        rules.add_argument("--qc-min-gold", help="Gold trials the gold rule needs; default 5.")
        parser.add_argument(
            "--metric-delta",
            action="append",
            default=[],
            metavar="METRIC=DELTA",
            help="Tie band of a metric for agreement (repeatable; 0 removes it).",
        )

    def handle(self, *args: object, **options: object) -> None:
        keys = (
            "status", "title", "instructions", "gold_rate", "trials_per_session",
            "practice_trials", "completion_url", "lease_seconds", "hold_seconds",
            "min_response_ms", "min_counted_trials", "break_every", "sampling", "sampling_every",
        )  # fmt: skip
        changes = {key: options[key] for key in (*keys, *QC_SETTINGS)}
        for flag in ("require_participant_id", "stop_when_decided"):
            if options[flag] is not None:
                changes[flag] = options[flag] == "on"
        try:
            study = study_get(slug=options["slug"])
        except DomainError as exc:
            raise CommandError(str(exc)) from exc
        if options["metric_delta"]:
            changes["metric_deltas"] = self._deltas(study.metric_deltas, options["metric_delta"])
        if options["consent_file"] is not None:
            try:
                changes["consent"] = options["consent_file"].read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError) as exc:
                raise CommandError(f"cannot read --consent-file: {exc}") from exc
        try:
            study = study_configure(study=study, **changes)
        except DomainError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            f"{study.slug}: status {study.status}, {study.trials_per_session} trials per "
            f"session, {study.practice_trials} practice, gold rate {study.gold_rate}, "
            f"lease {study.lease_seconds} s (held {study.hold_seconds} s without an answer), "
            f"answers counted from {study.min_response_ms} ms"
            + (f", completion URL {study.completion_url}" if study.completion_url else "")
            + (", participant id required" if study.require_participant_id else "")
        )
        rules = ", ".join(f"{key.removeprefix('qc_')} {getattr(study, key)}" for key in QC_SETTINGS)
        self.stdout.write(f"quality control: {rules}; metric deltas: {study.metric_deltas or {}}")

    @staticmethod
    def _deltas(current: dict, items: list[str]) -> dict[str, float]:
        """The study's deltas updated with METRIC=DELTA items."""
        deltas = dict(current or {})
        for item in items:
            name, sep, value = item.partition("=")
            try:
                if not sep or not name.strip():
                    raise ValueError
                deltas[name.strip()] = float(value)
            except ValueError:
                raise CommandError(f"--metric-delta {item!r}: expected METRIC=NUMBER") from None
        return deltas
