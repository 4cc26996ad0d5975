"""``python manage.py fusion_train SLUG [SLUG ...] --out FILE.json [--name NAME]``: the
fusion metric trained on studies' labels, written as a plug-in metric file."""

import json
import os
import tempfile
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from analysis.render import fusion_lines, json_ready
from analysis.services import SAMPLES, SEED, fusion_model_train
from core.errors import DomainError
from scoring.fusion import NAME, model_check
from scoring.selectors import studies_select


class Command(BaseCommand):
    help = (
        "Train the fusion metric (an L2 logistic regression on the metrics' standardised "
        "differences) on the studies' labelled pairs, judge it by nested cross-validation "
        "grouped by scene, and write it as a plug-in metric file: list the file's path in "
        "IQA_METRIC_PLUGINS and score new studies with it (score_study --metrics NAME)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "slugs", nargs="+", metavar="SLUG", help="Studies by exact slug, or a quoted glob."
        )
        parser.add_argument("--out", required=True, help="The model file to write (.json).")
        parser.add_argument(
            "--name",
            help="The metric's name (default fusion_ and the studies' slugs; at most 64 "
            "characters, letters, digits, _ . -).",
        )
        parser.add_argument(
            "--samples",
            type=int,
            default=SAMPLES,
            help=f"Bootstrap resamples (default {SAMPLES}).",
        )
        parser.add_argument("--seed", type=int, default=SEED, help=f"Seed (default {SEED}).")
        parser.add_argument("--json", action="store_true", help="Print the file's content.")

    def handle(self, *args: object, **options: object) -> None:
        out = Path(options["out"])
        if out.suffix.lower() != ".json":
            raise CommandError(f"--out {out}: the file name must end in .json (the plug-in "
                               "setting recognises a fusion model by it)")  # fmt: skip
        if options["samples"] < 1:
            raise CommandError("--samples must be at least 1")
        try:
            studies = studies_select(options["slugs"])
        except DomainError as exc:
            raise CommandError(str(exc)) from exc
        name = options["name"] or "fusion_" + "_".join(s.slug for s in studies)
        if not NAME.fullmatch(name):
            raise CommandError(f"--name {name!r}: 1 to 64 letters, digits, _ . or - (give "
                               "--name when the studies' slugs make it longer)")  # fmt: skip
        try:
            model = fusion_model_train(
                studies, name=name, samples=options["samples"], seed=options["seed"]
            )
        except DomainError as exc:
            raise CommandError(str(exc)) from exc
        text = json.dumps(json_ready(model), indent=2, allow_nan=False)
        try:  # what a worker will check when it reads the file
            model_check(json.loads(text), f"the model for {out}")
        except DomainError as exc:
            raise CommandError(str(exc)) from exc
        _write(out, text + "\n")
        if options["json"]:
            self.stdout.write(text)
            return
        training = model["training"]
        self.stdout.write(
            f"Wrote {out}: metric {name} ({model['kind']}), from {', '.join(training['studies'])}."
        )
        self.stdout.write(
            "\n".join(fusion_lines(training["evaluation"], samples=options["samples"])[1:])
        )
        if training["cross_study"]:
            self.stdout.write("\nTrained on X, judged on Y (accuracy at delta 0; the diagonal "
                              "cross-validated within the study):")  # fmt: skip
            for row in training["cross_study"]:
                self.stdout.write("  " + _cross_line(row))
        self.stdout.write(
            f"\nTo score studies with it: IQA_METRIC_PLUGINS={out.resolve()} for the workers "
            f"and commands, then `score_study SLUG --metrics {name}` (its components must be "
            "scored, with the versions the file names)."
        )


def _cross_line(row: dict) -> str:
    head = f"{row['trained_on']} -> {row['evaluated_on']}: "
    if row.get("status") != "ok":
        return head + str(row.get("status"))
    best = row["best_single"]
    return (
        head + f"{row['accuracy']:.3f} [{row['ci_low']:.2f},{row['ci_high']:.2f}] on "
        f"{row['n_pairs']} pairs; best single metric there {best['metric']} "
        f"{best['accuracy']:.3f} ({best['difference']:+.3f}, p={best['p_value']:.3g})"
    )


def _write(path: Path, text: str) -> None:
    """All or nothing: a temporary file beside it, renamed over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w") as stream:
            stream.write(text)
        # (mkstemp makes it 0600: the mode an ordinary file gets, so workers running as
        # another user can read it)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
