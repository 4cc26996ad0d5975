"""The researcher API's input and output serializers (each output serializer is its
operation's schema); the error body is ``annotation.serializers.ErrorSerializer``."""

from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from annotation.models import Design, Study
from annotation.serializers import IsoDateTimeField, OutputSerializer, StudySummarySerializer
from annotation.services.exclusions import REASON_MAX_CHARS
from annotation.study_settings import CHANGEABLE_SETTINGS, SETTINGS, Policy, Setting
from workspace.export_jobs import JOB_FORMATS
from workspace.models import ExportJob, ImportJob

# --- accounts -------------------------------------------------------------------------


class TokenObtainInput(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=4096, trim_whitespace=False)


class TokenSerializer(OutputSerializer):
    """The caller's API token: send it as ``Authorization: Token <token>``."""

    token = serializers.CharField(help_text="Shown once: only its digest is stored.")


# --- a study's dashboard: settings, progress, scoring, recruiting links ----------------


def _setting_field(setting: Setting, *, as_input: bool) -> serializers.Field:
    """A study setting as an API field, typed from ``annotation.study_settings``'s table
    (the one place its bounds are stated; the validator checks them). As input every key
    is optional, and a rule that can be off takes a number or "off"."""
    common = {"help_text": setting.description, "required": not as_input}
    if setting.kind is bool:
        return serializers.BooleanField(**common)
    if setting.kind in (int, float):
        if setting.nullable and as_input:
            return serializers.CharField(allow_null=True, **common)
        number = serializers.IntegerField if setting.kind is int else serializers.FloatField
        return number(allow_null=setting.nullable, **common)
    if setting.kind is dict:
        return serializers.DictField(child=serializers.FloatField(), **common)
    if setting.choices:
        return serializers.ChoiceField(choices=setting.choices, **common)
    return serializers.CharField(allow_blank=True, **common)


class StudySettingsSerializer(serializers.Serializer):
    """What ``configure_study`` (and ``PATCH``) changes, one field per changeable setting;
    a null threshold is a rule that is off."""

    completion_code = serializers.CharField(help_text="Read only: set at import.")

    def get_fields(self) -> dict:
        fields = super().get_fields()
        for name in CHANGEABLE_SETTINGS:
            fields[name] = _setting_field(SETTINGS[name], as_input=False)
        return fields


class SceneProgressSerializer(serializers.Serializer):
    scene = serializers.CharField()
    pairs = serializers.IntegerField(help_text="Gold pairs apart.")
    pairs_complete = serializers.IntegerField()
    target_votes = serializers.IntegerField()
    counted_votes = serializers.IntegerField()
    credited = serializers.IntegerField(help_text="Counted votes up to each pair's target.")
    posterior_sd = serializers.FloatField(
        allow_null=True,
        help_text="Active sampling: the mean posterior standard deviation of the scene's "
        "scores at its last plan (null before it, and for other policies).",
    )


class ProgressTotalsSerializer(serializers.Serializer):
    scenes = serializers.IntegerField()
    images = serializers.IntegerField()
    pairs = serializers.IntegerField(help_text="Gold pairs apart.")
    gold_pairs = serializers.IntegerField()
    pairs_complete = serializers.IntegerField()
    target_votes = serializers.IntegerField()
    counted_votes = serializers.IntegerField()
    credited = serializers.IntegerField()
    remaining_votes = serializers.IntegerField(help_text="Counted votes the targets still lack.")
    past_target_votes = serializers.IntegerField(
        help_text="Counted votes past their pair's target (a lease set aside or expired, "
        "answered after all)."
    )
    votes = serializers.IntegerField(help_text="Every vote, practice and gold included.")
    uniform_votes = serializers.IntegerField(
        help_text="What the uniform design costs: pairs x votes_per_pair (active sampling's "
        "budget)."
    )
    pairs_decided_early = serializers.IntegerField(
        help_text="Stop when decided: pairs whose majority label was decided early."
    )
    votes_saved = serializers.IntegerField(
        help_text="Stop when decided: the votes the decided pairs no longer need."
    )


class SessionCountsSerializer(serializers.Serializer):
    started = serializers.IntegerField()
    completed = serializers.IntegerField()
    full = serializers.IntegerField(
        help_text="Sessions that found no work left for them: told the study was full, "
        "without the completion code."
    )
    answered = serializers.IntegerField(help_text="Trials answered, practice included.")


