"""``python manage.py import_votes SLUG SOURCE --format diffiqa-json|sriqa-json|long-csv
[--source NAME] [--names FILE]``."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from annotation.selectors import study_get
from annotation.services.vote_import import FORMATS, votes_import
from core.errors import DomainError


class Command(BaseCommand):
    help = (
        "Import published or earlier human labels into a study whose images are imported, "
        "all or nothing: long-csv (scene,image_a,image_b,annotator,preferred[,response_ms]), "
        "sriqa-json (<annotator>/<scene>/*.json) or diffiqa-json "
        "(<annotator>/<idx>/<scene>_<idx>.json). Imported votes count like the platform's "
        "own and never take part in assignment."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug")
        parser.add_argument("source", type=Path, help="the CSV file or the JSON folder")
        parser.add_argument("--format", required=True, choices=FORMATS, dest="fmt")
        parser.add_argument(
            "--source",
            default="",
            dest="source_name",
            help="the votes' source, at most 32 characters (default: the format's name)",
        )
        parser.add_argument(
            "--names",
            type=Path,
            help="diffiqa-json: CSV label_name,image mapping <scene>_<idx> to stable names",
        )

    def handle(self, *args: object, **options: object) -> None:
        try:
            study = study_get(slug=options["slug"])
            result = votes_import(
                study=study,
                source=options["source"],
                fmt=options["fmt"],
                source_name=options["source_name"],
                names=options["names"],
            )
        except DomainError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            f"imported {result.votes} votes of {result.annotators} annotators into "
            f"{study.slug} (source {result.source}; {result.mapping})"
        )
