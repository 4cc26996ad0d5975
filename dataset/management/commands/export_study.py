"""``python manage.py export_study SLUG (--out DIR [--format csv|parquet|jsonl]
[--include-pilot] | --bundle FILE.zip [--with-images]) [--samples N] [--seed N]
[--model M]``."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from analysis.report import HUMAN_SCORE
from annotation.selectors import study_get
from core.errors import DomainError
from dataset.bundle import study_bundle
from dataset.export import FORMATS, study_export


class Command(BaseCommand):
    help = (
        "Write a study's tables (votes, pairs with labels, sessions, annotators, image "
        "scores, metric scores, agreement, comparisons), the field's formats (Triplet.txt "
        "for ref-vs-test, mos/<scene>.txt for pairwise) and a README.md datasheet into a "
        "folder (--out) or one deterministic zip (--bundle, images with --with-images); "
        "votes raw and complete: practice, gold, late and excluded ones marked."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug")
        target = parser.add_mutually_exclusive_group(required=True)
        target.add_argument("--out", type=Path, help="folder to write into")
        target.add_argument(
            "--bundle", type=Path, help="zip to write: every table (CSV), formats, datasheet"
        )
        parser.add_argument("--format", default="csv", choices=FORMATS, dest="fmt")
        parser.add_argument(
            "--with-images",
            action="store_true",
            help="with --bundle: add every image under its stable name (images/<scene>/<file>)",
        )
        parser.add_argument(
            "--include-pilot",
            action="store_true",
            help="with --out: add the pilot data (researchers' preview answers, counted "
            "nowhere) to the votes and sessions tables, marked is_pilot and pilot",
        )
        parser.add_argument(
            "--samples", type=int, default=1000, help="bootstrap resamples (default 1000)"
        )
        parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
        parser.add_argument(
            "--model",
            choices=list(HUMAN_SCORE),
            default="thurstone",
            help="with --out: davidson or thurstone-ties adds that tie model's scores and "
            "intervals to image_scores and the agreement's correlations use it (default "
            "thurstone: the A-FINE-compatible scale only)",
        )

    def handle(self, *args: object, **options: object) -> None:
        if options["samples"] < 1:
            raise CommandError("--samples must be at least 1")
        if options["with_images"] and not options["bundle"]:
            raise CommandError("--with-images goes with --bundle")
        if options["bundle"] and options["include_pilot"]:
            raise CommandError("--include-pilot goes with --out: a bundle is the dataset")
        if options["bundle"] and options["model"] != "thurstone":
            raise CommandError("--model goes with --out")
        if options["bundle"] and options["fmt"] != "csv":
            raise CommandError("a bundle's tables are CSV; --format goes with --out")
        try:
            study = study_get(slug=options["slug"])
            if options["bundle"]:
                bundle = study_bundle(
                    study=study,
                    path=options["bundle"],
                    with_images=options["with_images"],
                    samples=options["samples"],
                    seed=options["seed"],
                )
            else:
                written = study_export(
                    study=study,
                    out=options["out"],
                    fmt=options["fmt"],
                    samples=options["samples"],
                    seed=options["seed"],
                    formats=True,
                    model=options["model"],
                    include_pilot=options["include_pilot"],
                )
        except DomainError as exc:
            raise CommandError(str(exc)) from exc
        if options["bundle"]:
            self.stdout.write(f"wrote {bundle.path} ({len(bundle.members)} files)")
            return
        for table in written:
            rows = f" ({table.rows} rows)" if table.name not in ("README", "mos") else ""
            if table.name == "mos":
                rows = f" ({table.rows} scenes)"
            self.stdout.write(f"wrote {table.path}{rows}")
