"""``python manage.py score_study SLUG [SLUG ...] [--metrics all|available|NAME,...]
[--retry-failed] [--wait]``."""

import argparse
import time

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone
from tqdm import tqdm

from core.errors import DomainError
from scoring import selectors, services


class Command(BaseCommand):
    help = (
        "Score studies' images with metrics on the workers. Each SLUG is one study; a glob "
        "in quotes ('demo*') selects every study it matches."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slugs", nargs="+", metavar="SLUG")
        # A bare slug is that study only; --exact is kept for scripts written before.
        parser.add_argument("--exact", action="store_true", help=argparse.SUPPRESS)
        parser.add_argument(
            "--metrics",
            default="available",
            help="all, available (default: every metric the workers on the scoring queue "
            "reported they can run), or names",
        )
        parser.add_argument(
            "--retry-failed",
            action="store_true",
            help="send again the batches the workers could not run (missing weights, CUDA "
            "out of memory, a driver error)",
        )
        parser.add_argument("--wait", action="store_true", help="wait, with a progress bar")
        parser.add_argument("--timeout", type=float, default=24 * 3600.0)

    def handle(self, *args: object, **options: object) -> None:
        try:
            studies = selectors.studies_select(options["slugs"])
            if options["metrics"] == "available":
                self._say_reports()
            specs = services.metrics_select(options["metrics"])
        except DomainError as exc:
            raise CommandError(str(exc)) from exc
        if not specs:
            raise CommandError(
                "no metric is available on the workers of the scoring queue: see "
                "`manage.py metrics_status` on a worker's machine for the weight files"
            )
        for study in studies:
            chosen, refused = services.specs_for_study(specs, study)
            if refused and options["metrics"] not in ("available", "all"):
                raise CommandError(refused[0])  # named: say so rather than skip it
            for reason in refused:
                self.stdout.write(f"{study.slug}: not scored: {reason}")
            try:
                plans = services.study_score(
                    study=study, specs=chosen, retry_failed=options["retry_failed"]
                )
            except DomainError as exc:
                raise CommandError(str(exc)) from exc
            queued = sum(p.queued for p in plans)
            self.stdout.write(
                f"{study.slug}: {len(plans)} metrics, {queued} items sent to the workers, "
                f"{sum(p.done for p in plans)} already scored"
            )
            for plan in plans:
                if plan.failed_to_run:
                    self.stdout.write(
                        f"{study.slug} {plan.metric}: {plan.failed_to_run} items failed to "
                        f"run ({'; '.join(plan.reasons)}): --retry-failed sends them again"
                    )
        if options["wait"]:
            self._wait(studies, specs, options["timeout"])

    def _say_reports(self) -> None:
        queue = selectors.scoring_queue()
        for report in selectors.worker_reports(queue=queue):
            age = (timezone.now() - report.reported_at).total_seconds()
            self.stdout.write(
                f"worker {report.hostname} on {queue!r}: {len(report.metrics)} metrics "
                f"(reported {age:.0f} s ago)"
            )

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
                done = sum(p.done + p.failed_to_run for p in progress)
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
                if p.failed_to_run:
                    failed += (
                        f", {p.failed_to_run} failed to run ({'; '.join(p.reasons)}): "
                        "--retry-failed sends them again"
                    )
                self.stdout.write(f"{study.slug} {p.metric}: {state}{failed}")
