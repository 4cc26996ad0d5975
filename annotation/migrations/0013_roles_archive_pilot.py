"""Issue 25: members get roles (a ``StudyMember`` row each: the existing members become
editors, who may do what they did before except manage members, archive and delete);
studies can be archived; pilot sessions (a researcher's preview)."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def members_become_editors(apps, schema_editor):
    Study = apps.get_model("annotation", "Study")
    StudyMember = apps.get_model("annotation", "StudyMember")
    through = Study.members.through
    StudyMember.objects.bulk_create(
        [
            StudyMember(study_id=row.study_id, user_id=row.user_id, role="editor")
            for row in through.objects.all()
        ]
    )


def editors_become_members(apps, schema_editor):
    """Back to members without roles, who could change a study: editors and owners only
    (a viewer would otherwise gain rights on the way back)."""
    Study = apps.get_model("annotation", "Study")
    StudyMember = apps.get_model("annotation", "StudyMember")
    through = Study.members.through
    changers = StudyMember.objects.filter(role__in=["editor", "owner"])
    through.objects.bulk_create(
        [through(study_id=m.study_id, user_id=m.user_id) for m in changers]
    )


class Migration(migrations.Migration):
    dependencies = [
        ("annotation", "0012_store_leftovers"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="StudyMember",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("role", models.CharField(choices=[("viewer", "Viewer: read and download"), ("editor", "Editor: settings, scoring, exports, exclusions, pilot data"), ("owner", "Owner: members, archive, delete")], default="viewer", max_length=8)),
                ("added_at", models.DateTimeField(auto_now_add=True)),
                ("study", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="memberships", to="annotation.study")),
                ("user", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="study_memberships", to=settings.AUTH_USER_MODEL)),
            ],
            options={
                "ordering": ["study", "user__username"],
                "constraints": [
                    models.UniqueConstraint(fields=("study", "user"), name="member_once_per_study"),
                    models.CheckConstraint(condition=models.Q(("role__in", ["viewer", "editor", "owner"])), name="member_role_known"),
                ],
            },
        ),
        migrations.RunPython(members_become_editors, editors_become_members),
        migrations.RemoveField(model_name="study", name="members"),
        migrations.AddField(
            model_name="study",
            name="members",
            field=models.ManyToManyField(blank=True, related_name="member_studies", through="annotation.StudyMember", to=settings.AUTH_USER_MODEL),
        ),
        migrations.AddField(
            model_name="study",
            name="archived_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="annotatorsession",
            name="pilot",
            field=models.BooleanField(db_default=False, default=False),
        ),
        migrations.AddField(
            model_name="vote",
            name="pilot",
            field=models.BooleanField(db_default=False, default=False),
        ),
        migrations.AddField(
            model_name="annotatorsession",
            name="piloted_by",
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name="+", to=settings.AUTH_USER_MODEL),
        ),
    ]
