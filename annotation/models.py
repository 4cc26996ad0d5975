"""Studies, scenes, images and pairs; annotator sessions, trials and votes; researchers'
exclusion decisions.

Invariants live in the database (constraints), workflows in ``services.py``. Over 400 lines:
one module for the domain's tables, which refer to each other throughout.
"""

import random
import secrets
import uuid

from django.conf import settings
from django.db import models
from django.db.models.functions import Greatest, Least

from annotation.study_settings import (
    Design,
    Policy,
    Sampling,
    StudyStatus,
    study_check_constraints,
    study_policy,
)


def new_completion_code() -> str:
    return secrets.token_hex(4).upper()


def random_key() -> float:
    return random.random()


def new_token() -> str:
    # 256 bits: the annotator's only credential, so it must not be guessable.
    return secrets.token_urlsafe(32)


def new_pseudonym() -> str:
    return secrets.token_hex(6)


def default_min_response_ms() -> int:
    """A new study's ``min_response_ms``: ``IQA_MIN_RESPONSE_MS`` (400 by default)."""
    return settings.IQA_MIN_RESPONSE_MS


class Study(models.Model):
    Status = StudyStatus

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
    completion_url = models.URLField(
        max_length=500,
        blank=True,
        help_text="Where annotators go when done, e.g. Prolific's "
        "https://app.prolific.com/submissions/complete?cc=<code>.",
    )
    require_participant_id = models.BooleanField(
        default=False,
        help_text="Refuse sessions without a Prolific or MTurk id of the right format "
        "(on by default for studies imported with a completion URL).",
    )
    trials_per_session = models.PositiveIntegerField(
        default=100, help_text="Quota of trials per session (gold included, practice not)."
    )
    practice_trials = models.PositiveSmallIntegerField(
        default=2, help_text="Practice trials at the start of each session; never counted."
    )
    lease_seconds = models.PositiveIntegerField(
        default=600, help_text="How long an issued trial holds its pair before it returns."
    )
    # The public link against scripts (assignment rules 12 and 13): a lease keeps its pair
    # from others only while its annotator answers; answers faster than this are stored
    # but neither count nor keep their lease; a completion code needs this many counted
    # trials (None: the quota).
    hold_seconds = models.PositiveIntegerField(
        default=60,
        help_text="How long a trial keeps its pair from others while its annotator gives no "
        "answer; after that, someone with nothing else to do may be given the pair too.",
    )
    min_response_ms = models.PositiveIntegerField(
        default=default_min_response_ms,
        help_text="Answers sooner than this after their trial was issued (measured by the "
        "server) are kept but not counted.",
    )
    min_counted_trials = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Counted trials a session needs for the completion code (blank: the quota).",
    )
    break_every = models.PositiveIntegerField(
        default=50, help_text="The annotator page suggests a break every N trials (0: never)."
    )
    consent = models.TextField(
        blank=True, help_text="Consent text shown before the first trial (a generic one if blank)."
    )
    # Quality control: an annotator failing any rule is excluded from labels, scores and
    # agreement (votes are kept). A blank threshold turns its rule off.
    qc_min_gold_accuracy = models.FloatField(
        null=True, blank=True, default=0.7, help_text="Exclude below this gold accuracy."
    )
    qc_min_median_response_ms = models.FloatField(
        null=True, blank=True, default=500.0, help_text="Exclude below this median response time."
    )
    qc_side_bias_alpha = models.FloatField(
        null=True,
        blank=True,
        default=0.001,
        help_text="Exclude when a binomial test of the share of 'left' answers gives p below this.",
    )
    qc_min_majority_agreement = models.FloatField(
        null=True,
        blank=True,
        default=None,
        help_text="Exclude below this agreement with the other annotators' majority.",
    )
    qc_max_similar_share = models.FloatField(
        null=True, blank=True, default=0.9, help_text="Exclude above this share of 'similar'."
    )
    qc_fast_response_ms = models.FloatField(
        default=300.0, help_text="Answers faster than this count as too fast (reported)."
    )
    # How the rules judge (analysis.quality): one-sided exact binomial tests corrected across
    # annotators, each rule needing a minimum of evidence; "threshold", "none", 0 and 0 give
    # the rates against the thresholds on any evidence.
    qc_test = models.CharField(
        max_length=16,
        default="binomial",
        choices=[
            ("binomial", "One-sided binomial tests"),
            ("threshold", "Rates against thresholds"),
        ],
        help_text="'binomial' (tests) or 'threshold'.",
    )
    qc_correction = models.CharField(
        max_length=8,
        default="holm",
        choices=[("holm", "Holm"), ("bh", "Benjamini-Hochberg"), ("none", "None")],
        help_text="Multiple-testing correction: 'holm', 'bh' (Benjamini-Hochberg) or 'none'.",
    )
    qc_alpha = models.FloatField(default=0.05, help_text="Study-level error rate of the tests.")
    qc_min_answers = models.PositiveIntegerField(
        default=20, help_text="Answers a rate rule needs to judge an annotator."
    )
    qc_min_gold = models.PositiveIntegerField(
        default=5, help_text="Gold trials the gold-accuracy rule needs."
    )
    # How votes are spent (annotation.services.sampling): a ref-vs-test pair leaves
    # assignment once its majority label is decided; a scaled design's votes go where the
    # expected information gain is highest, within the scene's budget.
    stop_when_decided = models.BooleanField(
        default=False,
        db_default=False,
        help_text="Ref-vs-test: a pair gets no more trials once its majority label cannot "
        "change with the votes still due.",
    )
    sampling = models.CharField(
        max_length=8,
        choices=Sampling.choices,
        default=Sampling.UNIFORM,
        db_default=Sampling.UNIFORM,
        help_text="Pairwise designs: 'uniform' (every pair its votes_per_pair) or 'active' "
        "(each scene's pairs x votes_per_pair votes where they tell most).",
    )
    sampling_every = models.PositiveIntegerField(
        default=10,
        db_default=10,
        help_text="Active sampling: re-plan a scene after this many counted votes.",
    )
    # Per-metric tie band for agreement, e.g. {"psnr": 0.5}; 0 when absent.
    metric_deltas = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # Researchers: the owner (who made it) and the members, each with a role
    # (``StudyMember``: viewer, editor or owner), see the study; staff see all.
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="owned_studies",
    )
    members = models.ManyToManyField(
        settings.AUTH_USER_MODEL,
        through="StudyMember",
        blank=True,
        related_name="member_studies",
    )
    # Archived: hidden from the study list, read-only (no annotator, no change) until an
    # owner restores it.
    archived_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "studies"
        ordering = ["slug"]
        # The bounds of annotation.study_settings, which every form and service checks first.
        constraints = study_check_constraints()

    def __str__(self) -> str:
        return self.slug

    @property
    def policy(self) -> str:
        """The sampling policy in force: what each trial records when it is issued."""
        return study_policy(sampling=self.sampling, stop_when_decided=self.stop_when_decided)


