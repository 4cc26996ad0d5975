"""A worker reads images through the platform's storage (scoring/image_cache.py): on the
file system where they are; from a bucket (a real S3 server, SeaweedFS) into a bounded
local cache keyed by sha256, least recently used evicted, a corrupt download refused."""

import hashlib

import pytest
from django.conf import settings as django_settings
from django.core.files.storage import default_storage
from django.test import override_settings

from annotation.storage import relative_path_for
from config.storage import default_storage_from_env
from scoring import image_cache
from scoring.registry import metric_get
from tests.images import write_png

pytestmark = pytest.mark.usefixtures("worker_environment")


def content_name(data: bytes) -> str:
    """The store's name for these bytes, as a PNG."""
    return relative_path_for(hashlib.sha256(data).hexdigest(), "PNG")


def in_bucket(env: dict[str, str]) -> dict:
    """The settings' STORAGES with the default storage in the bucket ``env`` names."""
    return {**django_settings.STORAGES, "default": default_storage_from_env(env)}


@pytest.fixture
def bucket(s3_server, tmp_path):
    """The platform's storage in the test server's bucket (a prefix of this test's own),
    and the worker's cache in a folder of this test's own."""
    prefix = f"t-{tmp_path.name}"
    storages = in_bucket(s3_server.env(prefix))
    with override_settings(STORAGES=storages, IQA_WORKER_CACHE_DIR=tmp_path / "cache"):
        yield s3_server, prefix


def put(s3_server, prefix: str, name: str, data: bytes) -> None:
    s3_server.client().put_object(Bucket=s3_server.bucket, Key=f"{prefix}/{name}", Body=data)


def cached_files(tmp_path) -> list[str]:
    return sorted(p.name for p in (tmp_path / "cache").rglob("*") if p.is_file())


def test_on_the_file_system_the_stored_file_is_read_where_it_is(media_root, settings, tmp_path):
    settings.IQA_WORKER_CACHE_DIR = tmp_path / "cache"
    data = write_png(tmp_path / "a.png", seed=1).read_bytes()
    name = content_name(data)
    (media_root / name).parent.mkdir(parents=True)
    (media_root / name).write_bytes(data)
    assert default_storage.path(name) == str(media_root / name)
    assert image_cache.read_bytes(name) == data
    assert not (tmp_path / "cache").exists()  # nothing copied


def test_from_a_bucket_an_image_is_fetched_once_then_read_from_the_cache(bucket, tmp_path):
    s3_server, prefix = bucket
    data = write_png(tmp_path / "a.png", seed=2).read_bytes()
    name = content_name(data)
    put(s3_server, prefix, name, data)
    assert image_cache.read_bytes(name) == data
    assert cached_files(tmp_path) == [hashlib.sha256(data).hexdigest()]
    # Gone from the bucket, still read: the second read never asked it.
    s3_server.client().delete_object(Bucket=s3_server.bucket, Key=f"{prefix}/{name}")
    assert image_cache.read_bytes(name) == data


def test_bytes_that_do_not_hash_to_their_name_are_refused_and_never_cached(bucket, tmp_path):
    s3_server, prefix = bucket
    name = content_name(b"what the name promises")
    put(s3_server, prefix, name, b"something else")
    with pytest.raises(image_cache.StoreUnreadable, match="do not hash to its name"):
        image_cache.read_bytes(name)
    assert cached_files(tmp_path) == []


def test_a_missing_object_or_a_bucket_that_does_not_answer_is_the_stores_fault(
    bucket, s3_server, tmp_path
):
    missing = content_name(b"never stored")
    with pytest.raises(OSError, match=missing):
        image_cache.read_bytes(missing)
    down = {**s3_server.env(), "IQA_S3_ENDPOINT_URL": "http://127.0.0.1:1"}
    with (
        override_settings(STORAGES=in_bucket(down)),
        pytest.raises(image_cache.StoreUnreadable, match="EndpointConnectionError"),
    ):
        image_cache.read_bytes(missing)
    assert cached_files(tmp_path) == []


def test_the_cache_keeps_to_its_size_evicting_the_least_recently_used(bucket, settings, tmp_path):
    s3_server, prefix = bucket
    settings.IQA_WORKER_CACHE_MB = 1
    blobs = {}
    for key in "abc":  # 400 KiB each: two fit in 1 MiB, three do not
        data = key.encode() * (400 * 1024)
        blobs[key] = (content_name(data), data)
        put(s3_server, prefix, blobs[key][0], data)
    sha = {key: hashlib.sha256(data).hexdigest() for key, (_, data) in blobs.items()}
    image_cache.read_bytes(blobs["a"][0])
    image_cache.read_bytes(blobs["b"][0])
    image_cache.read_bytes(blobs["a"][0])  # a is now the more recently used
    image_cache.read_bytes(blobs["c"][0])
    assert cached_files(tmp_path) == sorted([sha["a"], sha["c"]])
    # b is fetched again when asked for, evicting a, now the least recently used.
    assert image_cache.read_bytes(blobs["b"][0]) == blobs["b"][1]
    assert cached_files(tmp_path) == sorted([sha["b"], sha["c"]])


def test_the_engine_scores_images_from_a_bucket_as_from_the_file_system(bucket, tmp_path):
    from scoring import engine

    s3_server, prefix = bucket
    reference = write_png(tmp_path / "r.png", size=(64, 48), seed=3)
    image = write_png(tmp_path / "i.png", size=(64, 48), seed=4)
    names = []
    for path in (image, reference):
        data = path.read_bytes()
        names.append(content_name(data))
        put(s3_server, prefix, names[-1], data)
    (from_bucket,) = engine.score_items(metric_get("psnr"), [tuple(names)])
    (from_disk,) = engine.score_items(metric_get("psnr"), [(image, reference)])
    assert not from_bucket.error
    assert from_bucket.value == pytest.approx(from_disk.value)
