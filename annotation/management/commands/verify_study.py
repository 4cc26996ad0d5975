"""``python manage.py verify_study SLUG [--wait]``: re-hash every stored image on a worker."""

import time

from django.core.management.base import BaseCommand, CommandError, CommandParser

from annotation import selectors, services
from annotation.models import Image
from core.errors import DomainError


class Command(BaseCommand):
    help = "Queue a checksum check of every image of a study on the Celery workers."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug")
        parser.add_argument("--wait", action="store_true", help="wait for the checks to finish")
        parser.add_argument("--timeout", type=float, default=600.0)

    def handle(self, *args: object, **options: object) -> None:
        try:
            study = selectors.study_get(slug=options["slug"])
            queued = services.study_verify_enqueue(study=study)
        except DomainError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"Queued {queued} image checks for {study.slug!r}.")
        if not options["wait"]:
            return
        deadline = time.monotonic() + options["timeout"]
        while True:
            counts = selectors.study_integrity_counts(study=study)
            if counts[Image.Integrity.PENDING] == 0:
                break
            if time.monotonic() > deadline:
                raise CommandError(
                    f"{counts[Image.Integrity.PENDING]} checks still pending after "
                    f"{options['timeout']:.0f} s: is a worker running?"
                )
            time.sleep(0.5)
        summary = ", ".join(f"{name}: {n}" for name, n in counts.items() if n)
        self.stdout.write(f"Checked: {summary}")
        if counts[Image.Integrity.MISSING] or counts[Image.Integrity.MISMATCH]:
            raise CommandError("some stored images are missing or altered")
