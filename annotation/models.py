"""Studies, scenes, images and pairs.

Invariants live in the database (constraints), workflows in ``services.py``.
Annotator sessions, trials and votes join this module with the annotator API.
"""

import secrets

from django.db import models
from django.db.models.functions import Greatest, Least


def new_completion_code() -> str:
    return secrets.token_hex(4).upper()


class Design(models.TextChoices):
    REF_VS_TEST = "ref-vs-test", "Reference vs test (DiffIQA)"
    PAIRWISE = "pairwise", "Pairwise within a scene (SRIQA-Bench)"
    NR_PAIRWISE = "nr-pairwise", "Pairwise, no reference shown"


class Study(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        LIVE = "live", "Live"
        CLOSED = "closed", "Closed"

    slug = models.SlugField(max_length=64, unique=True)
    title = models.CharField(max_length=200, blank=True)
    design = models.CharField(max_length=16, choices=Design.choices)
    votes_per_pair = models.PositiveSmallIntegerField(default=3)
    gold_rate = models.FloatField(default=0.0)
    show_reference = models.BooleanField(
        default=False, help_text="Pairwise designs: show the scene's reference between A and B."
    )
    reference_is_candidate = models.BooleanField(
        default=True, help_text="Pairwise designs: the reference is compared like any other image."
    )
    instructions = models.TextField(blank=True)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.DRAFT)
    completion_code = models.CharField(max_length=32, default=new_completion_code)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "studies"
        ordering = ["slug"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(design__in=Design.values), name="study_design_known"
            ),
            models.CheckConstraint(
                condition=models.Q(votes_per_pair__gte=1), name="study_votes_per_pair_positive"
            ),
            models.CheckConstraint(
                condition=models.Q(gold_rate__gte=0.0, gold_rate__lt=1.0),
                name="study_gold_rate_fraction",
            ),
        ]

    def __str__(self) -> str:
        return self.slug


class Scene(models.Model):
    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="scenes")
    name = models.CharField(max_length=200)

    class Meta:
        ordering = ["study", "name"]
        constraints = [
            models.UniqueConstraint(fields=["study", "name"], name="scene_name_unique_in_study"),
        ]

    def __str__(self) -> str:
        return f"{self.study.slug}/{self.name}"


class Image(models.Model):
    class Role(models.TextChoices):
        REFERENCE = "reference", "Reference"
        TEST = "test", "Test"

    class Integrity(models.TextChoices):
        UNCHECKED = "unchecked", "Not checked since import"
        PENDING = "pending", "Check queued"
        OK = "ok", "File matches its checksum"
        MISSING = "missing", "File missing"
        MISMATCH = "mismatch", "File differs from its checksum"

    scene = models.ForeignKey(Scene, on_delete=models.CASCADE, related_name="images")
    # The image's stable name in the study, e.g. ``scene/file.png``; exports use it.
    name = models.CharField(max_length=400)
    role = models.CharField(max_length=9, choices=Role.choices)
    condition = models.CharField(max_length=200, blank=True)
    # Content address: the file lives at MEDIA_ROOT/<file>, named by its sha256, so
    # the same content imported twice (in any study) is stored once.
    sha256 = models.CharField(max_length=64, db_index=True)
    file = models.CharField(max_length=200)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    format = models.CharField(max_length=16)
    size_bytes = models.PositiveBigIntegerField()
    integrity = models.CharField(
        max_length=9, choices=Integrity.choices, default=Integrity.UNCHECKED
    )
    integrity_checked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["scene", "name"]
        constraints = [
            models.UniqueConstraint(fields=["scene", "name"], name="image_name_unique_in_scene"),
            models.UniqueConstraint(
                fields=["scene"],
                condition=models.Q(role="reference"),
                name="scene_has_at_most_one_reference",
            ),
            models.CheckConstraint(
                condition=models.Q(role__in=["reference", "test"]), name="image_role_known"
            ),
            models.CheckConstraint(
                condition=models.Q(width__gte=1, height__gte=1), name="image_has_pixels"
            ),
            models.CheckConstraint(
                condition=models.Q(sha256__regex=r"^[0-9a-f]{64}$"), name="image_sha256_hex"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class Pair(models.Model):
    class Answer(models.TextChoices):
        A = "a", "A is better"
        SIMILAR = "similar", "Similar"
        B = "b", "B is better"

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="pairs")
    scene = models.ForeignKey(Scene, on_delete=models.CASCADE, related_name="pairs")
    image_a = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="+")
    image_b = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="+")
    shown_reference = models.ForeignKey(
        Image, on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    target_votes = models.PositiveSmallIntegerField()
    # Set for gold pairs only: the known answer, used for quality control.
    gold_answer = models.CharField(max_length=7, choices=Answer.choices, blank=True)

    class Meta:
        ordering = ["scene", "id"]
        constraints = [
            models.CheckConstraint(
                condition=~models.Q(image_a=models.F("image_b")), name="pair_images_differ"
            ),
            # One pair per unordered couple of images: (a, b) and (b, a) are the same pair.
            models.UniqueConstraint(
                Least("image_a", "image_b"),
                Greatest("image_a", "image_b"),
                name="pair_unordered_unique",
            ),
            models.CheckConstraint(
                condition=models.Q(target_votes__gte=1), name="pair_target_votes_positive"
            ),
            models.CheckConstraint(
                condition=models.Q(gold_answer__in=["", "a", "similar", "b"]),
                name="pair_gold_answer_known",
            ),
        ]
        indexes = [models.Index(fields=["study", "scene"])]

    def __str__(self) -> str:
        return f"{self.image_a.name} vs {self.image_b.name}"

    @property
    def is_gold(self) -> bool:
        return bool(self.gold_answer)
