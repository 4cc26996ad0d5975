"""``python manage.py agreement_report SLUG [--json]``: how well each metric agrees with
the study's annotators, in the paper's layout."""

from django.core.management.base import BaseCommand, CommandError, CommandParser

from analysis.render import report_json, report_text
from analysis.report import study_report
from analysis.selectors import study_data
from scoring.selectors import studies_select


class Command(BaseCommand):
    help = (
        "Print each metric's agreement with the human labels (accuracy with 95% bootstrap "
        "intervals by subset, 2AFC, SRCC/KRCC/PLCC), the annotators excluded and why."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug", help="A study; also selects SLUG-* studies (see --exact).")
        parser.add_argument("--json", action="store_true", help="The same report as JSON.")
        parser.add_argument(
            "--exact", action="store_true", help="Only the study named SLUG, not SLUG-*."
        )
        parser.add_argument(
            "--samples", type=int, default=1000, help="Bootstrap resamples (default 1000)."
        )
        parser.add_argument("--seed", type=int, default=0, help="Bootstrap seed (default 0).")

    def handle(self, *args: object, **options: object) -> None:
        if options["samples"] < 1:
            raise CommandError("--samples must be at least 1")
        studies = studies_select(options["slug"], exact=options["exact"])
        if not studies:
            raise CommandError(f"no study {options['slug']!r}")
        reports = [
            study_report(
                study_data(study),
                samples=options["samples"],
                seed=options["seed"],
                image_intervals=False,
            )
            for study in studies
        ]
        if options["json"]:
            self.stdout.write(report_json(reports))
        else:
            self.stdout.write("\n".join(report_text(report) for report in reports))
