"""Scoring workflows: which metrics run, sending the work, storing results, the sweep.

What is left to score is always read from the database: an item is done once its Score
row exists (value or error), for the metric's current version.
"""

import dataclasses
import logging
from dataclasses import dataclass, field
from datetime import timedelta
from itertools import islice

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from kombu.exceptions import OperationalError

from annotation.errors import BrokerUnavailable
from annotation.models import Image, Study
from core.errors import DomainError
from scoring import weights
from scoring.errors import MetricUnavailable, NoWorkerReport
from scoring.models import Score, ScoreBatch, WorkerReport
from scoring.registry import MetricSpec, metric_get, plugin_specs, registry
from scoring.selectors import metric_version, scoring_queue, study_items, worker_reports

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Availability:
    available: bool
    missing: list[str]  # weight files, relative to the weights folder
    reason: str = ""


def metric_availability(spec: MetricSpec) -> Availability:
    """Whether the metric can run here: its weight files are in the weights folder."""
    if spec.plugin is not None:
        files = spec.plugin_files
        missing = weights.missing_files(files)
        return Availability(not missing, missing, "missing weight files" if missing else "")
    return _catalog_availability(weights.catalog().get(spec.name))


def _catalog_availability(entry: dict | None) -> Availability:
    if entry is None:
        return Availability(False, [], "not in the weights catalog (run metrics_catalog)")
    missing = weights.missing_files(entry["files"])
    if missing:
        return Availability(False, missing, "missing weight files")
    if entry["error"]:
        # The probe could not create it (a newer pyiqa than the catalog, say): the files
        # it names are there, but the list may stop short.
        return Availability(
            bool(entry["files"]),
            [],
            f"the weights catalog's probe stopped at: {entry['error']} (run metrics_catalog)",
        )
    return Availability(True, [])


def metrics_here() -> list[str]:
    """The metrics this process can load, by name, without importing pyiqa: catalogued
    pyiqa metrics and plug-ins whose files are all in the weights folder; in a process
    not started as a worker (``scoring.weights.environment_problems``), only those that
    need no file."""
    needs_files_ok = not weights.environment_problems()
    names = [
        name
        for name, entry in weights.catalog().items()
        if _catalog_availability(entry).available and (needs_files_ok or not entry["files"])
    ]
    try:
        plugins = plugin_specs().values()
    except DomainError as exc:
        logger.error("scoring worker: plug-in metrics not loaded: %s", exc)
        plugins = []
    for spec in plugins:
        files = spec.plugin_files
        if metric_availability(spec).available and (needs_files_ok or not files):
            names.append(spec.name)
    return sorted(set(names))


def worker_report_save(*, hostname: str, queues: list[str]) -> WorkerReport:
    """Record what this worker can run (called when it is ready)."""
    report, _ = WorkerReport.objects.update_or_create(
        hostname=hostname,
        defaults={
            "queues": sorted(queues),
            "metrics": metrics_here(),
            "reported_at": timezone.now(),
        },
    )
    return report


def worker_report_remove(*, hostname: str) -> None:
    """Forget a worker's report (called when it stops)."""
    WorkerReport.objects.filter(hostname=hostname).delete()


def metrics_select(selection: str, *, queue: str | None = None) -> list[MetricSpec]:
    """``all`` (every metric, available or not), ``available`` (the default), or names.

    ``available`` is decided by the workers that will run the metrics: the metrics every
    worker on the scoring queue (``queue``, else IQA_SCORING_QUEUE or the default queue)
    reported it can load when it started. NoWorkerReport when no worker on that queue has
    reported.
    """
    specs = registry()
    if selection == "all":
        return sorted(specs.values(), key=lambda s: s.name)
    if selection == "available":
        queue = queue or scoring_queue()
        reports = worker_reports(queue=queue)
        if not reports:
            raise NoWorkerReport(
                f"no worker on the queue {queue!r} has reported which metrics it can run: "
                f"start one (python -m scoring.worker -Q {queue}) or name the metrics"
            )
        common = set.intersection(*(set(r.metrics) for r in reports))
        return [specs[name] for name in sorted(common) if name in specs]
    return [metric_get(name.strip()) for name in selection.split(",") if name.strip()]


@dataclass
class MetricPlan:
    metric: str
    version: str
    total: int
    done: int
    queued: int  # items in batches sent now (retried failed batches included)
    failed_to_run: int = 0  # items in batches that failed to run and were not retried
    reasons: list[str] = field(default_factory=list)  # why those batches failed