class HourVotesSerializer(serializers.Serializer):
    hour = IsoDateTimeField(help_text="The hour's start (UTC).")
    votes = serializers.IntegerField()
    counted_votes = serializers.IntegerField()


class RateSerializer(serializers.Serializer):
    window_hours = serializers.FloatField()
    counted_votes = serializers.IntegerField(help_text="Counted votes in the window.")
    per_hour = serializers.FloatField()


class StudyProgressSerializer(serializers.Serializer):
    as_of = IsoDateTimeField(help_text="When the vote counts were read (sessions: now).")
    policy = serializers.ChoiceField(
        choices=Policy.choices, help_text="How the study spends its votes (Study.policy)."
    )
    totals = ProgressTotalsSerializer()
    sessions = SessionCountsSerializer()
    scenes = SceneProgressSerializer(many=True)
    votes_per_hour = HourVotesSerializer(many=True)
    median_response_ms = serializers.FloatField(
        allow_null=True, help_text="Median response time, practice apart."
    )
    rate = RateSerializer()
    eta_hours = serializers.FloatField(
        allow_null=True,
        help_text="Hours to reach every target at the window's rate; null when no vote came "
        "in during the window.",
    )


class MetricScoringSerializer(serializers.Serializer):
    metric = serializers.CharField()
    version = serializers.CharField()
    total = serializers.IntegerField()
    scored = serializers.IntegerField()
    failed = serializers.IntegerField()
    pending = serializers.IntegerField()
    pending_batches = serializers.IntegerField()
    first_error = serializers.CharField(help_text="The first failed item's message, or ''.")


class ScoringOverviewSerializer(serializers.Serializer):
    as_of = IsoDateTimeField()
    metrics = MetricScoringSerializer(many=True)


class RecruitingLinksSerializer(serializers.Serializer):
    annotator_url = serializers.CharField()
    prolific_url = serializers.CharField()
    prolific_completion_url = serializers.CharField()
    mturk_xml = serializers.CharField()


class StudyDetailSerializer(StudySummarySerializer):
    """A study as its dashboard shows it: the summary's keys, then its settings, its
    progress, its scoring and its recruiting links."""

    settings = StudySettingsSerializer()
    progress = StudyProgressSerializer()
    scoring = ScoringOverviewSerializer()
    links = RecruitingLinksSerializer()


class StudyLiveSerializer(OutputSerializer):
    """What the dashboard polls: status, progress and scoring."""

    status = serializers.ChoiceField(choices=Study.Status.choices)
    progress = StudyProgressSerializer()
    scoring = ScoringOverviewSerializer()


class StudyChangeInput(serializers.Serializer):
    """``PATCH studies/{slug}``: any of these keys. The study-settings validator checks
    them (and names an unknown or fixed key); this class documents the body."""

    status = serializers.ChoiceField(choices=Study.Status.choices, required=False)

    def get_fields(self) -> dict:
        fields = super().get_fields()
        for name in CHANGEABLE_SETTINGS:
            fields[name] = _setting_field(SETTINGS[name], as_input=True)
        return fields


# --- study imports --------------------------------------------------------------------


class FormBooleanField(serializers.BooleanField):
    """A boolean that, absent from a multipart form, is absent (DRF's own reads an absent
    checkbox as false, which would turn ``reference_is_candidate`` off unasked)."""

    default_empty_html = serializers.empty


class StudyCreateInput(serializers.Serializer):
    """``POST /api/v1/studies`` (multipart): the zip as ``file`` (or, staff only,
    ``server_folder``), the slug and design, and ``import_study``'s options. Types are
    parsed here; bounds and rules are ``annotation.study_settings``'s one validator's."""

    file = serializers.FileField(
        required=False,
        help_text="A .zip holding the folder layout (one sub-folder per scene) or a manifest "
        "CSV with its images, at its top or inside one top folder.",
    )
    server_folder = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=500,
        help_text="Staff only, instead of file: a folder (or manifest CSV) relative to "
        "IQA_IMPORT_ROOT.",
    )
    slug = serializers.CharField(max_length=200)
    design = serializers.ChoiceField(choices=Design.choices)
    title = serializers.CharField(required=False, allow_blank=True, max_length=1000)
    instructions = serializers.CharField(required=False, allow_blank=True, max_length=20_000)
    votes_per_pair = serializers.IntegerField(required=False)
    show_reference = FormBooleanField(required=False)
    reference_is_candidate = FormBooleanField(required=False)
    gold_rate = serializers.FloatField(required=False)
    trials_per_session = serializers.IntegerField(required=False)
    practice_trials = serializers.IntegerField(required=False)
    reference_name = serializers.CharField(required=False, allow_blank=True, max_length=100)
    completion_url = serializers.CharField(required=False, allow_blank=True, max_length=1000)


