"""``python manage.py export_study SLUG --out DIR [--format csv|parquet|jsonl] [--samples N]``."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from annotation.selectors import study_get
from core.errors import DomainError
from dataset.export import FORMATS, study_export


class Command(BaseCommand):
    help = (
        "Write a study's tables (votes, pairs with labels, sessions, annotators, image "
        "scores, metric scores, agreement, comparisons) and a README.md datasheet into a "
        "folder; votes raw and complete: practice, gold, late and excluded ones marked."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug")
        parser.add_argument("--out", type=Path, required=True, help="folder to write into")
        parser.add_argument("--format", default="csv", choices=FORMATS, dest="fmt")
        parser.add_argument(
            "--samples", type=int, default=1000, help="bootstrap resamples (default 1000)"
        )
        parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")

    def handle(self, *args: object, **options: object) -> None:
        if options["samples"] < 1:
            raise CommandError("--samples must be at least 1")
        try:
            study = study_get(slug=options["slug"])
            written = study_export(
                study=study,
                out=options["out"],
                fmt=options["fmt"],
                samples=options["samples"],
                seed=options["seed"],
            )
        except DomainError as exc:
            raise CommandError(str(exc)) from exc
        for table in written:
            rows = f" ({table.rows} rows)" if table.name != "README" else ""
            self.stdout.write(f"wrote {table.path}{rows}")
