"""A study's life after import: its settings, archive and restore, deletion."""

from dataclasses import dataclass

from django.db import connection, transaction

from annotation import clock
from annotation.errors import StudyArchived
from annotation.models import (
    AnnotatorSession,
    ExclusionDecision,
    Image,
    Pair,
    Study,
    Trial,
    Vote,
)
from annotation.services import file_claims, sampling
from annotation.study_settings import sampling_settings_check, study_settings_validate
from core.errors import Conflict, DomainError


def study_writable(study: Study) -> None:
    """``StudyArchived`` for an archived study: read-only until an owner restores it."""
    if study.archived_at is not None:
        raise StudyArchived(
            f"study {study.slug!r} is archived: read-only until an owner restores it"
        )


def study_lock_writable(study: Study) -> Study:
    """Inside a transaction: the study's row, locked until it ends, refused when archived
    (``StudyArchived``). Writes that an archive must not overtake take it first, so an
    archive waits for them, and they for it (then see it)."""
    locked = Study.objects.select_for_update().get(pk=study.pk)
    study_writable(locked)
    return locked


def study_configure(*, study: Study, **changes: object) -> Study:
    """Set the given settings (``None`` values are left alone); refuses invalid values.

    Bounds are ``annotation.study_settings``'s (``InvalidSetting`` names the setting); the
    settings fixed at import (design, slug, the pair plan) may not change. Quality-control
    rules take ``"off"`` (stored as null); metric deltas are the whole new map. An archived
    study is refused (``StudyArchived``).
    """
    study_writable(study)
    changes = {key: value for key, value in changes.items() if value is not None}
    changes = study_settings_validate(changes, partial=True)
    if not changes:
        return study
    with transaction.atomic():
        locked = study_lock_writable(study)
        before = locked.policy
        sampling_settings_check(
            locked.design,
            {
                "stop_when_decided": changes.get("stop_when_decided", locked.stop_when_decided),
                "sampling": changes.get("sampling", locked.sampling),
            },
        )
        for key, value in changes.items():
            setattr(locked, key, value)
            setattr(study, key, value)
        locked.save(update_fields=list(changes))
        if locked.policy != before:
            sampling.study_targets_apply(study=locked, now=clock.now())
    return study


def study_archive(*, study: Study) -> Study:
    """Hide the study from the study list and make it read-only (no settings, status,
    scoring, exclusions, scenes or pilot data change; its data, reports and exports stay
    readable). A live study is refused: close it first, so no annotator is cut off."""
    with transaction.atomic():
        locked = Study.objects.select_for_update().get(pk=study.pk)
        if locked.status == Study.Status.LIVE:
            raise Conflict(
                f"study {study.slug!r} is live: close it first (annotators are working on it)"
            )
        if locked.archived_at is None:
            locked.archived_at = clock.now()
            locked.save(update_fields=["archived_at"])
    study.archived_at = locked.archived_at
    return study


def study_restore(*, study: Study) -> Study:
    """Bring an archived study back to the list, writable, in the status it had."""
    Study.objects.filter(pk=study.pk).update(archived_at=None)
    study.archived_at = None
    return study


@dataclass(frozen=True)
class StudyDeleted:
    slug: str
    sessions: int
    votes: int
    images: int


def _delete_where(model, where: str, params: list) -> int:
    """``DELETE FROM <model's table> WHERE <where>``: one statement for tables of millions
    of rows (the ORM's cascade would load every row first)."""
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {model._meta.db_table} WHERE {where}", params)
        return cursor.rowcount


def study_delete(*, study: Study, confirm: str) -> StudyDeleted:
    """Delete the study and everything of it: sessions, trials, votes, decisions, scenes,
    images, pairs, scores, reports, members and export jobs (the caller removes the export
    files); then, once committed, the image files no other study uses (a file another
    study's image references, or that an import under way holds, stays).

    ``confirm`` must be the study's slug, typed: ``DomainError`` otherwise. A live study
    is refused (``Conflict``): close it first. Whatever other apps keep of the study's
    images (metric scores) goes with the ORM's cascade, unless their caller removed it
    first in the same transaction (``workspace.services.study_remove`` does, in one
    statement)."""
    if confirm.strip() != study.slug:
        raise DomainError(
            f"type the study's slug, {study.slug}, to delete it (you typed {confirm!r})",
            field="confirm",
        )
    with transaction.atomic():
        locked = Study.objects.select_for_update().get(pk=study.pk)
        if locked.status == Study.Status.LIVE:
            raise Conflict(
                f"study {study.slug!r} is live: close it first (annotators are working on it)"
            )
        images = Image.objects.filter(scene__study=locked)
        files = sorted(
            {path for pair in images.values_list("file", "display_file") for path in pair if path}
        )
        n_images = images.count()
        pk = [locked.pk]
        sessions = (
            f"session_id IN (SELECT id FROM {AnnotatorSession._meta.db_table} WHERE study_id = %s)"
        )
        votes = _delete_where(
            Vote, f"pair_id IN (SELECT id FROM {Pair._meta.db_table} WHERE study_id = %s)", pk
        )
        _delete_where(ExclusionDecision, sessions, pk)
        AnnotatorSession.objects.filter(study=locked).update(open_trial=None, queued_trial=None)
        _delete_where(Trial, sessions, pk)
        n_sessions = _delete_where(AnnotatorSession, "study_id = %s", pk)
        # What is left is small (pairs, images and scenes by the study's size; reports,
        # members, export jobs): the ORM's cascade, which misses nothing that refers to it.
        locked.delete()
    transaction.on_commit(lambda: file_claims.remove_unreferenced(files))
    return StudyDeleted(
        slug=study.slug,
        sessions=n_sessions,
        votes=votes,
        images=n_images,
    )
