"""API tokens move from DRF's table (keys in clear) to django-rest-knox's (digests): each
existing key is stored as its digest, so scripts using it keep working, and the clear
table is dropped."""

import hashlib

from django.db import migrations


def keys_to_digests(apps, schema_editor):
    connection = schema_editor.connection
    if "authtoken_token" not in connection.introspection.table_names():
        return
    AuthToken = apps.get_model("knox", "AuthToken")
    with connection.cursor() as cursor:
        cursor.execute("SELECT key, user_id, created FROM authtoken_token")
        rows = cursor.fetchall()
    for key, user_id, created in rows:
        digest = hashlib.sha512(key.encode("utf-8")).hexdigest()
        AuthToken.objects.bulk_create(
            [AuthToken(digest=digest, token_key=key[:15], user_id=user_id, expiry=None)]
        )
        AuthToken.objects.filter(pk=digest).update(created=created)
    schema_editor.execute("DROP TABLE authtoken_token")


class Migration(migrations.Migration):
    dependencies = [
        ("workspace", "0002_job_attempts"),
        ("knox", "0009_extend_authtoken_field"),
    ]

    operations = [migrations.RunPython(keys_to_digests, migrations.RunPython.noop)]
