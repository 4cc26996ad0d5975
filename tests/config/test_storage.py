"""Where the files live: the file system by default, an S3-compatible bucket with
``IQA_STORAGE_URL`` (config/storage.py), and ``manage.py check`` naming a bucket it cannot
reach; against a real S3 server (SeaweedFS on loopback, ``s3_server``)."""

import json
import re
import subprocess
import sys

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import storages

from config.storage import FILE_SYSTEM, S3, StorageUrlError, default_storage_from_env
from tests.conftest import REPO, embedded_env

PROBE = """
import json, django
from django.conf import settings
django.setup()
options = dict(settings.STORAGES["default"].get("OPTIONS", {}))
options.pop("client_config", None)
print(json.dumps({"backend": settings.STORAGES["default"]["BACKEND"], "options": options}))
"""


def probe(tmp_path, **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=REPO,
        env=embedded_env(tmp_path, DJANGO_SETTINGS_MODULE="config.settings", **env),
        capture_output=True,
        text=True,
    )


def test_with_nothing_set_files_go_to_the_file_system(tmp_path):
    found = json.loads(probe(tmp_path).stdout)
    assert found == {"backend": FILE_SYSTEM, "options": {}}


def test_an_s3_url_selects_the_bucket_its_prefix_the_endpoint_and_the_credentials(tmp_path):
    done = probe(
        tmp_path,
        IQA_STORAGE_URL="s3://lab-images/iqa/prod",
        IQA_S3_ENDPOINT_URL="https://s3.lab.example",
        IQA_S3_REGION="eu-west-1",
        IQA_S3_ACCESS_KEY_ID="AKIAEXAMPLE",
        IQA_S3_SECRET_ACCESS_KEY="secret",
    )
    found = json.loads(done.stdout)
    assert found["backend"] == S3
    options = found["options"]
    assert options["bucket_name"] == "lab-images"
    assert options["location"] == "iqa/prod"
    assert options["endpoint_url"] == "https://s3.lab.example"
    assert options["region_name"] == "eu-west-1"
    assert (options["access_key"], options["secret_key"]) == ("AKIAEXAMPLE", "secret")
    # A lab's own server: one host name for every bucket.
    assert options["addressing_style"] == "path"
    assert options["signature_version"] == "s3v4"
    # A content address written again is the same object, never renamed to a free name.
    assert options["file_overwrite"] is True
    # Private objects, reached through signed URLs.
    assert options["default_acl"] is None
    assert options["querystring_auth"] is True


def test_on_aws_the_defaults_are_boto3s():
    options = default_storage_from_env({"IQA_STORAGE_URL": "s3://lab-images"})["OPTIONS"]
    assert options["endpoint_url"] is None
    assert options["location"] == ""
    assert options["addressing_style"] is None  # boto3 chooses (virtual hosts on AWS)
    assert options["region_name"] == "us-east-1"  # the platform's default (R2 takes "auto")
    # boto3's own search for credentials (variables, a profile, an instance role).
    assert options["access_key"] is None
    assert options["secret_key"] is None


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"IQA_STORAGE_URL": "gs://bucket"}, "IQA_STORAGE_URL='gs://bucket' is not understood"),
        ({"IQA_STORAGE_URL": "s3:///x"}, "IQA_STORAGE_URL='s3:///x' does not name a bucket"),
        ({"IQA_STORAGE_URL": "s3://b"}, "IQA_STORAGE_URL='s3://b' does not name a bucket"),
        ({"IQA_STORAGE_URL": "s3://lab:9000"}, "IQA_STORAGE_URL='s3://lab:9000' does not name"),
        ({"IQA_STORAGE_URL": "s3://Lab_Images"}, "'s3://Lab_Images' does not name a bucket"),
        ({"IQA_STORAGE_URL": "s3://lab?region=x"}, "IQA_STORAGE_URL='s3://lab?region=x' is not"),
        ({"IQA_STORAGE_URL": "s3://lab/../up"}, "'s3://lab/../up': the prefix may not hold"),
        ({"IQA_STORAGE_URL": "s3://lab/a//b"}, "'s3://lab/a//b': the prefix may not hold"),
        (
            {"IQA_STORAGE_URL": "s3://lab", "IQA_S3_ADDRESSING_STYLE": "dns"},
            "IQA_S3_ADDRESSING_STYLE='dns' is not one of path, virtual",
        ),
        (
            {"IQA_STORAGE_URL": "s3://lab", "IQA_S3_ENDPOINT_URL": "s3.lab.example"},
            "IQA_S3_ENDPOINT_URL='s3.lab.example' is not an http:// or https:// address",
        ),
        (
            {"IQA_STORAGE_URL": "s3://lab", "IQA_S3_ACCESS_KEY_ID": "AKIAEXAMPLE"},
            "give both IQA_S3_ACCESS_KEY_ID and IQA_S3_SECRET_ACCESS_KEY, or neither",
        ),
    ],
)
def test_storage_variables_that_are_not_understood_are_refused_by_name(env, named):
    with pytest.raises(StorageUrlError, match=re.escape(named)):
        default_storage_from_env(env)


