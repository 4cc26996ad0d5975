"""Many annotators at once, over real HTTP to gunicorn, on the real PostgreSQL. Each
annotator comes from an address of its own (127.0.0.0/8 is all loopback), as a crowd
does."""

import http.client
import json
import random
import threading
import time
from collections import Counter
from urllib.parse import urlsplit

import pytest

from annotation.models import AnnotatorSession, Trial, Vote
from tests.conftest import start_web_server, stop_web_server
from tests.factories import LiveStudyFactory, make_pairs

SESSIONS = 50
PAIRS = 60
TARGET = 3


def call(
    base: str, method: str, path: str, body: dict | None = None, *, address: str = "127.0.0.1"
) -> tuple[int, dict | None]:
    parts = urlsplit(base)
    connection = http.client.HTTPConnection(
        parts.hostname, parts.port, timeout=60, source_address=(address, 0)
    )
    try:
        payload = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if payload else {}
        connection.request(method, path, body=payload, headers=headers)
        response = connection.getresponse()
        raw = response.read()
        return response.status, (json.loads(raw) if raw else None)
    finally:
        connection.close()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_fifty_sessions_voting_until_204_give_every_pair_exactly_its_target(web_server):
    """Every pair ends with exactly 3 counted votes, no session sees a pair twice, and
    every acknowledged vote is stored exactly once, with retries mixed in. A session told
    that every pair left is held by others answering (409 trials_held) asks again."""
    study = LiveStudyFactory(votes_per_pair=TARGET)
    make_pairs(study, PAIRS, votes=TARGET, scenes=3)
    base = web_server.url
    acknowledged: list[tuple[str, str, str]] = []  # (token, trial_id, vote_id)
    errors: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(SESSIONS)

    def annotator(index: int) -> None:
        rng = random.Random(index)
        address = f"127.0.1.{index + 1}"
        try:
            status, session = call(
                base,
                "POST",
                f"/api/v1/studies/{study.slug}/sessions",
                {"participant_id": f"p{index}"},
                address=address,
            )
            assert status == 201, session
            token = session["token"]
            start.wait(timeout=60)
            for _ in range(PAIRS * 20):
                status, trial = call(
                    base, "GET", f"/api/v1/sessions/{token}/next-trial", address=address
                )
                if status == 204:
                    return
                if status == 409 and trial["error"]["code"] == "trials_held":
                    time.sleep(0.05)  # the others answer in milliseconds here
                    continue
                assert status == 200, trial
                vote = {
                    "trial_id": trial["trial_id"],
                    "choice": rng.choice(["left", "similar", "right"]),
                    "response_ms": rng.randint(300, 3000),
                }
                # Some answers are sent two or three times, as a flaky network would.
                for attempt in range(rng.choice([1, 1, 2, 3])):
                    status, body = call(
                        base, "POST", f"/api/v1/sessions/{token}/votes", vote, address=address
                    )
                    assert status == (201 if attempt == 0 else 200), body
                with lock:
                    acknowledged.append((token, trial["trial_id"], body["vote_id"]))
            raise AssertionError("a session never got 204")
        except Exception as exc:  # reported below, with the thread's index
            start.abort()  # nobody waits for a thread that failed
            with lock:
                errors.append(f"annotator {index}: {exc!r}")

    threads = [threading.Thread(target=annotator, args=(i,)) for i in range(SESSIONS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=240)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []

    counted = Counter(Vote.objects.filter(kind="label").values_list("pair_id", flat=True))
    assert len(counted) == PAIRS
    assert set(counted.values()) == {TARGET}
    assert not Vote.objects.filter(late=True).exists()

    seen = list(Trial.objects.values_list("session_id", "pair_id"))
    assert len(seen) == len(set(seen))

    stored = {str(v): str(t) for v, t in Vote.objects.values_list("id", "trial_id")}
    assert len(acknowledged) == len(stored) == PAIRS * TARGET
    assert {vote_id: trial_id for _, trial_id, vote_id in acknowledged} == stored
    assert AnnotatorSession.objects.filter(completed_at__isnull=True).count() == 0


@pytest.mark.django_db(transaction=True)
def test_one_session_asking_from_several_tabs_at_once_gets_one_trial(web_server):
    """Concurrent next-trial requests of one session (tabs, retries) share one open trial."""
    study = LiveStudyFactory()
    make_pairs(study, 20, votes=1)
    base = web_server.url
    status, session = call(base, "POST", f"/api/v1/studies/{study.slug}/sessions", {})
    assert status == 201
    token = session["token"]

    def ask(barrier: threading.Barrier, seen: list[str]) -> None:
        barrier.wait(timeout=30)
        status, trial = call(base, "GET", f"/api/v1/sessions/{token}/next-trial")
        assert status == 200
        seen.append(trial["trial_id"])

    for _ in range(8):
        seen: list[str] = []
        barrier = threading.Barrier(4)
        threads = [threading.Thread(target=ask, args=(barrier, seen)) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert len(seen) == 4
        assert len(set(seen)) == 1, seen
        vote = {"trial_id": seen[0], "choice": "left", "response_ms": 700}
        assert call(base, "POST", f"/api/v1/sessions/{token}/votes", vote)[0] == 201
    assert Trial.objects.count() == 8
    assert Vote.objects.count() == 8


@pytest.mark.django_db(transaction=True)
def test_a_limit_is_what_its_setting_says_across_web_processes(media_root):
    """Two gunicorn processes without a shared cache configured (as under `make run`): the
    throttles count in the database, so IQA_SESSION_RATE=6/min lets exactly six sessions
    through from one address, whichever process serves each request, and the next is 429;
    another address is not affected."""
    study = LiveStudyFactory()
    server = start_web_server(
        media=media_root, workers=2, threads=2, extra_env={"IQA_SESSION_RATE": "6/min"}
    )
    try:
        url = f"/api/v1/studies/{study.slug}/sessions"
        statuses = [call(server.url, "POST", url, {}, address="127.0.3.1")[0] for _ in range(14)]
        other = call(server.url, "POST", url, {}, address="127.0.3.2")[0]
        served_by = {line.split()[-1] for line in server.log.read_text().splitlines()
                     if "Booting worker" in line}  # fmt: skip
    finally:
        stop_web_server(server)
    assert len(served_by) == 2
    assert statuses.count(201) == 6, statuses
    assert statuses.count(429) == 8
    assert other == 201
