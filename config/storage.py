"""Where the platform's files live: the file system (``MEDIA_ROOT``, the default of
``make run``) or an S3-compatible bucket (AWS S3, Cloudflare R2, Google Cloud Storage's
S3 interface, MinIO, SeaweedFS, Ceph), chosen by the environment:

- ``IQA_STORAGE_URL``: unset (or ``file://``) for the file system; ``s3://BUCKET`` or
  ``s3://BUCKET/PREFIX`` for a bucket, every key under ``PREFIX/``.
- ``IQA_S3_ENDPOINT_URL``: the S3 server (unset: AWS); ``IQA_S3_REGION`` (default
  ``us-east-1``; R2 takes ``auto``).
- ``IQA_S3_ACCESS_KEY_ID`` and ``IQA_S3_SECRET_ACCESS_KEY``; unset, boto3 finds them as
  it does (``AWS_ACCESS_KEY_ID``, a profile, an instance role).
- ``IQA_S3_ADDRESSING_STYLE``: ``path`` (``ENDPOINT/BUCKET/KEY``) or ``virtual``
  (``BUCKET.ENDPOINT/KEY``); by default ``path`` with an endpoint (a lab's own server
  seldom has a name per bucket) and boto3's choice without one.

Django's ``STORAGES["default"]`` is built from them (django-storages' S3 backend on
boto3); ``config.checks.check_storage`` (``manage.py check``, and every command that
runs the checks) says when the bucket cannot be reached, naming it and the endpoint.
"""

from collections.abc import Mapping
from urllib.parse import urlsplit

FILE_SYSTEM = "django.core.files.storage.FileSystemStorage"
S3 = "storages.backends.s3.S3Storage"
ADDRESSING_STYLES = ("path", "virtual")
# A request to the bucket gives up after these many seconds, so that a page or a worker
# that needs an object it cannot get says so instead of hanging.
CONNECT_TIMEOUT = 5
READ_TIMEOUT = 30


class StorageUrlError(ValueError):
    """The storage variables do not name a storage the platform can use."""


def default_storage_from_env(environ: Mapping[str, str]) -> dict:
    """``STORAGES["default"]`` for the environment's storage variables."""
    url = environ.get("IQA_STORAGE_URL", "").strip()
    if url in ("", "file://"):
        return {"BACKEND": FILE_SYSTEM}
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc or parts.query or parts.fragment:
        raise StorageUrlError(
            f"IQA_STORAGE_URL={url!r} is not understood: give s3://BUCKET or "
            "s3://BUCKET/PREFIX for a bucket, or leave it unset for the file system"
        )
    endpoint = environ.get("IQA_S3_ENDPOINT_URL", "").strip() or None
    style = environ.get("IQA_S3_ADDRESSING_STYLE", "").strip() or ("path" if endpoint else None)
    if style is not None and style not in ADDRESSING_STYLES:
        raise StorageUrlError(
            f"IQA_S3_ADDRESSING_STYLE={style!r} is not one of {', '.join(ADDRESSING_STYLES)}"
        )
    options = {
        "bucket_name": parts.netloc,
        "location": parts.path.strip("/"),
        "endpoint_url": endpoint,
        "region_name": environ.get("IQA_S3_REGION", "").strip() or "us-east-1",
        "access_key": environ.get("IQA_S3_ACCESS_KEY_ID") or None,
        "secret_key": environ.get("IQA_S3_SECRET_ACCESS_KEY") or None,
        "addressing_style": style,
        "signature_version": "s3v4",
        # Objects are private; the browser gets presigned URLs.
        "default_acl": None,
        "querystring_auth": True,
        # Keys are content addresses: writing one again writes the same bytes.
        "file_overwrite": True,
        "client_config": _client_config(),
    }
    return {"BACKEND": S3, "OPTIONS": options}


def _client_config():
    from botocore.config import Config

    return Config(
        connect_timeout=CONNECT_TIMEOUT,
        read_timeout=READ_TIMEOUT,
        retries={"max_attempts": 2, "mode": "standard"},
    )


def uses_object_storage() -> bool:
    from django.conf import settings

    return settings.STORAGES["default"]["BACKEND"] == S3


def describe() -> str:
    """The bucket and endpoint, as messages name them: ``s3://BUCKET/PREFIX at ENDPOINT``."""
    from django.conf import settings

    options = settings.STORAGES["default"].get("OPTIONS", {})
    where = f"s3://{options['bucket_name']}"
    if options.get("location"):
        where += f"/{options['location']}"
    return f"{where} at {options.get('endpoint_url') or 'AWS S3'}"
