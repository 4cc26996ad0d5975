"""Where the platform's files live: the file system (``MEDIA_ROOT``, the default of
``make run``) or an S3-compatible bucket (AWS S3, Cloudflare R2, Google Cloud Storage's
S3 interface, MinIO, SeaweedFS, Ceph), chosen by the environment:

- ``IQA_STORAGE_URL``: unset (or ``file://``) for the file system; ``s3://BUCKET`` or
  ``s3://BUCKET/PREFIX`` for a bucket, every key under ``PREFIX/``.
- ``IQA_S3_ENDPOINT_URL``: the S3 server (unset: AWS); ``IQA_S3_REGION`` (default
  ``us-east-1``; R2 takes ``auto``).
- ``IQA_S3_ACCESS_KEY_ID`` and ``IQA_S3_SECRET_ACCESS_KEY``; unset, boto3 finds them as
  it does (``AWS_ACCESS_KEY_ID``, a profile, an instance role).
- ``IQA_S3_PROXY``: an HTTP proxy to the bucket (unset: none; the environment's
  ``HTTP_PROXY`` is not used).
- ``IQA_S3_ADDRESSING_STYLE``: ``path`` (``ENDPOINT/BUCKET/KEY``) or ``virtual``
  (``BUCKET.ENDPOINT/KEY``); by default ``path`` with an endpoint (a lab's own server
  seldom has a name per bucket) and boto3's choice without one.

Django's ``STORAGES["default"]`` is built from them (django-storages' S3 backend on
boto3); ``config.checks.check_storage_reachable`` (``manage.py check --deploy``) says
when the bucket cannot be reached, naming it and the endpoint.
"""

import re
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


BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")  # S3's rule


def default_storage_from_env(environ: Mapping[str, str]) -> dict:
    """``STORAGES["default"]`` for the environment's storage variables."""
    url = environ.get("IQA_STORAGE_URL", "").strip()
    if url in ("", "file://"):
        return {"BACKEND": FILE_SYSTEM}
    bucket, prefix = _bucket_and_prefix(url)
    endpoint = environ.get("IQA_S3_ENDPOINT_URL", "").strip() or None
    if endpoint is not None:
        parts = urlsplit(endpoint)
        if "@" in parts.netloc:
            raise StorageUrlError(
                "IQA_S3_ENDPOINT_URL carries credentials: give them in IQA_S3_ACCESS_KEY_ID "
                "and IQA_S3_SECRET_ACCESS_KEY"
            )
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise StorageUrlError(
                f"IQA_S3_ENDPOINT_URL={endpoint!r} is not an http:// or https:// address"
            )
    style = environ.get("IQA_S3_ADDRESSING_STYLE", "").strip() or ("path" if endpoint else None)
    if style is not None and style not in ADDRESSING_STYLES:
        raise StorageUrlError(
            f"IQA_S3_ADDRESSING_STYLE={style!r} is not one of {', '.join(ADDRESSING_STYLES)}"
        )
    access_key = environ.get("IQA_S3_ACCESS_KEY_ID") or None
    secret_key = environ.get("IQA_S3_SECRET_ACCESS_KEY") or None
    if (access_key is None) != (secret_key is None):
        raise StorageUrlError(
            "give both IQA_S3_ACCESS_KEY_ID and IQA_S3_SECRET_ACCESS_KEY, or neither "
            "(boto3 then finds credentials itself)"
        )
    options = {
        "bucket_name": bucket,
        "location": prefix,
        "endpoint_url": endpoint,
        "region_name": environ.get("IQA_S3_REGION", "").strip() or "us-east-1",
        "access_key": access_key,
        "secret_key": secret_key,
        "addressing_style": style,
        "signature_version": "s3v4",
        # Objects are private; the browser gets presigned URLs.
        "default_acl": None,
        "querystring_auth": True,
        # Keys are content addresses: writing one again writes the same bytes.
        "file_overwrite": True,
        "client_config": _client_config(environ.get("IQA_S3_PROXY", "").strip()),
    }
    return {"BACKEND": S3, "OPTIONS": options}


def _bucket_and_prefix(url: str) -> tuple[str, str]:
    """``s3://BUCKET/PREFIX``'s parts; an error names what is wrong, never echoing a
    secret given in the URL."""
    parts = urlsplit(url)
    if "@" in parts.netloc:
        raise StorageUrlError(
            "IQA_STORAGE_URL carries credentials: give them in IQA_S3_ACCESS_KEY_ID and "
            "IQA_S3_SECRET_ACCESS_KEY, not in the URL"
        )
    usage = "give s3://BUCKET or s3://BUCKET/PREFIX, or leave it unset for the file system"
    if parts.scheme != "s3" or parts.query or parts.fragment:
        raise StorageUrlError(f"IQA_STORAGE_URL={url!r} is not understood: {usage}")
    if not BUCKET_NAME.match(parts.netloc):
        raise StorageUrlError(
            f"IQA_STORAGE_URL={url!r} does not name a bucket (3 to 63 lowercase letters, "
            f"digits, dots and hyphens): {usage}"
        )
    prefix = parts.path.strip("/")
    if prefix and any(segment in ("", ".", "..") for segment in prefix.split("/")):
        raise StorageUrlError(
            f"IQA_STORAGE_URL={url!r}: the prefix may not hold empty, '.' or '..' parts"
        )
    return parts.netloc, prefix


def _client_config(proxy: str):
    """Timeouts, retries, and the proxy: ``IQA_S3_PROXY`` or none. Never the
    environment's ``HTTP(S)_PROXY``, which a scoring worker points at a closed port so
    that a metric's loader cannot download (``scoring.weights.worker_environment``)."""
    from botocore.config import Config

    return Config(
        connect_timeout=CONNECT_TIMEOUT,
        read_timeout=READ_TIMEOUT,
        retries={"max_attempts": 2, "mode": "standard"},
        proxies={"http": proxy, "https": proxy} if proxy else {},
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
