"""Faults survived, nothing lost: annotators voting through gunicorn with client retries
while PostgreSQL restarts, or while a gunicorn worker is killed mid-request. Every
acknowledged vote is stored once, none twice, and the web process recovers by itself."""

import http.client
import json
import os
import signal
import subprocess
import threading
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.db import connection

from annotation.models import Vote
from tests.conftest import start_web_server, stop_web_server, wait_until
from tests.factories import LiveStudyFactory, make_pairs

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

ANNOTATORS = 50
VOTES_EACH = 8
# The public link's throttles are not what is under test here (one address, 50 clients).
OPEN_RATES = {
    name: "100000/min"
    for name in ("IQA_VOTE_RATE", "IQA_SESSION_RATE", "IQA_SESSION_RATE_PER_STUDY",
                 "IQA_TRIAL_RATE")
}  # fmt: skip
PG_LOCK = Path("/tmp/pg-restart.lock")


class Transient(Exception):
    """No answer, a dropped connection, or a 5xx: the client sends the same request again."""


def call(base: str, method: str, path: str, body: dict | None = None) -> tuple[int, dict | None]:
    parts = urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=20)
    try:
        payload = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if payload else {}
        conn.request(method, path, body=payload, headers=headers)
        response = conn.getresponse()
        raw = response.read()
    except (OSError, http.client.HTTPException) as exc:
        raise Transient(repr(exc)) from exc
    finally:
        conn.close()
    if response.status >= 500:
        raise Transient(f"{response.status} {raw[:200]!r}")
    return response.status, (json.loads(raw) if raw else None)


class Crowd:
    """``ANNOTATORS`` clients, each voting ``VOTES_EACH`` times, each request sent again
    (0.2 s apart, for at most 60 s) while it fails transiently, as the annotator page's
    outbox does."""

    def __init__(self, base: str, slug: str) -> None:
        self.base, self.slug = base, slug
        self.acknowledged: list[tuple[str, str]] = []  # (trial id, vote id)
        self.transient = 0
        self.errors: list[str] = []
        self.lock = threading.Lock()

    def send(self, method: str, path: str, body: dict | None = None):
        deadline = time.monotonic() + 60
        while True:
            try:
                return call(self.base, method, path, body)
            except Transient:
                with self.lock:
                    self.transient += 1
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def annotator(self, index: int) -> None:
        try:
            status, session = self.send(
                "POST", f"/api/v1/studies/{self.slug}/sessions", {"participant_id": f"p{index}"}
            )
            assert status == 201, session
            token = session["token"]
            for n in range(VOTES_EACH):
                status, trial = self.send("GET", f"/api/v1/sessions/{token}/next-trial")
                assert status == 200, trial
                vote = {"trial_id": trial["trial_id"], "choice": "left", "response_ms": 800 + n}
                status, body = self.send("POST", f"/api/v1/sessions/{token}/votes", vote)
                # 201 stored now; 200 stored by an earlier try whose answer was lost.
                assert status in (200, 201), body
                with self.lock:
                    self.acknowledged.append((trial["trial_id"], body["vote_id"]))
                time.sleep(0.05)
        except Exception as exc:
            with self.lock:
                self.errors.append(f"annotator {index}: {exc!r}")

    def wait_for_votes(self, count: int) -> None:
        wait_until(lambda: len(self.acknowledged) >= count or self.errors, timeout=60, what="votes")
        assert self.errors == []

    def run(self, fault) -> None:
        threads = [threading.Thread(target=self.annotator, args=(i,)) for i in range(ANNOTATORS)]
        for thread in threads:
            thread.start()
        fault()
        for thread in threads:
            thread.join(timeout=120)
        assert not any(thread.is_alive() for thread in threads)

    def check(self) -> None:
        assert self.errors == []
        connection.close()  # the test's own connection may predate a restart
        stored = {str(v): str(t) for v, t in Vote.objects.values_list("id", "trial_id")}
        assert len(self.acknowledged) == ANNOTATORS * VOTES_EACH
        assert {vote: trial for trial, vote in self.acknowledged} == stored
        per_trial = Counter(Vote.objects.values_list("trial_id", flat=True))
        assert set(per_trial.values()) == {1}


