"""Study import and image checks. Each workflow is atomic and takes keyword-only arguments."""

import dataclasses
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from kombu.exceptions import OperationalError

from annotation import designs, gold, storage
from annotation.errors import BrokerUnavailable, StudyImportError, StudyNotOpen
from annotation.images import ImageInfo, inspect_image, needs_display_copy, write_display_png
from annotation.models import Image, Pair, Scene, Study
from annotation.services import file_claims, sampling
from annotation.sources import Entry, read_source
from annotation.study_settings import study_settings_validate
from core.errors import NotFound

BATCH = 1000


@dataclass
class SceneSummary:
    name: str
    images: int  # the source's and those the import made (``made``)
    pairs: int
    files_stored: int
    gold_pairs: int = 0
    made: int = 0  # gold decoys and the worked example's, made from the source's images


@dataclass
class ImportResult:
    study: Study
    scenes: list[SceneSummary] = field(default_factory=list)

    @property
    def files_stored(self) -> int:
        return sum(scene.files_stored for scene in self.scenes)

    @property
    def images(self) -> int:
        return sum(scene.images for scene in self.scenes)

    @property
    def made(self) -> int:
        return sum(scene.made for scene in self.scenes)

    @property
    def pairs(self) -> int:
        return sum(scene.pairs for scene in self.scenes)

    @property
    def gold_pairs(self) -> int:
        return sum(scene.gold_pairs for scene in self.scenes)


def _batches(items: Iterable, size: int) -> Iterator[list]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


def study_import(
    *,
    source: Path,
    slug: str,
    design: str,
    title: str = "",
    votes_per_pair: int = 3,
    gold_rate: float = 0.0,
    show_reference: bool = False,
    reference_is_candidate: bool = True,
    reference_name: str = "reference",
    instructions: str = "",
    trials_per_session: int = 100,
    practice_trials: int = 2,
    completion_url: str = "",
    live: bool = False,
    owner=None,
    on_total: Callable[[int], None] | None = None,
    on_image: Callable[[], None] | None = None,
    **other_settings: object,
) -> ImportResult:
    """Import a study from a folder of scene sub-folders or a manifest CSV, all or nothing.

    ``owner`` (a user) owns the new study; ``other_settings`` are any other settings of
    ``annotation.study_settings`` (``require_participant_id``, ``lease_seconds``, ...).
    A setting out of bounds raises ``InvalidSetting`` naming it, before any file is read;
    every other problem raises ``StudyImportError`` naming the file (and manifest line);
    the database and the media folder are then exactly as before. Images are read one at a
    time (decoded to check them, then streamed into the content-addressed store): pixels
    of one image at most are in memory, beside a small unsaved row per image.
    """
    values = study_settings_validate(
        {
            "slug": slug, "design": design, "title": title or slug,
            "votes_per_pair": votes_per_pair, "gold_rate": gold_rate,
            "show_reference": show_reference, "reference_is_candidate": reference_is_candidate,
            "instructions": instructions, "trials_per_session": trials_per_session,
            "practice_trials": practice_trials, "completion_url": completion_url,
            "status": Study.Status.LIVE if live else Study.Status.DRAFT,
            **other_settings,
        },
        partial=False,
    )  # fmt: skip
    if Study.objects.filter(slug=slug).exists():
        raise StudyImportError(f"a study with slug {slug!r} already exists")
    scenes = read_source(Path(source), reference_name=reference_name)

    def create(staged: list["_StagedScene"]) -> ImportResult:
        study = Study.objects.create(**values, owner=owner)
        result = ImportResult(study=study)
        for scene in staged:
            result.scenes.append(_create_scene(study=study, staged=scene))
        return result

    try:
        return _stage_and_create(
            scenes,
            design=design,
            gold_rate=values["gold_rate"],
            show_reference=show_reference,
            reference_is_candidate=reference_is_candidate,
            with_example=True,
            create=create,
            on_total=on_total,
            on_image=on_image,
        )
    except IntegrityError as exc:
        if Study.objects.filter(slug=slug).exists():
            raise StudyImportError(f"a study with slug {slug!r} already exists") from exc
        raise