# Stored item errors that were the image store's (a missing volume, an I/O error), not
# the item's: earlier versions stored them as scores; ``--retry-failed`` sends them again.
STORE_ERRORS = (
    r"^cannot read the image: (FileNotFoundError|PermissionError|IsADirectoryError|"
    r"NotADirectoryError|TimeoutError|BlockingIOError|ConnectionError|OSError: \[Errno)"
)


def _batches(items: list, size: int):
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def study_score(
    *, study: Study, specs: list[MetricSpec], retry_failed: bool = False
) -> list[MetricPlan]:
    """Send what is left to score for each metric, in batches of same-size images.

    Items with a score, or in a batch still pending, are not sent again; nor are those of
    a batch that failed to run (the workers could not run its metric), unless
    ``retry_failed``: then those batches are sent again as they are, and so are the items
    whose stored error was the image store's, not theirs (``STORE_ERRORS``: stored so
    before such errors were retried). Batches are stored, then published after commit; if
    the broker does not answer this raises ``BrokerUnavailable`` and the batches stay
    pending for the sweep (or the next run).
    """
    from scoring.tasks import score_batch

    plans, sent = [], []
    # Derived metrics (a fusion model) after their components: a worker takes batches in
    # the order they are sent.
    specs = sorted(specs, key=lambda spec: spec.derived)
    _, refused = specs_for_study(specs, study)
    if refused:
        raise DomainError(refused[0])
    sizes = dict(Image.objects.filter(scene__study=study).values_list("pk", "width").order_by())
    # Versions first: they hash the weight files (gigabytes on a first call), which must
    # not happen while the transaction below holds its locks.
    versions = {spec.name: metric_version(spec) for spec in specs}
    with transaction.atomic():
        for spec in specs:
            version = versions[spec.name]
            if retry_failed:
                Score.objects.filter(
                    metric=spec.name,
                    version=version,
                    image__scene__study=study,
                    error__regex=STORE_ERRORS if not spec.derived else f"^{COMPONENT_FAILED} ",
                ).delete()
            items = study_items(study, spec)
            done = _done_items(study, spec.name, version)
            now = timezone.now()
            batches = ScoreBatch.objects.filter(study=study, metric=spec.name, version=version)
            failed = list(batches.filter(state=ScoreBatch.State.FAILED).select_for_update())
            if retry_failed:
                for batch in failed:
                    batch.state, batch.reason = ScoreBatch.State.PENDING, ""
                    batch.enqueued_at, batch.attempts = now, batch.attempts + 1
                    batch.finished_at = None
                    batch.save(
                        update_fields=["state", "reason", "enqueued_at", "attempts", "finished_at"]
                    )
                    sent.append(batch.pk)
            held = {
                tuple(item)
                for batch in [*batches.filter(state=ScoreBatch.State.PENDING), *failed]
                for item in batch.items
            }
            todo = [i for i in items if i not in done and i not in held]
            todo.sort(key=lambda item: (sizes.get(item[0], 0), item))
            for chunk in _batches(todo, settings.IQA_SCORE_BATCH_ITEMS):
                batch = ScoreBatch.objects.create(
                    study=study, metric=spec.name, version=version, items=chunk, enqueued_at=now
                )
                sent.append(batch.pk)
            retried = sum(len(b.items) for b in failed) if retry_failed else 0
            plans.append(
                MetricPlan(
                    spec.name,
                    version,
                    total=len(items),
                    done=len(done),
                    queued=len(todo) + retried,
                    failed_to_run=0 if retry_failed else sum(len(b.items) for b in failed),
                    reasons=[] if retry_failed else sorted({b.reason for b in failed}),
                )
            )
        for batch_id in sent:
            transaction.on_commit(lambda batch_id=batch_id: _publish(score_batch, batch_id))
    return plans


def specs_for_study(specs: list[MetricSpec], study: Study) -> tuple[list[MetricSpec], list[str]]:
    """(the metrics that may score the study, why the others may not): a derived metric
    trained on the study's own labels (a fusion model) would be judged there on the
    pairs it was fitted to."""
    kept, refused = [], []
    for spec in specs:
        model = getattr(spec.plugin, "model", None) or {}
        if spec.derived and study.slug in (model.get("training") or {}).get("studies", []):
            refused.append(
                f"{spec.name} was trained on {study.slug}'s labels: its scores there would "
                "be judged on the pairs it was fitted to (agreement_report --fusion gives "
                "its out-of-sample figures); score other studies with it"
            )
        else:
            kept.append(spec)
    return kept, refused


