"""The researchers' forms. They only carry what was typed: the bounds are
``annotation.study_settings``'s, checked by the service the view calls."""

from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.forms import PasswordResetForm

from annotation.study_settings import (
    CHANGEABLE_SETTINGS,
    OFF,
    QC_SETTINGS,
    SETTINGS,
    Setting,
)

TEXTAREAS = {"instructions": 4, "consent": 4, "metric_deltas": 3}


def readable(message: str, name: str, label: str | None) -> str:
    """A setting's message for a page: its label where the message names the setting
    ("votes_per_pair must be at most 1000" -> "Votes per pair must be at most 1000")."""
    label = label or name.replace("_", " ").capitalize()
    if message.startswith(name):
        return label + message[len(name) :]
    return message.replace(name, label.lower())


def _field(setting: Setting) -> forms.Field:
    """A setting as a form field: a checkbox for a flag, else text as typed."""
    if setting.kind is bool:
        return forms.BooleanField(required=False, help_text=setting.description)
    attrs = {"placeholder": "psnr=0.5"} if setting.name == "metric_deltas" else {}
    widget = (
        forms.Textarea(attrs={"rows": TEXTAREAS[setting.name], **attrs})
        if setting.name in TEXTAREAS
        else None
    )
    return forms.CharField(
        required=False, strip=False, help_text=setting.description, widget=widget
    )


class ResearcherPasswordResetForm(PasswordResetForm):
    """Django's reset form, also for accounts without a usable password yet (a researcher
    invited by ``create_researcher --invite`` whose link lapsed): every researcher logs in
    with a password, so an account without one is waiting for it, not barred from it."""

    def get_users(self, email):
        user_model = get_user_model()
        field = user_model.get_email_field_name()
        return user_model._default_manager.filter(
            **{f"{field}__iexact": email, "is_active": True}
        ).exclude(**{field: ""})


class StudySettingsForm(forms.Form):
    """The settings ``configure_study`` changes (the status has its own buttons): one field
    per changeable setting of ``annotation.study_settings``'s table, text as typed;
    ``changes()`` hands them to ``study_configure``, whose validator names the setting at
    fault."""

    GROUPS = (
        ("The study (researchers only)", ("title",)),
        ("Shown to annotators",
         ("instructions", "consent", "completion_url", "require_participant_id")),
        ("Sessions",
         ("trials_per_session", "practice_trials", "gold_rate", "lease_seconds", "break_every")),
        ("The public link",
         ("hold_seconds", "min_response_ms", "min_counted_trials")),
        ("How votes are spent", ("stop_when_decided", "sampling", "sampling_every")),
        ("Quality control (off: no rule)", QC_SETTINGS),
        ("Agreement", ("metric_deltas",)),
    )  # fmt: skip

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for name in CHANGEABLE_SETTINGS:
            self.fields[name] = _field(SETTINGS[name])

    @classmethod
    def for_study(cls, study) -> "StudySettingsForm":
        initial = {}
        for name in CHANGEABLE_SETTINGS:
            value = getattr(study, name)
            if name == "metric_deltas":
                value = "\n".join(f"{metric}={delta:g}" for metric, delta in (value or {}).items())
            elif value is None:
                value = OFF
            elif isinstance(value, float):
                value = f"{value:g}"
            initial[name] = value
        return cls(initial=initial)

    def clean_metric_deltas(self) -> dict[str, object]:
        """``METRIC=DELTA`` per line (or comma separated): the map configure_study's
        ``--metric-delta`` builds; whether the numbers are in bounds is the validator's."""
        deltas: dict[str, object] = {}
        text = self.cleaned_data["metric_deltas"]
        for item in text.replace(",", "\n").splitlines():
            if not item.strip():
                continue
            name, sep, value = item.partition("=")
            try:
                if not sep or not name.strip():
                    raise ValueError
                deltas[name.strip()] = float(value)
            except ValueError:
                raise forms.ValidationError(
                    f"{item.strip()!r}: expected METRIC=NUMBER, one per line"
                ) from None
        return deltas

    def changes(self) -> dict[str, object]:
        """The typed values as ``study_configure`` takes them: an empty quality-control
        threshold is off."""
        changes = dict(self.cleaned_data)
        for name, value in changes.items():
            if SETTINGS[name].nullable and isinstance(value, str) and not value.strip():
                changes[name] = OFF
        return changes

    def grouped(self):
        """(legend, bound fields) per fieldset, for the template."""
        return [(legend, [self[name] for name in names]) for legend, names in self.GROUPS]
