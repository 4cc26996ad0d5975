"""Shared by migrations that add check constraints to existing tables (not a migration:
Django skips modules whose names start with an underscore)."""

from django.db import migrations


def refuse_rows_outside(model_name: str, operations: list) -> migrations.RunPython:
    """A first step for a migration whose ``operations`` add check constraints on
    ``model_name`` (a model with a ``slug``): when existing rows break one (a value stored before the bound existed,
    through the admin say), stop with the rows and the rule named, before any change, so
    the operator corrects them (``manage.py configure_study``) rather than finding them
    clamped."""

    def check(apps, schema_editor) -> None:
        model = apps.get_model("annotation", model_name)
        problems = []
        for operation in operations:
            if isinstance(operation, migrations.AddConstraint) and hasattr(
                operation.constraint, "condition"
            ):
                constraint = operation.constraint
                # Historical models have no __str__: name the rows by their slug.
                bad = model.objects.exclude(constraint.condition).order_by("pk")
                names = [str(name) for name in bad.values_list("slug", flat=True)[:20]]
                if names:
                    problems.append(f"{constraint.name}: {', '.join(names)}")
        if problems:
            raise RuntimeError(
                f"existing {model_name} rows break the new bounds; correct them first "
                f"(manage.py configure_study SLUG ...): {'; '.join(problems)}"
            )

    return migrations.RunPython(check, migrations.RunPython.noop)