class Role(models.TextChoices):
    """What a member may do with a study; each role may do what the roles before it may."""

    VIEWER = "viewer", "Viewer: read and download"
    EDITOR = "editor", "Editor: settings, scoring, exports, exclusions, pilot data"
    OWNER = "owner", "Owner: members, archive, delete"


ROLE_RANK = {Role.VIEWER: 1, Role.EDITOR: 2, Role.OWNER: 3}


def role_at_least(role: str | None, needed: str) -> bool:
    """Whether ``role`` (``None``: no role) allows what ``needed`` may do."""
    return role is not None and ROLE_RANK[role] >= ROLE_RANK[needed]


class StudyMember(models.Model):
    """A researcher's role on a study they do not own (the study's ``owner`` is its owner
    without a row here)."""

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="study_memberships"
    )
    role = models.CharField(max_length=8, choices=Role.choices, default=Role.VIEWER)
    added_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["study", "user__username"]
        constraints = [
            models.UniqueConstraint(fields=["study", "user"], name="member_once_per_study"),
            models.CheckConstraint(
                condition=models.Q(role__in=["viewer", "editor", "owner"]),
                name="member_role_known",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.study.slug}: {self.user} ({self.role})"


class Scene(models.Model):
    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="scenes")
    name = models.CharField(max_length=200)
    # Active sampling's last plan (analysis.services.sampling_plan): when, and the mean
    # posterior standard deviation of the scene's scores then (the dashboard's uncertainty).
    planned_at = models.DateTimeField(null=True, blank=True)
    posterior_sd = models.FloatField(null=True, blank=True)

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

    class Gold(models.TextChoices):
        NONE = "", "Not a gold image"
        WORSE = "worse", "Clearly worse than the scene's anchor"
        BETTER = "better", "Clearly better than the scene's anchor"
        # A decoy made for the instructions page's worked example: in no pair, so never
        # shown as a trial (the gold pairs it would spoil use other decoys).
        EXAMPLE = "example", "The worked example's decoy (clearly worse than the anchor)"

    scene = models.ForeignKey(Scene, on_delete=models.CASCADE, related_name="images")
    # The image's stable name in the study, e.g. ``scene/file.png``; exports use it.
    name = models.CharField(max_length=400)
    role = models.CharField(max_length=9, choices=Role.choices)
    condition = models.CharField(max_length=200, blank=True)
    # Content address: the file lives at MEDIA_ROOT/<file>, named by its sha256, so
    # the same content imported twice (in any study) is stored once.
    sha256 = models.CharField(max_length=64, db_index=True)
    file = models.CharField(max_length=200)
    # A lossless PNG of the same pixels, stored beside the original when browsers cannot
    # show its format (TIFF, PPM, BMP): the pages show it; scoring reads ``file``.
    display_file = models.CharField(max_length=200, blank=True, default="", db_index=True)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    format = models.CharField(max_length=16)
    size_bytes = models.PositiveBigIntegerField()
    integrity = models.CharField(
        max_length=9, choices=Integrity.choices, default=Integrity.UNCHECKED
    )
    integrity_checked_at = models.DateTimeField(null=True, blank=True)
    # Gold images exist only for gold pairs (against the scene's reference, or its first
    # image when it has none): they are never compared in the study's own pairs.
    gold = models.CharField(max_length=7, choices=Gold.choices, blank=True, default="")

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
            models.CheckConstraint(
                condition=models.Q(gold__in=["", "worse", "better", "example"]),
                name="image_gold_known",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class Pair(models.Model):
    class Answer(models.TextChoices):
        A = "a", "A is better"
        SIMILAR = "similar", "Similar"
        B = "b", "B is better"

    # No index of its own: (study, scene) below starts with it (every index on this table
    # is written by each claim).
    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="pairs", db_index=False)
    scene = models.ForeignKey(Scene, on_delete=models.CASCADE, related_name="pairs")
    image_a = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="+")
    image_b = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="+")
    shown_reference = models.ForeignKey(
        Image, on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    target_votes = models.PositiveSmallIntegerField()
    # Set for gold pairs only: the known answer, used for quality control.
    gold_answer = models.CharField(max_length=7, choices=Answer.choices, blank=True)
    # Assignment state: counted votes plus live leases, kept by the trial and vote
    # services under row locks. A pair is offered while it is below its target.
    n_assigned = models.PositiveIntegerField(default=0)
    # Position among pairs with the same n_assigned; redrawn on each claim, so the
    # order among equals is random and concurrent claims walk one index.
    rand_key = models.FloatField(default=random_key)
    # Set when the study stops when decided and the pair's majority label could no longer
    # change with the votes still due: its target then became its counted votes.
    decided_at = models.DateTimeField(null=True, blank=True)

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
        indexes = [
            models.Index(fields=["study", "scene"]),
            models.Index(
                fields=["study", "n_assigned", "rand_key"],
                condition=models.Q(gold_answer=""),
                name="pair_assignment_order",
            ),
            # The claim's walk (next_trial.sql, and _issue_counted on the ORM path) over the
            # pairs below their target only: under active sampling most pairs are at their
            # target between plans, and with the index above a claim stepped over those
            # that came first in its order. tests/annotation/test_claim_index.py.
            models.Index(
                fields=["study", "n_assigned", "rand_key"],
                condition=models.Q(gold_answer="", n_assigned__lt=models.F("target_votes")),
                name="pair_claimable_order",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.image_a.name} vs {self.image_b.name}"

    @property
    def is_gold(self) -> bool:
        return bool(self.gold_answer)


class AnnotatorSession(models.Model):
    """One person working on one study. The token is the annotator's only credential."""

    class Outcome(models.TextChoices):
        QUOTA = "quota", "Reached its quota"
        FULL = "full", "Found no work left (the study was full)"
        CLOSED = "closed", "The study stopped taking answers"

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="sessions")
    token = models.CharField(max_length=64, unique=True, default=new_token)
    # What exports show instead of the participant id.
    pseudonym = models.CharField(max_length=16, default=new_pseudonym)
    participant_id = models.CharField(max_length=128, blank=True)
    # The recruiter's id of this participation (Prolific SESSION_ID, MTurk assignmentId):
    # with the participant id, it resumes the session from another browser.
    assignment_id = models.CharField(max_length=200, blank=True)
    source = models.CharField(max_length=32, blank=True)
    # Recruiter ids beside the participant id: Prolific STUDY_ID/SESSION_ID, MTurk
    # assignmentId/hitId.
    external_ids = models.JSONField(default=dict, blank=True)
    # devicePixelRatio, viewport, user agent as the session opened.
    client_info = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField()
    completed_at = models.DateTimeField(null=True, blank=True)
    # Why it completed (only a session with its counted trials gets the completion code).
    outcome = models.CharField(max_length=8, choices=Outcome.choices, blank=True)
    # Assignment rules 12 and 13: a keyed hash of the client address the session opened
    # from; when its first trial was issued; whether it was one of the first
    # IQA_SHIELDS_PER_ADDRESS sessions of its address to start within hold_seconds (its
    # leases may then keep their pairs before it has proved itself); its last sign of a
    # person (the first trial, or an answer at least min_response_ms after its issue).
    address_key = models.CharField(max_length=32, blank=True)
    # A researcher trying the study from its dashboard (preview): the session's answers
    # are pilot data, left out of counts, labels, quality control, reports and exports,
    # and never take a pair's target.
    pilot = models.BooleanField(default=False, db_default=False)
    piloted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    started_at = models.DateTimeField(null=True, blank=True)
    shielded = models.BooleanField(default=False)
    active_at = models.DateTimeField(null=True, blank=True)
    # Answered trials, kept by vote_submit under the session's row lock.
    n_practice_done = models.PositiveIntegerField(default=0)
    n_done = models.PositiveIntegerField(default=0)
    # Trials issued so far (their ordinal), including abandoned ones.
    n_issued = models.PositiveIntegerField(default=0)
    open_trial = models.ForeignKey(
        "Trial", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # The trial issued ahead of the open one (the page preloads its images); it becomes
    # the open trial when the open one is answered.
    queued_trial = models.ForeignKey(
        "Trial", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["study", "created_at"]
        constraints = [
            # One session per participation (a participant id with the recruiter's id of
            # that participation, or alone): opened again, it is resumed with the
            # recruiter's id, never with the participant id alone.
            models.UniqueConstraint(
                fields=["study", "participant_id", "assignment_id"],
                condition=~models.Q(participant_id=""),
                name="session_participation_unique_in_study",
            ),
            models.UniqueConstraint(
                fields=["study", "pseudonym"], name="session_pseudonym_unique_in_study"
            ),
            models.CheckConstraint(
                condition=models.Q(outcome__in=["", "quota", "full", "closed"]),
                name="session_outcome_known",
            ),
        ]
        indexes = [
            # Rule 13's count of an address's sessions that started within hold_seconds.
            models.Index(
                fields=["study", "address_key", "started_at"], name="session_address_started"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.study.slug}/{self.pseudonym}"


class Trial(models.Model):
    """One presentation of a pair to a session, with the sides fixed by the server."""

    class Kind(models.TextChoices):
        PRACTICE = "practice", "Practice (never counted)"
        GOLD = "gold", "Gold (quality control)"
        LABEL = "label", "Counted"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4)
    session = models.ForeignKey(AnnotatorSession, on_delete=models.CASCADE, related_name="trials")
    pair = models.ForeignKey(Pair, on_delete=models.CASCADE, related_name="trials")
    kind = models.CharField(max_length=8, choices=Kind.choices)
    ordinal = models.PositiveIntegerField()
    # True when image_a is shown on the left.
    a_on_left = models.BooleanField()
    issued_at = models.DateTimeField()
    lease_expires_at = models.DateTimeField()
    answered_at = models.DateTimeField(null=True, blank=True)
    # Set when an expired, unanswered lease gave its pair back to the pool.
    released = models.BooleanField(default=False)
    # The study's sampling policy when the trial was issued (``Study.policy``).
    policy = models.CharField(
        max_length=10, choices=Policy.choices, default=Policy.UNIFORM, db_default=Policy.UNIFORM
    )

    class Meta:
        ordering = ["session", "ordinal"]
        constraints = [
            # A session never sees a pair twice.
            models.UniqueConstraint(fields=["session", "pair"], name="trial_pair_once_per_session"),
            models.UniqueConstraint(
                fields=["session", "ordinal"], name="trial_ordinal_unique_in_session"
            ),
            models.CheckConstraint(
                condition=models.Q(kind__in=["practice", "gold", "label"]), name="trial_kind_known"
            ),
        ]
        indexes = [
            # Open leases, for the sweep that returns expired ones to the pool.
            models.Index(
                fields=["lease_expires_at"],
                condition=models.Q(answered_at__isnull=True, released=False, kind="label"),
                name="trial_open_lease",
            ),
        ]

    def __str__(self) -> str:
        return str(self.id)


class Vote(models.Model):
    """The answer to a trial. Raw votes are never edited or deleted by aggregation."""

    class Choice(models.TextChoices):
        LEFT = "left", "Left looks better"
        SIMILAR = "similar", "Similar"
        RIGHT = "right", "Right looks better"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4)
    trial = models.OneToOneField(Trial, on_delete=models.CASCADE, related_name="vote")
    # Copied from the trial so that counting and exports read one table.
    session = models.ForeignKey(AnnotatorSession, on_delete=models.CASCADE, related_name="votes")
    pair = models.ForeignKey(Pair, on_delete=models.CASCADE, related_name="votes")
    kind = models.CharField(max_length=8, choices=Trial.Kind.choices)
    choice = models.CharField(max_length=7, choices=Choice.choices)
    # The choice in the pair's terms: a, b or similar (the sides undone).
    preferred = models.CharField(max_length=7, choices=Pair.Answer.choices)
    late = models.BooleanField(default=False)
    # As the page measured it (what the client says), and as the server measured it: from
    # the trial's issue to this answer's arrival. An answer sooner than the study's
    # min_response_ms (server-measured) is kept but counts for nothing (``too_fast``).
    response_ms = models.PositiveIntegerField(null=True, blank=True)
    server_ms = models.PositiveIntegerField(null=True, blank=True)
    # A database default too: imports write votes with COPY, naming their own columns.
    too_fast = models.BooleanField(default=False, db_default=False)
    # Copied from the session: a researcher's preview answer, left out of every count,
    # label, report and export (unless asked for).
    pilot = models.BooleanField(default=False, db_default=False)
    client_info = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["created_at"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(choice__in=["left", "similar", "right"]),
                name="vote_choice_known",
            ),
            models.CheckConstraint(
                condition=models.Q(preferred__in=["a", "similar", "b"]),
                name="vote_preferred_known",
            ),
        ]
        indexes = [models.Index(fields=["pair", "kind"])]

    def __str__(self) -> str:
        return f"{self.trial_id}: {self.choice}"


class ExclusionDecision(models.Model):
    """A researcher's decision to exclude an annotator by hand, or to re-include one, with
    the reason. Every decision is kept; the latest one for a session is in force and
    overrides the automatic quality-control rules for that session."""

    session = models.ForeignKey(
        AnnotatorSession, on_delete=models.CASCADE, related_name="exclusion_decisions"
    )
    excluded = models.BooleanField()
    reason = models.TextField()
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    decided_at = models.DateTimeField()

    class Meta:
        ordering = ["session", "decided_at"]

    def __str__(self) -> str:
        verb = "excluded" if self.excluded else "re-included"
        return f"{self.session_id} {verb}: {self.reason}"


class RateWindow(models.Model):
    """A throttle's count in one fixed window (``annotation/throttles.py``) when no shared
    cache is configured: the web processes then count here, in one row per key and window
    that an upsert increments, so a limit is what its setting says however many processes
    serve requests. Rows past ``expires_at`` are deleted by the beat."""

    key = models.CharField(max_length=255, primary_key=True)
    count = models.PositiveIntegerField(default=0)
    expires_at = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return f"{self.key}: {self.count}"


class StoreLeftover(models.Model):
    """A file a refused import added to the image store and could not remove yet: another
    import held its group of files (``annotation/services/file_claims.py``). The beat's
    sweep removes it once no import holds the group and no row references the file."""

    path = models.CharField(max_length=200, primary_key=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.path