def study_scenes_add(
    *,
    study: Study,
    source: Path,
    reference_name: str = "reference",
    on_total: Callable[[int], None] | None = None,
    on_image: Callable[[], None] | None = None,
) -> ImportResult:
    """Add the scenes of ``source`` (a folder of scene sub-folders or a manifest CSV, as
    for a new study) to ``study``, a draft or live one, all or nothing, with the study's
    design and settings: the same checks as ``study_import`` and gold decoys when the
    study shows gold trials. The new pairs join assignment at once (they have the fewest
    votes, so they are offered first); existing scenes, pairs and votes are untouched.

    Refused (``StudyImportError``, nothing written, the files it stored removed): a scene
    the study has already (new scenes only), or a study that is closed
    (``StudyNotOpen``) or archived (``StudyArchived``)."""
    from annotation.services.studies import study_writable

    study_writable(study)
    if study.status == Study.Status.CLOSED:
        raise StudyNotOpen(
            f"study {study.slug!r} is closed: set it back to draft or live to add scenes"
        )
    scenes = read_source(Path(source), reference_name=reference_name)
    _refuse_existing_scenes(study, scenes)
    has_example = Image.objects.filter(scene__study=study, gold=Image.Gold.EXAMPLE).exists()

    def create(staged: list["_StagedScene"]) -> ImportResult:
        locked = Study.objects.select_for_update().get(pk=study.pk)
        study_writable(locked)
        if locked.status == Study.Status.CLOSED:  # closed meanwhile
            raise StudyNotOpen(f"study {study.slug!r} was closed while its scenes were checked")
        _refuse_existing_scenes(locked, scenes)  # an add that committed meanwhile
        result = ImportResult(study=locked)
        for scene in staged:
            result.scenes.append(_create_scene(study=locked, staged=scene))
        return result

    return _stage_and_create(
        scenes,
        design=study.design,
        gold_rate=study.gold_rate,
        show_reference=study.show_reference,
        reference_is_candidate=study.reference_is_candidate,
        with_example=not has_example,
        create=create,
        on_total=on_total,
        on_image=on_image,
    )


def _refuse_existing_scenes(study: Study, scenes: dict[str, list[Entry]]) -> None:
    taken = sorted(
        Scene.objects.filter(study=study, name__in=list(scenes)).values_list("name", flat=True)
    )
    if taken:
        more = f" and {len(taken) - 3} more" if len(taken) > 3 else ""
        raise StudyImportError(
            f"the study has scene {', '.join(map(repr, taken[:3]))}{more} already: a zip "
            "of new scenes only (rename the folder to add it as a new scene)"
        )


def _stage_and_create(
    scenes: dict[str, list[Entry]],
    *,
    design: str,
    gold_rate: float,
    show_reference: bool,
    reference_is_candidate: bool,
    with_example: bool,
    create: Callable[[list["_StagedScene"]], ImportResult],
    on_total: Callable[[int], None] | None,
    on_image: Callable[[], None] | None,
) -> ImportResult:
    """The import's work once the source is read: each scene's roles checked, every image
    checked and stored, gold decoys (and the worked example, ``with_example``) made, then
    ``create`` writing the rows in one transaction. Whatever fails, the files this import
    added are removed again."""
    # Gold pairs come from the source's gold rows or, when it has none and the study
    # shows gold trials, from one generated decoy per scene.
    make_decoys = gold_rate > 0 and not any(e.gold for es in scenes.values() for e in es)
    for scene_name, entries in scenes.items():
        designs.check_scene_roles(
            design,
            scene_name,
            [(entry.origin, entry.role) for entry in entries if not entry.gold],
            show_reference=show_reference,
            reference_is_candidate=reference_is_candidate,
        )
    if on_total:
        on_total(sum(len(entries) for entries in scenes.values()))

    # Files first, outside any transaction: a long import never holds the database (on
    # SQLite, that would block every other writer); the rows then go in one short
    # transaction. Whatever fails, the files this import added are removed again.
    created_paths: list[str] = []
    # The files it stores or finds are held against another import's clean-up until its
    # rows are in or it has cleaned up (annotation/services/file_claims.py).
    file_claims.claims_begin()
    try:
        staged = [
            _stage_scene(
                design=design,
                scene_name=scene_name,
                entries=entries,
                created_paths=created_paths,
                on_image=on_image,
                make_decoy=make_decoys,
            )
            for scene_name, entries in scenes.items()
        ]
        gold_trials = make_decoys or any(e.gold for es in scenes.values() for e in es)
        if staged and gold_trials and with_example:
            # A study with gold trials gets a worked example of its own (annotation.gold).
            staged[0].images.append(
                _stage_decoy(staged[0].name, staged[0], created_paths, example=True)
            )
            staged[0].made += 1
        with transaction.atomic():
            return create(staged)
    except BaseException:
        _discard_files(created_paths)
        raise
    finally:
        file_claims.release()