@pytest.mark.parametrize(
    "env",
    [
        {"IQA_STORAGE_URL": "s3://AKIAEXAMPLE:sekrit-key@lab-images"},
        {"IQA_STORAGE_URL": "s3://lab-images", "IQA_S3_ENDPOINT_URL": "https://u:sekrit-key@s3"},
    ],
)
def test_credentials_written_into_a_url_are_refused_without_repeating_them(env):
    with pytest.raises(StorageUrlError, match="carries credentials") as refused:
        default_storage_from_env(env)
    assert "sekrit" not in str(refused.value)


def test_a_process_does_not_start_on_a_storage_url_it_does_not_understand(tmp_path):
    done = probe(tmp_path, IQA_STORAGE_URL="ftp://files.example/iqa")
    assert done.returncode != 0
    assert "IQA_STORAGE_URL='ftp://files.example/iqa' is not understood" in done.stderr


def check(tmp_path, *options: str, **env: str) -> subprocess.CompletedProcess:
    environment = embedded_env(tmp_path, **env)
    # Set for the tests' browser steps (tests/conftest.py); --deploy refuses it.
    environment.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    return subprocess.run(
        [sys.executable, "manage.py", "check", *options],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_passes_with_a_reachable_bucket_and_names_one_it_cannot_reach(
    tmp_path, s3_server
):
    reached = check(tmp_path, "--deploy", **s3_server.env("iqa"))
    assert reached.returncode == 0, reached.stderr
    assert "iqa.E001" not in reached.stderr
    # Until the files move there, a bucket set is a warning, not a silent no-op.
    assert f"(iqa.W002) IQA_STORAGE_URL names s3://iqa/iqa at {s3_server.endpoint}, but" in (
        reached.stderr
    )

    no_bucket = {**s3_server.env(), "IQA_STORAGE_URL": "s3://no-such-bucket"}
    missing = check(tmp_path, "--deploy", **no_bucket)
    assert missing.returncode != 0
    assert f"iqa.E001) the object storage s3://no-such-bucket at {s3_server.endpoint}" in (
        missing.stderr
    )

    wrong_key = check(
        tmp_path, "--deploy", **{**s3_server.env(), "IQA_S3_SECRET_ACCESS_KEY": "nO-iT"}
    )
    assert wrong_key.returncode != 0
    assert f"s3://{s3_server.bucket} at {s3_server.endpoint} cannot be reached" in wrong_key.stderr
    for done in (missing, wrong_key):
        assert s3_server.secret_key not in done.stdout + done.stderr
        assert "nO-iT" not in done.stdout + done.stderr


def test_check_deploy_names_an_endpoint_that_does_not_answer(tmp_path, s3_server):
    down = {**s3_server.env(), "IQA_S3_ENDPOINT_URL": "http://127.0.0.1:1"}
    done = check(tmp_path, "--deploy", **down)
    assert done.returncode != 0
    assert "s3://iqa at http://127.0.0.1:1 cannot be reached: EndpointConnectionError" in (
        done.stderr
    )


def test_other_commands_never_wait_on_the_bucket_and_warn_it_is_not_used_yet(tmp_path):
    """Without --deploy nothing reaches the bucket (migrate and the servers start while
    it is down); the warning that files do not go there yet is on every command."""
    down = {
        "IQA_STORAGE_URL": "s3://lab-images",
        "IQA_S3_ENDPOINT_URL": "http://127.0.0.1:1",
        "IQA_S3_ACCESS_KEY_ID": "k",
        "IQA_S3_SECRET_ACCESS_KEY": "s",
    }
    done = check(tmp_path, **down)
    assert done.returncode == 0, done.stderr
    assert "iqa.E001" not in done.stderr
    assert "(iqa.W002) IQA_STORAGE_URL names s3://lab-images at http://127.0.0.1:1" in done.stderr


def test_files_written_through_the_storage_land_in_the_bucket_under_the_prefix(s3_server):
    storage = storages.create_storage(default_storage_from_env(s3_server.env("under/here")))
    name = storage.save("images/ab/cd/abcd.png", ContentFile(b"\x89PNG bytes"))
    assert name == "images/ab/cd/abcd.png"
    assert storage.exists(name)
    with storage.open(name) as handle:
        assert handle.read() == b"\x89PNG bytes"
    stored = s3_server.client().get_object(
        Bucket=s3_server.bucket, Key="under/here/images/ab/cd/abcd.png"
    )
    assert stored["Body"].read() == b"\x89PNG bytes"
    # A content address written again is the same object, not a renamed copy.
    assert storage.save(name, ContentFile(b"\x89PNG bytes")) == name
    storage.delete(name)
    assert not storage.exists(name)
