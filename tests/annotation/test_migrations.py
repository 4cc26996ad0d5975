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


@pytest.mark.django_db(transaction=True)
def test_members_before_roles_become_editors_and_keep_what_they_could_do():
    """Before roles, a member could do what the owner does bar nothing on the researcher
    pages they reached (settings, status, scoring, exports): migration 0013 makes each
    one an editor, so nobody loses a right they used; owners then narrow them."""
    executor = MigrationExecutor(connection)
    before = [("annotation", "0012_store_leftovers")]
    executor.migrate(before)
    executor.loader.build_graph()
    apps = executor.loader.project_state(before).apps
    User = apps.get_model("auth", "User")
    Study = apps.get_model("annotation", "Study")
    owner = User.objects.create(username="mig-owner")
    member = User.objects.create(username="mig-member")
    study = Study.objects.create(slug="mig-shared", design="ref-vs-test", owner=owner)
    study.members.add(member)
    try:
        executor = MigrationExecutor(connection)
        executor.migrate([("annotation", "0013_roles_archive_pilot")])
        apps = executor.loader.project_state([("annotation", "0013_roles_archive_pilot")]).apps
        StudyMember = apps.get_model("annotation", "StudyMember")
        rows = list(
            StudyMember.objects.filter(study__slug="mig-shared").values_list(
                "user__username", "role"
            )
        )
        assert rows == [("mig-member", "editor")]
    finally:
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes())
        from django.contrib.auth import get_user_model

        from annotation.models import Study as CurrentStudy

        CurrentStudy.objects.filter(slug="mig-shared").delete()
        get_user_model().objects.filter(username__startswith="mig-").delete()