@dataclass(slots=True, frozen=True)
class _StagedImage:
    """What an Image row needs, kept small: one per image of the study until the rows go in."""

    name: str
    role: str
    condition: str
    sha256: str
    file: str
    width: int
    height: int
    format: str
    size_bytes: int
    gold: str = ""
    # A PNG of the same pixels when browsers cannot show ``format`` (the pages show it).
    display_file: str = ""


@dataclass
class _StagedScene:
    name: str
    images: list[_StagedImage]  # their files are in the store already
    files_stored: int
    made: int = 0  # of the images, those the import made (gold decoys, the example)


def _stage_scene(
    *,
    design: str,
    scene_name: str,
    entries: list[Entry],
    created_paths: list[str],
    on_image: Callable[[], None] | None,
    make_decoy: bool = False,
) -> _StagedScene:
    """Check each image of a scene and put its file in the store, one image at a time."""
    max_pixels = settings.IQA_MAX_IMAGE_PIXELS
    # The reference first, so each test image's size is checked as it is read.
    ordered = sorted(entries, key=lambda entry: entry.role != "reference")
    reference: _StagedImage | None = None
    staged = _StagedScene(name=scene_name, images=[], files_stored=0)
    for entry in ordered:
        info = inspect_image(entry.path, origin=entry.origin, max_pixels=max_pixels)
        if (
            reference is not None
            and designs.is_full_reference(design)
            and (info.width, info.height) != (reference.width, reference.height)
        ):
            raise StudyImportError(
                f"{entry.origin}: {info.width}x{info.height} differs from its reference "
                f"{reference.name} ({reference.width}x{reference.height}); full-reference "
                "metrics need test and reference of the same size"
            )
        image = _store(entry, info, staged, created_paths)
        if entry.role == "reference":
            reference = image
        staged.images.append(image)
        if on_image:
            on_image()
    if make_decoy:
        staged.images.append(_stage_decoy(scene_name, staged, created_paths))
        staged.made += 1
    return staged


def _store(
    entry: Entry, info: ImageInfo, staged: _StagedScene, created_paths: list[str]
) -> _StagedImage:
    stored = file_claims.store_file(entry.path, info.format)
    created_paths.extend(stored.created_dirs)
    if stored.created:
        created_paths.append(stored.relative_path)
        staged.files_stored += 1
    display_file = _store_display_copy(entry, info, created_paths)
    return _StagedImage(
        name=entry.name,
        role=entry.role,
        condition=entry.condition,
        sha256=stored.sha256,
        file=stored.relative_path,
        width=info.width,
        height=info.height,
        format=info.format,
        size_bytes=stored.size_bytes,
        gold=entry.gold,
        display_file=display_file,
    )


def _store_display_copy(entry: Entry, info: ImageInfo, created_paths: list[str]) -> str:
    """The stored PNG shown in place of an image browsers cannot show (TIFF, PPM, BMP),
    or "" when the original is shown. It goes in the same store, so a refused import
    removes it with the originals."""
    if not needs_display_copy(info):
        return ""
    with tempfile.TemporaryDirectory(prefix="iqa-display-") as tmp:
        png = Path(tmp) / "display.png"
        try:
            write_display_png(entry.path, png)
        except (OSError, ValueError) as exc:
            raise StudyImportError(
                f"{entry.origin}: cannot convert to PNG for display ({exc})"
            ) from exc
        stored = file_claims.store_file(png, "PNG")
    created_paths.extend(stored.created_dirs)
    if stored.created:
        created_paths.append(stored.relative_path)
    return stored.relative_path


