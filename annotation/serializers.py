"""What the annotation API reads and writes: input serializers validate request bodies;
output serializers render every response body and are, unchanged, its OpenAPI schema
(``extend_schema(responses=...)`` names the class the view renders with), so the schema
cannot drift from the bodies.

The output serializers render the objects services and selectors return (the
``IssuedTrial``/``VoteResult`` dataclasses, sessions, studies from ``study_progress()``);
they read attributes only and run no queries.
"""

import functools
import logging

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema_field
from rest_framework import serializers

from annotation import services
from annotation.models import AnnotatorSession, Study, Vote
from annotation.presenters import image_url
from annotation.services.sessions import SOURCES, session_code_earned
from annotation.study_settings import web_url_allowed

logger = logging.getLogger(__name__)

# --- errors -------------------------------------------------------------------------


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="Stable machine-readable code, e.g. `not_found`.")
    message = serializers.CharField(help_text="One line for people.")
    field = serializers.CharField(
        allow_null=True, help_text="The request field at fault (dotted for nested ones)."
    )
    fields = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text="Validation errors only: every field at fault with its messages.",
    )


# The body config.api.error_body builds (config sits below the apps, so it cannot render
# with this class); tests/annotation/test_api_schema.py checks real error bodies against it.
class ErrorSerializer(serializers.Serializer):
    """The one error body of every 4xx response and of the 503 a service raises (an
    unexpected 500 is the server's own page)."""

    error = ErrorDetailSerializer()


# --- annotator: input ---------------------------------------------------------------


class ClientInfoInput(serializers.Serializer):
    device_pixel_ratio = serializers.FloatField(min_value=0.1, max_value=16, required=False)
    viewport_width = serializers.IntegerField(min_value=1, max_value=100_000, required=False)
    viewport_height = serializers.IntegerField(min_value=1, max_value=100_000, required=False)
    screen_width = serializers.IntegerField(min_value=1, max_value=100_000, required=False)
    screen_height = serializers.IntegerField(min_value=1, max_value=100_000, required=False)


class SessionOpenInput(serializers.Serializer):
    participant_id = serializers.CharField(max_length=128, required=False, allow_blank=True)
    source = serializers.ChoiceField(
        choices=SOURCES,
        required=False,
        allow_blank=True,
        help_text="The recruiter the participant id comes from, or empty.",
    )
    external_ids = serializers.DictField(
        child=serializers.CharField(max_length=200, allow_blank=True), required=False
    )
    client = ClientInfoInput(required=False)

    def validate_external_ids(self, value: dict) -> dict:
        if len(value) > 16 or any(len(key) > 64 for key in value):
            raise serializers.ValidationError("at most 16 ids, names of at most 64 characters")
        return value


class VoteInput(serializers.Serializer):
    trial_id = serializers.UUIDField()
    choice = serializers.ChoiceField(choices=Vote.Choice.values)
    response_ms = serializers.IntegerField(min_value=0, max_value=24 * 3600 * 1000)
    client = ClientInfoInput(required=False)


# --- annotator: output --------------------------------------------------------------


class OutputSerializer(serializers.Serializer):
    """A response body: ``XSerializer.render(obj)`` renders ``obj``.

    DRF builds a serializer's fields anew for each instance (a deep copy of every declared
    field, nested serializers' too): about 0.4 ms for a trial with its ``next``, against
    0.05 ms to render it, on the hottest request of the API. ``render`` goes through one
    instance per class, built once; ``to_representation`` keeps no state on it, so
    threads can share it.
    """

    @classmethod
    def render(cls, instance) -> dict:
        return _shared_instance(cls).to_representation(instance)


@functools.cache
def _shared_instance(serializer_class: type[OutputSerializer]) -> OutputSerializer:
    return serializer_class()


class IsoDateTimeField(serializers.DateTimeField):
    """A timestamp exactly as ``datetime.isoformat()`` writes it (``+00:00``; DRF's own
    field would write ``Z``): the body clients have always been sent."""

    def to_representation(self, value) -> str:
        return value.isoformat()


