"""``python manage.py agreement_report SLUG [SLUG ...] [--json] [--model M]``: how well each metric
agrees with the study's annotators, in the paper's layout."""

import argparse
import math

from django.core.management.base import BaseCommand, CommandError, CommandParser

from analysis.render import report_json, report_text
from analysis.report import HUMAN_SCORE, study_report
from analysis.selectors import study_data
from annotation.services.studies import study_configure
from core.errors import DomainError
from scoring.selectors import studies_select


class Command(BaseCommand):
    help = (
        "Print each metric's agreement with the human labels (accuracy with 95% bootstrap "
        "intervals by subset, 2AFC, SRCC/KRCC/PLCC), the annotators excluded and why."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "slugs",
            nargs="+",
            metavar="SLUG",
            help="Studies by exact slug, or a glob in quotes ('demo*').",
        )
        parser.add_argument("--json", action="store_true", help="The same report as JSON.")
        # A bare slug is that study only; --exact is kept for scripts written before.
        parser.add_argument("--exact", action="store_true", help=argparse.SUPPRESS)
        parser.add_argument(
            "--samples", type=int, default=1000, help="Bootstrap resamples (default 1000)."
        )
        parser.add_argument("--seed", type=int, default=0, help="Bootstrap seed (default 0).")
        parser.add_argument(
            "--calibrate-delta",
            action="store_true",
            help="Choose each metric's tie band delta by k-fold cross-validation over pairs "
            "and report its held-out accuracy beside delta 0 and the hand-set delta.",
        )
        parser.add_argument(
            "--folds", type=int, default=5, help="Folds of --calibrate-delta (default 5)."
        )
        parser.add_argument(
            "--model",
            choices=list(HUMAN_SCORE),
            default="thurstone",
            help="The human scores SRCC, KRCC and PLCC are computed against (default "
            "thurstone, the A-FINE protocol: a similar vote a win both ways); davidson and "
            "thurstone-ties take a similar vote as a tie and, with --json, add both scales' "
            "image_scores.",
        )
        parser.add_argument(
            "--fusion",
            action="store_true",
            help="Add the fusion metric: an L2 logistic regression on the metrics' "
            "standardised differences, judged by nested cross-validation grouped by scene "
            "(out-of-sample accuracy, 2AFC, a paired test against the best single metric, "
            "the weights). `fusion_train` writes it as a plug-in metric.",
        )
        parser.add_argument(
            "--save",
            action="store_true",
            help="With --calibrate-delta: store the chosen deltas in the study's metric_deltas.",
        )

    def handle(self, *args: object, **options: object) -> None:
        if options["samples"] < 1:
            raise CommandError("--samples must be at least 1")
        if options["folds"] < 2:
            raise CommandError("--folds must be at least 2")
        if options["save"] and not options["calibrate_delta"]:
            raise CommandError("--save needs --calibrate-delta")
        try:
            studies = studies_select(options["slugs"])
        except DomainError as exc:
            raise CommandError(str(exc)) from exc
        reports = [
            study_report(
                study_data(study),
                samples=options["samples"],
                seed=options["seed"],
                image_intervals=False,
                calibrate_folds=options["folds"] if options["calibrate_delta"] else 0,
                model=options["model"],
                fusion=options["fusion"],
            )
            for study in studies
        ]
        if options["save"]:
            for study, report in zip(studies, reports, strict=True):
                self._save(study, report)
        if options["json"]:
            self.stdout.write(report_json(reports))
        else:
            self.stdout.write("\n".join(report_text(report) for report in reports))

    def _save(self, study, report) -> None:
        """The calibrated deltas into the study's metric_deltas (other metrics' kept)."""
        chosen = {
            row.metric: float(row.delta)
            for row in report.calibration.itertuples()
            if math.isfinite(row.delta)
        }
        if not chosen:
            self.stderr.write(f"{study.slug}: no delta could be calibrated; nothing saved")
            return
        try:
            study = study_configure(
                study=study, metric_deltas={**(study.metric_deltas or {}), **chosen}
            )
        except DomainError as exc:
            raise CommandError(str(exc)) from exc
        saved = ", ".join(f"{metric} {delta:.4g}" for metric, delta in chosen.items())
        self.stderr.write(f"{study.slug}: saved metric deltas {saved}")