class ImportStartedDetailSerializer(OutputSerializer):
    id = serializers.UUIDField()
    status = serializers.ChoiceField(choices=ImportJob.Status.choices)
    url = serializers.SerializerMethodField(help_text="Where to follow it: GET imports/{id}.")

    def get_url(self, job: ImportJob) -> str:
        return reverse("workspace-api:import-detail", args=[job.pk])


# The body's key is ``import``, a Python keyword, hence the class built with ``type``.
ImportStartedSerializer = type(
    "ImportStartedSerializer",
    (OutputSerializer,),
    {
        "__module__": __name__,
        "__doc__": "The queued import job; follow it at its url.",
        "import": ImportStartedDetailSerializer(source="*"),
    },
)


class SceneSummarySerializer(serializers.Serializer):
    scene = serializers.CharField()
    images = serializers.IntegerField()
    pairs = serializers.IntegerField()
    gold_pairs = serializers.IntegerField()


class ImportSummarySerializer(serializers.Serializer):
    scenes = serializers.IntegerField()
    images = serializers.IntegerField(help_text="The zip's, and those the import made.")
    images_made = serializers.IntegerField(
        required=False,
        help_text="Of the images, those the import made for the gold checks (a degraded "
        "copy per scene, the worked example's).",
    )
    pairs = serializers.IntegerField(help_text="Gold pairs apart.")
    gold_pairs = serializers.IntegerField()
    files_stored = serializers.IntegerField(help_text="New files in the image store.")
    per_scene = SceneSummarySerializer(many=True)


class ImportJobSerializer(OutputSerializer):
    """An import job: its progress (images checked of ``total``), then its ``summary``
    when done or its one-line ``error`` when failed (the other key is absent)."""

    id = serializers.UUIDField()
    slug = serializers.SlugField()
    status = serializers.ChoiceField(choices=ImportJob.Status.choices)
    done = serializers.IntegerField()
    total = serializers.IntegerField()
    summary = ImportSummarySerializer(required=False, help_text="Only when done.")
    error = serializers.CharField(required=False, help_text="Only when failed.")
    study = serializers.SerializerMethodField(
        help_text="The study's slug once the import is done, else null."
    )

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_study(self, job: ImportJob) -> str | None:
        return job.slug if job.status == ImportJob.Status.DONE else None

    def to_representation(self, job: ImportJob) -> dict:
        body = super().to_representation(job)
        if job.status != ImportJob.Status.DONE:
            del body["summary"]
        if job.status != ImportJob.Status.FAILED:
            del body["error"]
        return body


# --- quality control: the annotators' table and decisions by hand ----------------------


class AnnotatorRowSerializer(OutputSerializer):
    """One annotator's row of the quality-control table (``agreement_report``'s and the
    export's ``annotators`` table, plus the session's source)."""

    annotator = serializers.CharField(help_text="The session's pseudonym, as exports show it.")
    source = serializers.CharField(help_text="Where the session came from (prolific, ...).")
    completed = serializers.BooleanField(help_text="The session reached its end.")
    n_votes = serializers.IntegerField(help_text="Answers checked, practice apart.")
    n_gold = serializers.IntegerField()
    gold_accuracy = serializers.FloatField(allow_null=True)
    n_majority = serializers.IntegerField(
        help_text="Label answers on pairs where the others have a majority."
    )
    majority_agreement = serializers.FloatField(
        allow_null=True, help_text="Agreement with the others' (leave-one-out) majority."
    )
    median_response_ms = serializers.FloatField(allow_null=True)
    fast_share = serializers.FloatField(
        allow_null=True, help_text="Share of answers faster than qc_fast_response_ms."
    )
    n_left = serializers.IntegerField()
    left_share = serializers.FloatField(
        allow_null=True, help_text="Share of left among left/right answers."
    )
    side_bias_p = serializers.FloatField(
        allow_null=True, help_text="Exact two-sided binomial p of left_share against 0.5."
    )
    similar_share = serializers.FloatField(allow_null=True)
    excluded = serializers.BooleanField(help_text="Left out of labels, scores and agreement.")
    reasons = serializers.CharField(help_text="Why excluded (or why a rule is overridden).")
    qc_status = serializers.ChoiceField(
        choices=["excluded", "kept", "not judged"],
        help_text="Excluded; kept (judged by a rule with enough evidence, or re-included by "
        "hand); or not judged (no rule had the evidence it needs: never excluded by the rules).",
    )
    unjudged = serializers.CharField(
        help_text="The rules without enough evidence for this annotator, e.g. "
        '"gold accuracy: 2 of 5 gold trials".'
    )
    excluded_by_rules = serializers.BooleanField(help_text="The automatic rules' own verdict.")
    manual_decision = serializers.CharField(
        help_text="The researcher's decision in force: excluded, included, or empty."
    )
    manual_reason = serializers.CharField()
    decided_by = serializers.CharField(help_text="Username, or empty.")
    decided_at = IsoDateTimeField(allow_null=True)


