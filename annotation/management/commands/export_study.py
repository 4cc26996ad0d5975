"""``python manage.py export_study SLUG --out DIR [--format csv|parquet|jsonl]``."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from annotation.errors import DomainError
from annotation.export import FORMATS, study_export
from annotation.selectors import study_get


class Command(BaseCommand):
    help = (
        "Write a study's tables (votes, pairs, sessions) and a README.md datasheet into a "
        "folder, raw and complete: practice, gold and late answers included and marked."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug")
        parser.add_argument("--out", type=Path, required=True, help="folder to write into")
        parser.add_argument("--format", default="csv", choices=FORMATS, dest="fmt")

    def handle(self, *args: object, **options: object) -> None:
        try:
            study = study_get(slug=options["slug"])
            written = study_export(study=study, out=options["out"], fmt=options["fmt"])
        except DomainError as exc:
            raise CommandError(str(exc)) from exc
        for table in written:
            rows = f" ({table.rows} rows)" if table.name != "README" else ""
            self.stdout.write(f"wrote {table.path}{rows}")