def _publish(task, batch_id: int) -> None:
    try:
        task.apply_async((batch_id,), queue=settings.IQA_SCORING_QUEUE or None)
    except (OperationalError, OSError) as exc:
        raise BrokerUnavailable(
            f"the Celery broker did not answer ({exc}); the scoring batches stay pending "
            "and are sent again by the sweep or the next score_study"
        ) from exc


def _done_items(study: Study, metric: str, version: str) -> set[tuple[int, int | None]]:
    return set(
        Score.objects.filter(metric=metric, version=version, image__scene__study=study)
        .values_list("image_id", "reference_id")
        .order_by()
    )


def batch_score(*, batch_id: int) -> int:
    """Score a batch's items that have no row yet and store them; returns rows written.

    Idempotent: rows are inserted with ignore_conflicts on the one-row-per-(metric,
    version, image, reference) constraints, so a batch run twice (a redelivered message,
    the sweep) writes each row once.
    """
    from scoring import engine

    batch = ScoreBatch.objects.filter(pk=batch_id).first()
    if batch is None or batch.state != ScoreBatch.State.PENDING:
        return 0
    spec = metric_get(batch.metric)
    items = [(image, reference) for image, reference in batch.items]
    existing = set(
        Score.objects.filter(
            metric=batch.metric,
            version=batch.version,
            image_id__in=[image for image, _ in items],
        )
        .values_list("image_id", "reference_id")
        .order_by()
    )
    todo = [item for item in items if item not in existing]
    if spec.derived:
        return _derived_score(batch, spec, todo)
    files = dict(
        Image.objects.filter(
            pk__in={i for item in todo for i in item if i is not None}
        ).values_list("pk", "file")
    )
    # Names in the platform's storage: the worker reads them through its image cache.
    paths = [(files[image], files[reference] if reference else None) for image, reference in todo]
    written = 0

    def store_pass(indices: list[int], outcomes: list) -> None:
        # Each forward pass's scores as soon as it ends: progress moves per pass.
        nonlocal written
        rows = [
            (*todo[i], o.value, o.error, o.seconds) for i, o in zip(indices, outcomes, strict=True)
        ]
        written += _store(batch, spec, rows, done=False)

    try:
        if paths:
            engine.score_items(spec, paths, on_scored=store_pass)
    except MetricUnavailable as exc:
        # Not the items' fault: what earlier passes scored stays (a retry skips it); the
        # rest is not stored; the batch stays pending, with the reason, and counts as
        # sent now (the task retries it; the sweep waits).
        ScoreBatch.objects.filter(pk=batch.pk, state=ScoreBatch.State.PENDING).update(
            reason=str(exc), enqueued_at=timezone.now()
        )
        raise
    return written + _store(batch, spec, [])


def _store(batch: ScoreBatch, spec: MetricSpec, results: list[tuple], done: bool = True) -> int:
    """Insert the (image, reference, value, error, seconds) rows and, when ``done``, mark
    the batch done, in one transaction; rows already there are left as they are. A
    metric's batch done wakes the study's derived batches that wait for components."""
    rows = [
        Score(
            metric=batch.metric,
            version=batch.version,
            image_id=image,
            reference_id=reference,
            value=value,
            lower_better=spec.lower_better,
            error=error,
            seconds=seconds,
        )
        for image, reference, value, error, seconds in results
    ]
    with transaction.atomic():
        Score.objects.bulk_create(rows, ignore_conflicts=True)
        if done:
            ScoreBatch.objects.filter(pk=batch.pk).update(
                state=ScoreBatch.State.DONE, finished_at=timezone.now()
            )
            if not spec.derived:
                transaction.on_commit(lambda: _derived_wake(batch.study_id))
    return len(rows)


# How a derived batch that waits for its components says so (its ``reason``).
WAITING = "waits for its components' scores"


def _derived_wake(study_id: int) -> int:
    """Send again the study's derived batches that wait for components (a component's
    batch just finished); how many. A broker that does not answer is logged: the sweep
    sends pending batches again."""
    from scoring.tasks import score_batch

    waiting = ScoreBatch.objects.filter(
        study_id=study_id, state=ScoreBatch.State.PENDING, reason__contains=WAITING
    ).values_list("pk", flat=True)
    sent = 0
    for batch_id in waiting:
        try:
            _publish(score_batch, batch_id)
        except BrokerUnavailable as exc:
            logger.warning("derived batch %s not sent again: %s", batch_id, exc)
            break
        sent += 1
    return sent


