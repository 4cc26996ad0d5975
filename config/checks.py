"""System checks of the services the settings name (``manage.py check`` runs them, as
does every command that runs the checks); registered when the annotation app is ready."""

from django.core import checks

from config.storage import describe, uses_object_storage


@checks.register("storage")
def check_storage(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """With a bucket configured, that it answers: one HEAD request to the bucket. It then
    warns that the platform's files do not go there yet (only the check uses it)."""
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
    return [
        checks.Warning(
            f"IQA_STORAGE_URL names {describe()}, but the image store, uploads and exports "
            "are still written under MEDIA_ROOT and IQA_DATA_DIR: object storage is not "
            "complete yet (the bucket is only checked)",
            hint="leave IQA_STORAGE_URL unset until the release notes say the files move",
            id="iqa.W002",
        )
    ]
