"""``python manage.py score_study SLUG [--metrics all|available|NAME,...] [--wait]``."""

import time

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from core.errors import DomainError
from scoring import selectors, services


class Command(BaseCommand):
    help = (
        "Score a study's images with metrics on the workers. SLUG also selects the "
        "studies named SLUG-* (`demo` scores demo and demo-pairwise) unless --exact."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug")
        parser.add_argument("--exact", action="store_true", help="this study only")
        parser.add_argument(
            "--metrics",
            default="available",
            help="all, available (default: every metric whose weights are here), or names",
        )
        parser.add_argument("--wait", action="store_true", help="wait, with a progress bar")
        parser.add_argument("--timeout", type=float, default=24 * 3600.0)

    def handle(self, *args: object, **options: object) -> None:
        studies = selectors.studies_select(options["slug"], exact=options["exact"])
        if not studies:
            raise CommandError(f"no study with slug {options['slug']!r}")
        try:
            specs = services.metrics_select(options["metrics"])
        except DomainError as exc:
            raise CommandError(str(exc)) from exc
        if not specs:
            raise CommandError(
                "no metric is available: see `manage.py metrics_status` for the weight files"
            )
        for study in studies:
            try:
                plans = services.study_score(study=study, specs=specs)
            except DomainError as exc:
                raise CommandError(str(exc)) from exc
            queued = sum(p.queued for p in plans)
            self.stdout.write(
                f"{study.slug}: {len(plans)} metrics, {queued} items sent to the workers, "
                f"{sum(p.done for p in plans)} already scored"
            )
        if options["wait"]:
            self._wait(studies, specs, options["timeout"])

    def _wait(self, studies, specs, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        total = sum(
            p.total for s in studies for p in selectors.study_scoring_progress(study=s, specs=specs)
        )
        with tqdm(total=total, unit="score", desc="scoring", file=self.stderr._out) as bar:
            while True:
                progress = [
                    p
                    for s in studies
                    for p in selectors.study_scoring_progress(study=s, specs=specs)
                ]
                done = sum(p.done for p in progress)
                bar.update(done - bar.n)
                if done >= total or not any(p.pending_batches for p in progress):
                    break
                if time.monotonic() > deadline:
                    raise CommandError(f"timed out: {done} of {total} scores after {timeout:.0f} s")
                time.sleep(0.5)
        for study in studies:
            for p in selectors.study_scoring_progress(study=study, specs=specs):
                state = "done" if p.done >= p.total else f"{p.done}/{p.total}"
                failed = f", {p.failed} failed" if p.failed else ""
                self.stdout.write(f"{study.slug} {p.metric}: {state}{failed}")