def gunicorn_workers(server) -> set[int]:
    found = subprocess.run(["pgrep", "-P", str(server.process.pid)], capture_output=True, text=True)
    return {int(pid) for pid in found.stdout.split()}


def study_for_crowd():
    study = LiveStudyFactory(votes_per_pair=1)
    make_pairs(study, ANNOTATORS * VOTES_EACH + 50, votes=1, scenes=5)
    return study


@contextmanager
def pg_restart_lock():
    """Other test runs on this machine share its PostgreSQL: the restart is announced in
    /tmp/pg-restart.lock while it lasts, and waits for another one to finish."""
    deadline = time.monotonic() + 120
    while True:
        try:
            fd = os.open(PG_LOCK, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            break
        except FileExistsError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)
    try:
        os.write(
            fd,
            f"{os.getpid()} restarting PostgreSQL for tests/annotation/test_faults.py\n".encode(),
        )
        os.close(fd)
        yield
    finally:
        PG_LOCK.unlink(missing_ok=True)


def restart_postgresql() -> None:
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    with pg_restart_lock():
        command = ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"]
        subprocess.run([*command, "-m", "fast"], check=True, capture_output=True, timeout=60)
        ready = ["pg_isready", "-q", "-h", "127.0.0.1", "-p", "5432"]
        wait_until(lambda: subprocess.run(ready).returncode == 0, timeout=30, what="PostgreSQL")


@pytest.mark.serial  # it cuts every connection: never beside other tests (make test -n)
def test_postgresql_restarted_while_fifty_annotators_vote(media_root):
    """PostgreSQL restarts (fast shutdown: every connection is cut) while 50 annotators
    vote through gunicorn: requests in flight fail and are sent again, every acknowledged
    vote is stored once, and the same gunicorn workers serve on without a restart."""
    study = study_for_crowd()
    server = start_web_server(media=media_root, extra_env=OPEN_RATES)
    try:
        workers_before = gunicorn_workers(server)
        assert len(workers_before) == 2
        crowd = Crowd(server.url, study.slug)

        def fault():
            crowd.wait_for_votes(60)
            restart_postgresql()

        crowd.run(fault)
        crowd.check()
        assert crowd.transient > 0  # the restart was felt
        # The web process recovered without a restart: the same processes answer.
        assert gunicorn_workers(server) == workers_before
        status, health = call(server.url, "GET", "/healthz")
        assert (status, health["database"]) == (200, {"ok": True})
    finally:
        stop_web_server(server)


def test_a_gunicorn_worker_killed_mid_request_the_clients_retry_lands_once(media_root):
    """One of gunicorn's two workers is SIGKILLed while 50 annotators vote: the requests it
    held are cut, the clients send them again, gunicorn starts a new worker, and each
    acknowledged vote is stored once (an answer stored before the kill is returned on the
    retry, not stored twice)."""
    study = study_for_crowd()
    server = start_web_server(media=media_root, extra_env=OPEN_RATES)
    try:
        crowd = Crowd(server.url, study.slug)

        def fault():
            crowd.wait_for_votes(60)
            # A kill can land between two requests of that worker (each request is a new
            # connection): then nothing was cut, so kill again once gunicorn has replaced
            # it, at most three times, until a client felt it.
            for _ in range(3):
                children = sorted(gunicorn_workers(server))
                assert len(children) == 2, children
                killed = children[0]
                os.kill(killed, signal.SIGKILL)
                wait_until(lambda killed=killed: len(gunicorn_workers(server) - {killed}) == 2,
                           timeout=30, what="a new worker")  # fmt: skip
                if crowd.transient:
                    break

        crowd.run(fault)
        crowd.check()
        assert crowd.transient > 0  # requests in flight were cut
        assert server.process.poll() is None
        wait_until(lambda: len(gunicorn_workers(server)) == 2, timeout=30, what="a new worker")
    finally:
        stop_web_server(server)
