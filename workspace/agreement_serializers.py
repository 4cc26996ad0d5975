"""Output serializers of the live agreement report (each is its operation's schema): the
same structure as ``agreement_report --json`` for one study, plus what the page draws and
the snapshot's freshness."""

from rest_framework import serializers

from analysis.models import AgreementSnapshot
from annotation.models import Design
from annotation.serializers import IsoDateTimeField, OutputSerializer


def _float(**kw) -> serializers.FloatField:
    return serializers.FloatField(allow_null=True, **kw)


class AgreementSettingsSerializer(serializers.Serializer):
    rules = serializers.DictField(help_text="The quality-control rules applied.")
    metric_deltas = serializers.DictField(child=serializers.FloatField())
    bootstrap_samples = serializers.IntegerField()
    seed = serializers.IntegerField()


class AgreementExclusionSerializer(serializers.Serializer):
    annotator = serializers.CharField()
    reasons = serializers.CharField()


class AgreementDecisionSerializer(serializers.Serializer):
    annotator = serializers.CharField()
    manual_decision = serializers.CharField()
    manual_reason = serializers.CharField()
    decided_by = serializers.CharField(allow_null=True)
    decided_at = serializers.CharField(allow_null=True)
    excluded_by_rules = serializers.BooleanField()
    reasons = serializers.CharField()


class AgreementRowSerializer(serializers.Serializer):
    """One metric on one subset of pairs at one tie band ``delta`` (0, or the metric's
    own); null where no pair counts."""

    metric = serializers.CharField()
    subset = serializers.CharField()
    delta = serializers.FloatField()
    n_pairs = serializers.IntegerField()
    accuracy = _float()
    ci_low = _float()
    ci_high = _float()
    n_2afc = serializers.IntegerField()
    accuracy_2afc = _float()
    ci_2afc_low = _float()
    ci_2afc_high = _float()
    n_scenes = serializers.IntegerField()
    srcc = _float()
    srcc_ci_low = _float()
    srcc_ci_high = _float()
    krcc = _float()
    plcc = _float()
    few_pairs = serializers.BooleanField(
        required=False, help_text="Fewer pairs than ``min_pairs``: a wide interval."
    )


class AgreementComparisonSerializer(serializers.Serializer):
    """A paired bootstrap test of two metrics' accuracy on the same pairs (``metric_a``
    ranked above ``metric_b``)."""

    metric_a = serializers.CharField()
    metric_b = serializers.CharField()
    n_pairs = serializers.IntegerField(allow_null=True)
    accuracy_a = _float()
    accuracy_b = _float()
    difference = _float()
    ci_low = _float()
    ci_high = _float()
    p_value = _float()
    few_pairs = serializers.BooleanField(required=False)


class AgreementImageSerializer(serializers.Serializer):
    """A compared image: its human scores (Thurstone, Bradley-Terry) and metric scores."""

    scene = serializers.CharField()
    image = serializers.CharField()
    condition = serializers.CharField()
    n_votes = serializers.IntegerField()
    thurstone = _float()
    bradley_terry = _float()
    scores = serializers.DictField(child=serializers.FloatField())


class VotesPerPairSerializer(serializers.Serializer):
    votes = serializers.IntegerField()
    pairs = serializers.IntegerField()


class DeltaCurvePointSerializer(serializers.Serializer):
    """A metric's 3-way accuracy (subset all) at tie band ``delta`` (in its units)."""

    delta = serializers.FloatField()
    accuracy = _float(help_text="Null where no pair counts.")
    n_pairs = serializers.IntegerField()


class FusionCoefficientSerializer(serializers.Serializer):
    metric = serializers.CharField()
    lower_better = serializers.BooleanField()
    weight = serializers.FloatField(help_text="Per standardised difference (the final fit).")
    share = serializers.FloatField(help_text="|weight| over the sum of |weights|.")
    scale = serializers.FloatField(help_text="The metric's standardisation (RMS difference).")
    fold_mean = serializers.FloatField()
    fold_sd = serializers.FloatField()
    fold_min = serializers.FloatField()
    fold_max = serializers.FloatField()
    same_sign = serializers.FloatField(help_text="Share of outer folds with the same sign.")


class FusionSerializer(serializers.Serializer):
    """The fusion metric's nested cross-validation (``agreement_report --fusion``):
    ``status`` "ok" with out-of-sample figures, or why there are none ("not enough
    labelled pairs", "fewer than two metrics with scores") in ``message``."""

    name = serializers.CharField()
    status = serializers.CharField()
    message = serializers.CharField()
    min_pairs = serializers.IntegerField()
    min_scenes = serializers.IntegerField()
    metrics = serializers.ListField(child=serializers.CharField())
    left_out = serializers.ListField(child=serializers.DictField())
    n_pairs = serializers.IntegerField()
    n_scenes = serializers.IntegerField()
    dropped_pairs = serializers.IntegerField()
    folds = serializers.IntegerField(required=False)
    inner_folds = serializers.IntegerField(required=False)
    c_grid = serializers.ListField(child=serializers.FloatField(), required=False)
    C = serializers.FloatField(required=False)
    fold_C = serializers.ListField(child=serializers.FloatField(), required=False)
    fold_deltas = serializers.ListField(child=serializers.FloatField(), required=False)
    rows = AgreementRowSerializer(many=True, required=False)
    band = serializers.DictField(required=False)
    best_single = serializers.DictField(required=False)
    single_accuracy = serializers.DictField(child=_float(), required=False)
    coefficients = FusionCoefficientSerializer(many=True, required=False)


