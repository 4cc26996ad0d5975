"""``python manage.py import_study SOURCE --slug SLUG --design DESIGN [...]``."""

import sys
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from annotation.errors import InvalidSetting, StudyImportError
from annotation.models import Design
from annotation.services import study_import


class Command(BaseCommand):
    help = (
        "Import a study, all or nothing, from a folder with one sub-folder per scene or "
        "from a manifest CSV with columns scene,path,role,condition."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("source", type=Path, help="scene folders, or a manifest .csv")
        parser.add_argument("--slug", required=True)
        parser.add_argument("--design", required=True, help=", ".join(Design.values))
        parser.add_argument("--title", default="")
        parser.add_argument("--votes-per-pair", type=int, default=3)
        parser.add_argument(
            "--show-reference",
            action="store_true",
            help="pairwise: show the scene's reference between A and B",
        )
        parser.add_argument(
            "--reference-not-candidate",
            action="store_true",
            help="pairwise: do not compare the reference with the other images",
        )
        parser.add_argument("--gold-rate", type=float, default=0.0)
        parser.add_argument(
            "--reference-name",
            default="reference",
            help="folder sources: the reference file's stem (default: reference)",
        )
        parser.add_argument("--instructions", default="")
        parser.add_argument(
            "--trials-per-session", type=int, default=100, help="quota per annotator session"
        )
        parser.add_argument(
            "--practice-trials", type=int, default=2, help="uncounted trials at the start"
        )
        parser.add_argument(
            "--completion-url", default="", help="e.g. Prolific's completion URL with its code"
        )
        parser.add_argument(
            "--live", action="store_true", help="open to annotators at once (default: draft)"
        )
        parser.add_argument(
            "--stop-when-decided",
            choices=["on", "off"],
            help="ref-vs-test: no more trials for a pair once its majority label is decided "
            "(default on)",
        )
        parser.add_argument(
            "--sampling",
            choices=["uniform", "active"],
            default="uniform",
            help="pairwise designs: 'active' spends each scene's pairs x votes-per-pair votes "
            "where they tell most (default uniform)",
        )
        parser.add_argument(
            "--sampling-every", type=int, default=10, help="active: re-plan after N votes"
        )

    def handle(self, *args: object, **options: object) -> None:
        bar: tqdm | None = None

        def on_total(total: int) -> None:
            nonlocal bar
            bar = tqdm(
                total=total,
                unit="img",
                desc="importing",
                file=sys.stderr,
                disable=total < settings.IQA_IMPORT_PROGRESS_MIN,
            )

        try:
            result = study_import(
                source=options["source"],
                slug=options["slug"],
                design=options["design"],
                title=options["title"],
                votes_per_pair=options["votes_per_pair"],
                gold_rate=options["gold_rate"],
                show_reference=options["show_reference"],
                reference_is_candidate=not options["reference_not_candidate"],
                reference_name=options["reference_name"],
                instructions=options["instructions"],
                trials_per_session=options["trials_per_session"],
                practice_trials=options["practice_trials"],
                completion_url=options["completion_url"],
                live=options["live"],
                sampling=options["sampling"],
                sampling_every=options["sampling_every"],
                **(
                    {"stop_when_decided": options["stop_when_decided"] == "on"}
                    if options["stop_when_decided"] is not None
                    else {}
                ),
                on_total=on_total,
                on_image=lambda: bar.update(1) if bar else None,
            )
        except (InvalidSetting, StudyImportError) as exc:
            raise CommandError(f"import refused, nothing written: {exc}") from exc
        finally:
            if bar is not None:
                bar.close()
        study = result.study
        self.stdout.write(
            f"Created study {study.slug!r} ({study.design}): {len(result.scenes)} scenes, "
            f"{result.images} images ({result.files_stored} new files stored), "
            f"{result.pairs} pairs, {study.votes_per_pair} votes per pair, "
            f"{result.gold_pairs} gold pairs; status {study.status}"
        )
        for scene in result.scenes:
            self.stdout.write(f"  scene {scene.name}: {scene.images} images, {scene.pairs} pairs")