@extend_schema_field(OpenApiTypes.STR)
class ImageUrlField(serializers.Field):
    """A shown image (with ``.file`` and ``.display_file``) as the URL it is served at."""

    def to_representation(self, value) -> str:
        return image_url(value)


class ProgressSerializer(OutputSerializer):
    done = serializers.IntegerField()
    total = serializers.IntegerField()


class ImageSizeSerializer(serializers.Serializer):
    width = serializers.IntegerField()
    height = serializers.IntegerField()


class TrialImagesSerializer(serializers.Serializer):
    left = ImageUrlField()
    right = ImageUrlField()
    reference = ImageUrlField(allow_null=True, help_text="Null when no reference is shown.")


class TrialSizesSerializer(serializers.Serializer):
    """Pixel sizes, so a page can lay the images out before they load."""

    left = ImageSizeSerializer()
    right = ImageSizeSerializer()
    reference = ImageSizeSerializer(allow_null=True)


# Renders services' IssuedTrial. Which image is which, and whether the trial is gold, is
# deliberately absent: annotators must not be able to read labels.
class QueuedTrialSerializer(OutputSerializer):
    """A trial issued to the session: the images to compare and the progress so far."""

    trial_id = serializers.UUIDField()
    practice = serializers.BooleanField()
    images = TrialImagesSerializer(source="*")
    sizes = TrialSizesSerializer(source="*")
    lease_expires_at = IsoDateTimeField(
        help_text="The trial is held for this session until then; answered later, the "
        "vote still counts but is marked late."
    )
    progress = ProgressSerializer()


class TrialSerializer(QueuedTrialSerializer):
    """The open trial; with `ahead=1` also the one issued after it, as `next`."""

    next = QueuedTrialSerializer(
        required=False,
        help_text="Only with `ahead=1`, and only when the quota leaves room for another "
        "trial: the trial after this one (the key is then absent, never null).",
    )

    def to_representation(self, trial) -> dict:
        body = super().to_representation(trial)
        if trial.next is None:
            del body["next"]
        return body


class SessionSerializer(OutputSerializer):
    """An annotator session with the study settings the page needs."""

    token = serializers.CharField()
    study = serializers.CharField(source="study.slug")
    design = serializers.ChoiceField(source="study.design", choices=Study.design.field.choices)
    show_reference = serializers.BooleanField(source="study.show_reference")
    instructions = serializers.CharField(source="study.instructions")
    practice_trials = serializers.IntegerField(source="study.practice_trials")
    break_every = serializers.IntegerField(source="study.break_every")
    completed = serializers.SerializerMethodField()
    outcome = serializers.ChoiceField(
        choices=AnnotatorSession.Outcome.choices,
        allow_null=True,
        help_text="Why the session completed (null until then): `quota`, `full` (no work "
        "was left for it) or `closed`.",
    )
    completion_code = serializers.SerializerMethodField(
        help_text="Null until the session is completed with the counted trials the study "
        "asks for (a session that found the study full or closed before then gets none)."
    )
    completion_url = serializers.SerializerMethodField(
        help_text="Null unless there is a completion code, and when the study has none."
    )
    progress = serializers.SerializerMethodField()

    def to_representation(self, session) -> dict:
        body = super().to_representation(session)
        body["outcome"] = session.outcome or None
        return body

    def get_completed(self, session: AnnotatorSession) -> bool:
        return session.completed_at is not None

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_completion_code(self, session: AnnotatorSession) -> str | None:
        earned = session_code_earned(session, session.study)
        return session.study.completion_code if earned else None

    @extend_schema_field(serializers.URLField(allow_null=True))
    def get_completion_url(self, session: AnnotatorSession) -> str | None:
        if not session_code_earned(session, session.study):
            return None
        url = session.study.completion_url
        if url and not web_url_allowed(url):
            # A row from before the rule (https; http only on localhost): never sent.
            logger.warning(
                "study %s: completion_url %r withheld (https only)", session.study.slug, url
            )
            return None
        return url or None

    @extend_schema_field(ProgressSerializer)
    def get_progress(self, session: AnnotatorSession) -> dict:
        return ProgressSerializer.render(services.session_progress(session, session.study))


