"""Number formats of the study dashboard (the same as its script's)."""

from datetime import UTC, datetime

from django import template

register = template.Library()

LABELS = {
    "qc_min_gold_accuracy": "Min. gold accuracy",
    "qc_min_median_response_ms": "Min. median response (ms)",
    "qc_side_bias_alpha": "Side bias alpha",
    "qc_min_majority_agreement": "Min. majority agreement",
    "qc_max_similar_share": "Max. similar share",
    "qc_fast_response_ms": "Too fast below (ms)",
    "qc_test": "How rules judge",
    "qc_correction": "Multiple-testing correction",
    "qc_alpha": "Study-level error rate",
    "qc_min_answers": "Min. answers to judge",
    "qc_min_gold": "Min. gold trials to judge",
    "completion_url": "Completion URL",
    "metric_deltas": "Metric deltas",
    "hold_seconds": "Held without an answer (s)",
    "min_response_ms": "Answers count from (ms)",
    "min_counted_trials": "Counted trials for the code",
    "lease_seconds": "Lease (s)",
}


@register.filter
def num(value) -> str:
    return "-" if value is None else f"{value:,}"


@register.filter
def seconds(milliseconds) -> str:
    return "-" if milliseconds is None else f"{milliseconds / 1000:.1f} s"


@register.filter
def eta(hours) -> str:
    if hours is None:
        return "no votes in the window"
    if hours == 0:
        return "done"
    if hours < 1:
        return f"{max(1, round(hours * 60))} min"
    return f"{hours:.1f} h" if hours < 48 else f"{hours / 24:.1f} days"


@register.filter
def utc_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%H:%M:%S UTC")


@register.filter
def utc_datetime(moment: datetime) -> str:
    """The moment's date and time in UTC: what a page shows before ``localtime.js``
    rewrites it in the viewer's own time zone."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


@register.filter
def credited_percent(row: dict) -> str:
    target = row.get("target_votes") or 0
    share = min(100.0, 100.0 * row.get("credited", 0) / target) if target else 0.0
    return f"{share:.1f}"


@register.filter
def setting_label(name: str) -> str:
    return LABELS.get(name, name.replace("_", " ").capitalize())


@register.filter
def invalid(field, auto_id: str) -> str:
    """The field's widget marked invalid and described by its error message."""
    return field.as_widget(attrs={"aria-invalid": "true", "aria-describedby": f"{auto_id}_error"})
