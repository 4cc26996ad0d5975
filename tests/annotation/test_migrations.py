"""Migrations that add bounds to existing rows refuse rows outside them, by name."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor


@pytest.mark.django_db(transaction=True)
def test_a_study_stored_outside_the_new_bounds_stops_the_migration_with_its_slug():
    """A lease of 5 s, stored before the 10 s bound existed (the old admin had no
    validator), stops migration 0005 before any change, naming the study and the rule;
    once corrected, the migration goes through."""
    executor = MigrationExecutor(connection)
    before = [("annotation", "0004_quality_control")]
    executor.migrate(before)
    executor.loader.build_graph()
    Study = executor.loader.project_state(before).apps.get_model("annotation", "Study")
    Study.objects.create(slug="old-pilot", design="ref-vs-test", lease_seconds=5)
    try:
        after = [("annotation", "0005_study_settings_bounds")]
        with pytest.raises(RuntimeError, match=r"study_lease_seconds_valid: old-pilot"):
            executor.migrate(after)
        Study.objects.filter(slug="old-pilot").update(lease_seconds=600)
        executor = MigrationExecutor(connection)
        executor.migrate(after)
    finally:
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes())
        Study.objects.filter(slug="old-pilot").delete()