class AgreementFreshnessSerializer(OutputSerializer):
    """How fresh the answer is: ``as_of`` (when its votes were read; null before the first
    computation) and ``votes`` (the non-practice votes it read); ``stale``: votes, scores,
    decisions or settings moved since; ``computing``: a refresh is queued or running."""

    study = serializers.CharField()
    variant = serializers.ChoiceField(choices=AgreementSnapshot.Variant.choices)
    as_of = IsoDateTimeField(allow_null=True)
    votes = serializers.IntegerField(allow_null=True)
    stale = serializers.BooleanField()
    computing = serializers.BooleanField()


class AgreementIntervalsSerializer(serializers.Serializer):
    as_of = serializers.CharField(help_text="When the votes the intervals rest on were read.")
    votes = serializers.IntegerField(help_text="The non-practice votes they rest on.")


class AgreementLiveSerializer(serializers.Serializer):
    exact = serializers.BooleanField(
        help_text="True: computed exactly as ``agreement_report`` (the data stopped "
        "moving); false: the live, incremental report (point estimates of every vote read, "
        "intervals possibly older)."
    )
    refitted_scenes = serializers.IntegerField(
        required=False, help_text="Scenes refitted by this live refresh (counts moved)."
    )
    intervals = AgreementIntervalsSerializer(allow_null=True)
    fusion = serializers.DictField(
        required=False,
        help_text="When the live refresh last computed the fusion row (``as_of``) and in "
        "how many ``seconds``: it is recomputed with the intervals, at most once per ten "
        "times that.",
    )


class AgreementSnapshotSerializer(AgreementFreshnessSerializer):
    """The latest snapshot: ``agreement_report --json``'s object for the study, then the
    page's data (scenes, metric kinds, votes per pair, accuracy against delta) and its
    freshness. The per-image scores are per scene: ``AgreementSceneImagesSerializer``."""

    design = serializers.ChoiceField(choices=Design.choices)
    settings = AgreementSettingsSerializer()
    counts = serializers.DictField(child=serializers.IntegerField())
    metric_versions = serializers.DictField(child=serializers.CharField())
    exclusions = AgreementExclusionSerializer(many=True)
    manual_decisions = AgreementDecisionSerializer(many=True)
    min_pairs = serializers.IntegerField(required=False)
    agreement = AgreementRowSerializer(many=True)
    comparisons = AgreementComparisonSerializer(many=True)
    delta_calibration = serializers.ListField(
        child=serializers.DictField(),
        required=False,
        help_text="As ``agreement_report --calibrate-delta`` (empty here: not calibrated).",
    )
    delta_curves = serializers.DictField(
        child=serializers.ListField(child=serializers.DictField()), required=False
    )
    scenes = serializers.ListField(
        child=serializers.CharField(),
        required=False,
        help_text="The scenes with compared images, sorted: their images' human and metric "
        "scores are read per scene from ``agreement/images?scene=NAME``.",
    )
    metric_kinds = serializers.DictField(child=serializers.CharField())
    votes_per_pair = VotesPerPairSerializer(many=True)
    tie_band_curves = serializers.DictField(
        child=DeltaCurvePointSerializer(many=True),
        required=False,
        help_text="Per metric, its accuracy (3-way, subset all) against the tie band delta, "
        "by increasing delta: at 0, at 48 quantiles of its absolute score differences on "
        "the labelled pairs, and at its hand-set delta (the delta preview reads it).",
    )
    fusion = FusionSerializer(
        required=False,
        help_text="The fusion metric, cross-validated (redrawn with the intervals).",
    )
    computed_at = IsoDateTimeField()
    computed_in_s = serializers.FloatField(help_text="Seconds the computation took.")
    live = AgreementLiveSerializer(
        required=False, help_text="How the snapshot was computed, and its intervals' age."
    )


class AgreementSceneImagesSerializer(OutputSerializer):
    """One scene's compared images in the latest snapshot (the scatter's data);
    ``updated_at``: when a refresh last changed this scene's block."""

    study = serializers.CharField()
    variant = serializers.ChoiceField(choices=AgreementSnapshot.Variant.choices)
    scene = serializers.CharField()
    updated_at = IsoDateTimeField()
    images = AgreementImageSerializer(many=True)
