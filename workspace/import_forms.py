"""The "New study" form: the study's settings and its source (a zip, or a server folder).

Types are parsed by the form; every bound and rule is ``annotation.study_settings``'s one
validator's, asked setting by setting so that each field shows its own error at once,
then as a whole (rules between settings, the slug free) by
``import_jobs.import_options_check``, which the job's start runs again.
"""

from django import forms
from django.conf import settings

from annotation.errors import InvalidSetting
from annotation.study_settings import Design, study_settings_validate
from core.errors import DomainError
from workspace.forms import readable
from workspace.import_jobs import import_options_check

# One line each on the form: what the design compares.
DESIGN_HELP = {
    Design.REF_VS_TEST: "Each test image against its scene's reference, both shown, sides at "
    "random (DiffIQA).",
    Design.PAIRWISE: "Every pair of images within a scene; the reference may be shown between "
    "them as context (SRIQA-Bench).",
    Design.NR_PAIRWISE: "A against B within a scene, no reference shown (no-reference quality).",
}

SETTING_FIELDS = (
    "slug", "design", "title", "votes_per_pair", "show_reference", "gold_rate",
    "instructions", "trials_per_session", "practice_trials", "completion_url", "sampling",
)  # fmt: skip
# Valid stand-ins for the required settings while one other setting is checked alone.
_STAND_INS = {"slug": "x", "design": Design.PAIRWISE}


class StudyNewForm(forms.Form):
    slug = forms.CharField(
        max_length=200,
        help_text="The study's name in URLs: lower-case letters, digits, '-' and '_'.",
    )
    title = forms.CharField(
        required=False,
        max_length=1000,
        help_text="For researchers only: annotators never see it (it may name the methods).",
    )
    design = forms.ChoiceField(choices=Design.choices, widget=forms.RadioSelect)
    votes_per_pair = forms.IntegerField(initial=3, help_text="Target votes per pair.")
    show_reference = forms.BooleanField(
        required=False, help_text="Pairwise design only: the reference between A and B."
    )
    sampling = forms.ChoiceField(
        required=False,
        choices=[
            ("uniform", "Uniform: every pair its votes"),
            ("active", "Active: votes where they tell most (pairwise designs)"),
        ],
        initial="uniform",
        help_text="Active sampling spends each scene's pairs x votes per pair votes on the "
        "comparisons with the highest expected information gain. Ref-vs-test studies stop "
        "a pair once its majority label is decided (change it on the dashboard).",
    )
    gold_rate = forms.FloatField(
        initial=0.0, help_text="Share of gold trials in a session (0 to below 1)."
    )
    trials_per_session = forms.IntegerField(
        initial=100, help_text="Quota per annotator session, gold trials included."
    )
    practice_trials = forms.IntegerField(
        initial=2, help_text="Uncounted trials at the start of a session."
    )
    instructions = forms.CharField(
        required=False,
        max_length=20_000,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Shown to annotators before the first trial.",
    )
    completion_url = forms.CharField(
        label="Completion URL",
        required=False,
        max_length=1000,
        help_text="Optional: where annotators go when done (e.g. Prolific's completion URL).",
    )
    file = forms.FileField(required=False)
    server_folder = forms.CharField(required=False, max_length=500)

    def __init__(self, *args, user, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.server_folders = user.is_staff and settings.IQA_IMPORT_ROOT is not None
        if not self.server_folders:
            del self.fields["server_folder"]

    def design_choices(self) -> list[tuple[str, str, str]]:
        return [(value, label, DESIGN_HELP[value]) for value, label in Design.choices]

    def clean(self) -> dict:
        data = super().clean()
        values = {name: data[name] for name in SETTING_FIELDS if data.get(name) not in (None, "")}
        for name in SETTING_FIELDS:
            if name in values and name not in self.errors:
                try:
                    study_settings_validate({**_STAND_INS, name: values[name]}, partial=False)
                except InvalidSetting as exc:
                    self.add_error(name, readable(str(exc), name, self[name].label))
        if not self.errors:
            try:
                import_options_check(slug=values["slug"], options=self.options())
            except DomainError as exc:
                self.add_error(exc.field if exc.field in self.fields else None, str(exc))
        has_file = bool(data.get("file"))
        has_folder = bool(data.get("server_folder"))
        if has_file == has_folder:
            if self.server_folders:
                why = "Choose the study's .zip file, or a folder on the server (not both)."
            else:
                why = "Choose the study's .zip file."
            self.add_error("file" if not has_folder else None, why)
        return data

    def options(self) -> dict:
        """The import options (``import_study``'s names) the form was given."""
        data = self.cleaned_data
        return {
            name: data[name]
            for name in SETTING_FIELDS
            if name != "slug" and data.get(name) not in (None, "")
        }


class ScenesAddForm(forms.Form):
    """Scenes added to an existing study: a zip in the new study's layout, nothing else
    (the study's design and settings apply)."""

    file = forms.FileField(required=False)
    reference_name = forms.CharField(
        required=False,
        max_length=100,
        help_text="The file name (without extension) of each scene's reference; "
        "reference unless your zip names it otherwise.",
    )

    def clean(self) -> dict:
        data = super().clean()
        if not data.get("file"):
            self.add_error("file", "Choose the .zip file of the new scenes.")
        return data