# Renders services' VoteResult.
class VoteSerializer(OutputSerializer):
    """A stored vote: a retry gets the same one back."""

    vote_id = serializers.UUIDField()
    late = serializers.BooleanField(
        help_text="Answered after the trial's lease ran out (the vote still counts)."
    )
    choice = serializers.ChoiceField(choices=Vote.Choice.choices)
    too_fast = serializers.BooleanField(
        help_text="Answered sooner than the study's min_response_ms after the trial was "
        "issued (server clock): kept, but not counted."
    )
    completed = serializers.BooleanField(help_text="This vote completed the session.")
    progress = ProgressSerializer()


class VoteNextSerializer(VoteSerializer):
    """A stored vote and, with `next=1`, the session's next trial (one round trip per
    trial)."""

    next_trial = TrialSerializer(
        required=False,
        allow_null=True,
        help_text="Only with `next=1`: the session's open trial after this vote, as "
        "next-trial would answer (with `ahead=1` its `next` too), or null when nothing "
        "is left (next-trial's 204: the session is completed). The key is absent when "
        "no trial could be claimed at this instant or this address asked for trials too "
        "often: then ask next-trial, which says why and when to try again.",
    )

    def to_representation(self, result) -> dict:
        body = super().to_representation(result.vote)
        body.pop("next_trial", None)  # absent unless carried (null means nothing is left)
        if result.carried:
            trial = result.next_trial
            body["next_trial"] = None if trial is None else TrialSerializer.render(trial)
        return body


class PingSerializer(OutputSerializer):
    ok = serializers.BooleanField()


# --- researcher: output -------------------------------------------------------------


# Reads the n_* counts selectors.study_progress() annotates each study with.
class StudyCountsSerializer(serializers.Serializer):
    scenes = serializers.IntegerField(source="n_scenes")
    images = serializers.IntegerField(source="n_images")
    pairs = serializers.IntegerField(source="n_pairs", help_text="Gold pairs apart.")
    gold_pairs = serializers.IntegerField(source="n_gold_pairs")
    pairs_complete = serializers.IntegerField(
        source="n_pairs_complete", help_text="Pairs with all the counted votes they need."
    )
    votes = serializers.IntegerField(source="n_votes")
    counted_votes = serializers.IntegerField(source="n_counted_votes")
    sessions = serializers.IntegerField(source="n_sessions")
    sessions_completed = serializers.IntegerField(source="n_sessions_completed")


# Renders a study from selectors.study_progress().
class StudySummarySerializer(OutputSerializer):
    """A study's settings and progress, as researchers watch it."""

    slug = serializers.SlugField()
    title = serializers.CharField()
    design = serializers.ChoiceField(choices=Study.design.field.choices)
    status = serializers.ChoiceField(choices=Study.Status.choices)
    votes_per_pair = serializers.IntegerField()
    gold_rate = serializers.FloatField()
    trials_per_session = serializers.IntegerField()
    practice_trials = serializers.IntegerField()
    archived = serializers.SerializerMethodField(
        help_text="Archived: hidden from the study list, read-only until an owner restores it."
    )
    counts = StudyCountsSerializer(source="*")

    @extend_schema_field(serializers.BooleanField())
    def get_archived(self, study) -> bool:
        # A Study, or the dict of its keys (the researcher API's study detail).
        archived_at = study["archived_at"] if isinstance(study, dict) else study.archived_at
        return archived_at is not None


def valid(serializer_class: type[serializers.Serializer], data) -> dict:
    """``data`` validated by an input serializer (DRF's ``ValidationError``, a 400 in the
    one error format, otherwise)."""
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def error_responses(statuses: dict[int, str]) -> dict[int, OpenApiResponse]:
    """The error responses an operation returns, each with the one error body."""
    return {
        status: OpenApiResponse(ErrorSerializer, description=why)
        for status, why in statuses.items()
    }
