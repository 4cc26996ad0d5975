"""System checks of the services the settings name; registered when the annotation app
is ready. ``manage.py check`` (and every command that runs the checks) runs those that
make no request; ``check --deploy`` also reaches the bucket."""

from django.core import checks

from config.storage import describe, uses_object_storage


@checks.register("storage")
def check_storage_in_use(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """A bucket configured is not used yet: say so on every command (no request made)."""
    if not uses_object_storage():
        return []
    return [
        checks.Warning(
            f"IQA_STORAGE_URL names {describe()}, but the image store, uploads and exports "
            "are still written under MEDIA_ROOT and IQA_DATA_DIR: object storage is not "
            "complete yet (the bucket is only checked, by check --deploy)",
            hint="leave IQA_STORAGE_URL unset until the release notes say the files move",
            id="iqa.W002",
        )
    ]


@checks.register("storage", deploy=True)
def check_storage_reachable(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """With a bucket configured, that it answers a HEAD request (boto3 retries once).
    A deployment check (``check --deploy``): ``migrate`` and the other commands do not
    wait on the bucket."""
    if not uses_object_storage():
        return []
    from django.core.files.storage import default_storage

    try:
        default_storage.connection.meta.client.head_bucket(Bucket=default_storage.bucket_name)
    except Exception as exc:  # any failure is the message: the check names what failed
        return [
            checks.Error(
                f"the object storage {describe()} cannot be reached: {type(exc).__name__}: {exc}",
                hint="check IQA_STORAGE_URL, IQA_S3_ENDPOINT_URL and the credentials, and "
                "that the bucket exists",
                id="iqa.E001",
            )
        ]
    return []