def _derived_score(batch: ScoreBatch, spec: MetricSpec, todo: list) -> int:
    """A derived metric's items (``registry``: a fusion model) from its components'
    stored scores of the versions it names: FR components against the item's reference,
    NR ones of the image alone. An item whose component failed fails with that error
    (``score_study --retry-failed`` computes it again). Items whose components are not
    all scored yet wait: the others are stored, the batch stays pending with the reason
    (``WAITING``) and is sent again when a batch of the study finishes (``_store``), or
    by the sweep. The file is read again, so a worker never applies a replaced model: a
    version other than the batch's raises MetricUnavailable."""
    plugin = spec.plugin.reloaded() if hasattr(spec.plugin, "reloaded") else spec.plugin
    current = metric_version(dataclasses.replace(spec, plugin=plugin))
    if current != batch.version:
        raise MetricUnavailable(
            f"{spec.name} is now {current}, the batch was sent for {batch.version}: the "
            "model file was replaced; score the study again"
        )
    components = plugin.components
    wanted = Q()
    for c in components:
        wanted |= Q(metric=c["metric"], version=c["version"])
    stored = {
        (metric, image, reference): (value, error)
        for metric, image, reference, value, error in Score.objects.filter(
            wanted, image_id__in={image for image, _ in todo}
        ).values_list("metric", "image_id", "reference_id", "value", "error")
    }
    results, waiting = [], {}
    for image, reference in todo:
        values, failed = {}, ""
        for c in components:
            key = (c["metric"], image, reference if c["kind"] == "FR" else None)
            if key not in stored:
                waiting[c["metric"]] = waiting.get(c["metric"], 0) + 1
                break
            value, error = stored[key]
            if error:
                failed = failed or f"{COMPONENT_FAILED} {c['metric']} failed: {error}"
            values[c["metric"]] = value
        else:
            if failed:
                results.append((image, reference, None, failed, 0.0))
            else:
                results.append((image, reference, plugin.combine(values), "", 0.0))
    if not waiting:
        return _store(batch, spec, results)
    written = _store(batch, spec, results, done=False)
    names = ", ".join(
        f"{c['metric']} ({c['version']}) on {waiting[c['metric']]} items"
        for c in components
        if c["metric"] in waiting
    )
    ScoreBatch.objects.filter(pk=batch.pk, state=ScoreBatch.State.PENDING).update(
        reason=f"{spec.name} {WAITING}: {names}; score them first", enqueued_at=timezone.now()
    )
    return written


# How a derived item whose component failed begins its error.
COMPONENT_FAILED = "component"


def batch_fail(*, batch_id: int, reason: str) -> bool:
    """Mark a pending batch failed to run (its task's retries are spent): nothing is
    stored for its items; ``score_study --retry-failed`` sends it again."""
    updated = ScoreBatch.objects.filter(pk=batch_id, state=ScoreBatch.State.PENDING).update(
        state=ScoreBatch.State.FAILED, reason=reason, finished_at=timezone.now()
    )
    if updated:
        logger.error("scoring batch %s failed to run: %s", batch_id, reason)
    return bool(updated)


def scores_sweep(*, stale_seconds: int | None = None) -> int:
    """Send again the batches pending longer than IQA_SCORE_STALE_SECONDS (a lost message,
    a crashed node). Returns how many were sent."""
    from scoring.tasks import score_batch

    stale = settings.IQA_SCORE_STALE_SECONDS if stale_seconds is None else stale_seconds
    cutoff = timezone.now() - timedelta(seconds=stale)
    resent = 0
    for batch in ScoreBatch.objects.filter(state=ScoreBatch.State.PENDING, enqueued_at__lte=cutoff):
        updated = ScoreBatch.objects.filter(
            pk=batch.pk, state=ScoreBatch.State.PENDING, enqueued_at=batch.enqueued_at
        ).update(enqueued_at=timezone.now(), attempts=batch.attempts + 1)
        if updated:
            _publish(score_batch, batch.pk)
            resent += 1
    if resent:
        logger.warning("scoring sweep: sent %d stale batches again", resent)
    return resent