def _stage_decoy(
    scene_name: str, staged: _StagedScene, created_paths: list[str], *, example: bool = False
) -> _StagedImage:
    """A heavily degraded copy of the scene's gold anchor, stored like any image: its gold
    decoy, or with ``example`` the study's worked example (in no pair)."""
    anchor = designs.gold_anchor(staged.images)
    stem = "worked-example" if example else "gold-decoy"
    taken = {image.name for image in staged.images}
    name, n = f"{scene_name}/{stem}.png", 1
    while name in taken:
        n += 1
        name = f"{scene_name}/{stem}-{n}.png"
    with tempfile.TemporaryDirectory(prefix="iqa-gold-") as tmp:
        path = Path(tmp) / f"{stem}.png"
        write = gold.write_example_decoy if example else gold.write_decoy
        write(storage.media_root() / anchor.file, path)
        entry = Entry(
            scene=scene_name,
            path=path,
            role="test",
            condition=gold.EXAMPLE_CONDITION if example else gold.DECOY_CONDITION,
            name=name,
            origin=f"{'worked example' if example else 'gold decoy'} of {anchor.name}",
            gold=Image.Gold.EXAMPLE if example else Image.Gold.WORSE,
        )
        info = inspect_image(path, origin=entry.origin, max_pixels=settings.IQA_MAX_IMAGE_PIXELS)
        return _store(entry, info, staged, created_paths)


def _create_scene(*, study: Study, staged: _StagedScene) -> SceneSummary:
    """Write a staged scene's rows: the scene, its images and the design's pairs."""
    scene = Scene.objects.create(study=study, name=staged.name)
    images = Image.objects.bulk_create(
        [Image(scene=scene, **dataclasses.asdict(image)) for image in staged.images],
        batch_size=BATCH,
    )
    planned = designs.plan_pairs(
        study.design,
        images,
        show_reference=study.show_reference,
        reference_is_candidate=study.reference_is_candidate,
    )
    gold_planned = list(
        designs.plan_gold_pairs(study.design, images, show_reference=study.show_reference)
    )
    pairs = 0
    for batch in _batches(planned, BATCH):
        _create_pairs(study, scene, batch)
        pairs += len(batch)
    _create_pairs(study, scene, gold_planned)
    return SceneSummary(
        name=staged.name,
        images=len(images),
        pairs=pairs,
        files_stored=staged.files_stored,
        gold_pairs=len(gold_planned),
        made=staged.made,
    )


def _create_pairs(study: Study, scene: Scene, planned: list[designs.PlannedPair]) -> None:
    Pair.objects.bulk_create(
        [
            Pair(
                study=study,
                scene=scene,
                image_a=p.a,
                image_b=p.b,
                shown_reference=p.shown_reference,
                target_votes=sampling.initial_target(study),
                gold_answer=p.gold_answer,
            )
            for p in planned
        ]
    )


def _discard_files(relative_paths: list[str]) -> None:
    # Another import may hold the same file, or have committed a row for it: keep those.
    file_claims.discard(relative_paths)


def image_verify(*, image_id: int) -> Image:
    """Re-hash an image's stored file and record whether it still matches its address."""
    image = Image.objects.filter(pk=image_id).first()
    if image is None:
        raise NotFound(f"image {image_id} does not exist")
    path = storage.media_root() / image.file
    if not path.exists():
        integrity = Image.Integrity.MISSING
    elif storage.file_sha256(path) == image.sha256:
        integrity = Image.Integrity.OK
    else:
        integrity = Image.Integrity.MISMATCH
    image.integrity = integrity
    image.integrity_checked_at = timezone.now()
    image.save(update_fields=["integrity", "integrity_checked_at"])
    return image


def study_verify_enqueue(*, study: Study) -> int:
    """Mark every image of a study pending and queue one check per image (after commit).

    If the broker does not answer, raises ``BrokerUnavailable`` and marks the images
    that were not queued unchecked again, rather than leaving them pending forever.
    """
    from annotation.tasks import image_verify as image_verify_task

    queued: set[int] = set()

    def publish(image_id: int) -> None:
        image_verify_task.delay(image_id)
        queued.add(image_id)

    try:
        with transaction.atomic():
            images = Image.objects.select_for_update().filter(scene__study=study)
            ids = list(images.values_list("pk", flat=True))
            images.update(integrity=Image.Integrity.PENDING)
            for image_id in ids:
                transaction.on_commit(lambda image_id=image_id: publish(image_id))
    except OperationalError as exc:
        Image.objects.filter(scene__study=study, integrity=Image.Integrity.PENDING).exclude(
            pk__in=queued
        ).update(integrity=Image.Integrity.UNCHECKED)
        raise BrokerUnavailable(
            f"the Celery broker did not answer ({exc}); {len(queued)} of {len(ids)} "
            "checks were queued"
        ) from exc
    return len(ids)