class AnnotatorTableSerializer(OutputSerializer):
    """The study's quality-control table, one row per annotator with a checked answer or a
    decision by hand, by pseudonym."""

    study = serializers.SlugField(source="slug")
    as_of = IsoDateTimeField(help_text="When the votes behind the measures were read.")
    annotators = AnnotatorRowSerializer(many=True, source="rows")


class ExclusionInput(serializers.Serializer):
    excluded = serializers.BooleanField(help_text="true: exclude; false: re-include.")
    reason = serializers.CharField(
        max_length=REASON_MAX_CHARS, help_text="Why (required; kept and exported)."
    )


# --- study exports --------------------------------------------------------------------


class ExportInput(serializers.Serializer):
    format = serializers.ChoiceField(
        choices=JOB_FORMATS,
        help_text="csv, parquet or jsonl: every table in that format; bundle: the dataset "
        "bundle with every image and the Hugging Face layout (export_study --bundle "
        "--with-images).",
    )
    include_pilot = serializers.BooleanField(
        required=False,
        default=False,
        help_text="Add the researchers' preview answers (pilot data, counted nowhere) to "
        "the votes and sessions tables, marked; not with bundle.",
    )


class ExportStartedDetailSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    status = serializers.ChoiceField(choices=ExportJob.Status.choices)
    url = serializers.SerializerMethodField(help_text="Where to follow it: GET exports/{id}.")

    def get_url(self, job: ExportJob) -> str:
        return reverse("workspace-api:export-detail", args=[job.pk])


class ExportStartedSerializer(OutputSerializer):
    """The queued export job; follow it at its url."""

    export = ExportStartedDetailSerializer(source="*")


class ExportJobSerializer(OutputSerializer):
    """An export job: its progress (steps done of ``total``: the report, each table, the
    datasheet), then its ``download`` URL when done or its one-line ``error`` when failed
    (the other key is absent)."""

    id = serializers.UUIDField()
    study = serializers.SlugField(source="study.slug")
    format = serializers.ChoiceField(choices=JOB_FORMATS)
    include_pilot = serializers.BooleanField(help_text="With the pilot data, marked.")
    owner = serializers.CharField(source="owner.get_username", help_text="Who started it.")
    status = serializers.ChoiceField(choices=ExportJob.Status.choices)
    done = serializers.IntegerField()
    total = serializers.IntegerField()
    created_at = IsoDateTimeField()
    size_bytes = serializers.IntegerField(help_text="The zip's size once done.")
    download = serializers.CharField(
        required=False,
        help_text="Only when done and not expired (IQA_EXPORT_KEEP_DAYS): GET it for the zip.",
    )
    expired = serializers.SerializerMethodField(
        help_text="Done, and its zip removed IQA_EXPORT_KEEP_DAYS after: export again."
    )
    error = serializers.CharField(required=False, help_text="Only when failed.")

    @extend_schema_field(serializers.BooleanField())
    def get_expired(self, job: ExportJob) -> bool:
        return job.status == ExportJob.Status.DONE and not job.file

    def to_representation(self, job: ExportJob) -> dict:
        body = super().to_representation(job)
        if job.status == ExportJob.Status.DONE and not body["expired"]:
            body["download"] = reverse("workspace-api:export-download", args=[job.pk])
        if job.status != ExportJob.Status.FAILED:
            body.pop("error", None)
        return body
