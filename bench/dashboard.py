"""Study dashboard with 1,000,000 votes: time to first byte of the page and its data
endpoints, on gunicorn and PostgreSQL, over HTTP.

The synthetic study of ``bench/agreement_speed.py`` (its generator, imported: 1,000,000
votes on 100,000 pairs of 1,819 scenes, 5,000 annotators) is written to a scratch
database (``iqa_bench_dashboard``, dropped and recreated; ``--database``) with COPY:
scenes, images, pairs, 5,000 sessions, a trial per vote and the votes, spread over the
last 48 hours. Then gunicorn starts (the Django cache in Redis, shared by its workers, as
in production), a researcher logs in, and each URL is requested ``--requests`` times one
after another; the first request of each (the cold one, which computes and caches the
vote counts) is timed apart. Prints p50/p95/max time to first byte per URL, and how long
one recomputation of the vote counts takes (what one request per refresh interval pays
while votes come in). Target: p95 under 300 ms.

    .venv/bin/python bench/dashboard.py

It needs PostgreSQL on 127.0.0.1:5432 and Redis on 127.0.0.1:6379 (``make services``).
"""

import argparse
import http.client
import io
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

SLUG = "bench-dashboard"
USER, PASSWORD = "bench", "bench password 1"


def database_url(name: str) -> str:
    return f"postgres://postgres@127.0.0.1:5432/{name}"


def recreate(name: str) -> None:
    subprocess.run(["dropdb", "-h", "127.0.0.1", "-U", "postgres", "--if-exists", name], check=True)
    subprocess.run(["createdb", "-h", "127.0.0.1", "-U", "postgres", name], check=True)
    env = {**os.environ, "DATABASE_URL": database_url(name)}
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=REPO, env=env, check=True)


def copy_rows(cursor, table: str, columns: list[str], rows) -> None:
    """COPY ``rows`` (tuples) into ``table`` through an in-memory text buffer."""
    buffer = io.StringIO()
    for row in rows:
        buffer.write("\t".join("\\N" if v is None else str(v) for v in row) + "\n")
    buffer.seek(0)
    with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        while chunk := buffer.read(1 << 20):
            copy.write(chunk)


def write_study(seed: int) -> dict:
    """The synthetic study in the database; returns its sizes."""
    from agreement_speed import synthetic_study
    from django.contrib.auth import get_user_model
    from django.db import connection, transaction

    from annotation.models import Image, Scene, Study

    data, _ = synthetic_study(scenes=1818, metrics=1, votes_per_pair=10, annotators=5000, seed=seed)
    rng = np.random.default_rng(seed)
    owner = get_user_model().objects.create_user(USER, password=PASSWORD)
    now = datetime.now(UTC)
    with transaction.atomic():
        study = Study.objects.create(
            slug=SLUG, title="Dashboard benchmark", design="pairwise", votes_per_pair=10,
            status="live", practice_trials=0, trials_per_session=100_000, owner=owner,
        )  # fmt: skip
        names = sorted(data.images["scene"].unique(), key=lambda s: int(s[1:]))
        scenes = Scene.objects.bulk_create([Scene(study=study, name=name) for name in names])
        scene_id = {scene.name: scene.pk for scene in scenes}
        images = Image.objects.bulk_create(
            [
                Image(
                    scene_id=scene_id[row.scene],
                    name=row.name,
                    role="test",
                    condition=row.condition,
                    sha256=f"{row.image_id:064x}",
                    file=f"images/{row.image_id}.png",
                    width=64,
                    height=64,
                    format="PNG",
                    size_bytes=1,
                )
                for row in data.images.itertuples()
            ],
            batch_size=5000,
        )
        image_pk = np.array([image.pk for image in images])
        pairs = data.pairs
        pair_scene = pairs["scene"].map(scene_id).to_numpy()
        with connection.cursor() as cursor:
            raw = cursor.cursor
            raw.execute("SELECT nextval(pg_get_serial_sequence('annotation_pair', 'id'))")
            first_pair = raw.fetchone()[0]
            pair_pk = first_pair + np.arange(len(pairs))
            copy_rows(
                raw, "annotation_pair",
                ["id", "study_id", "scene_id", "image_a_id", "image_b_id", "target_votes",
                 "gold_answer", "n_assigned", "rand_key"],
                zip(pair_pk, [study.pk] * len(pairs), pair_scene,
                    image_pk[pairs["image_a"]], image_pk[pairs["image_b"]], [10] * len(pairs),
                    [""] * len(pairs), [10] * len(pairs), rng.random(len(pairs)), strict=True),
            )  # fmt: skip
            raw.execute(
                "SELECT setval(pg_get_serial_sequence('annotation_pair', 'id'), %s)",
                [int(pair_pk[-1])],
            )
            votes = data.votes
            n = len(votes)
            # The generator's first annotator of each pair, then nine others spread out:
            # a session never sees a pair twice (the trials' constraint).
            position = np.arange(n) % 10
            first = votes["annotator"].str[1:].astype(int).to_numpy()[np.arange(n) - position]
            session_index = (first + position * 499) % 5000
            created = now - timedelta(hours=48) + rng.random(n) * timedelta(hours=48)
            order = np.argsort(created)
            ordinal = np.empty(n, dtype=np.int64)
            counts = np.zeros(5000, dtype=np.int64)
            for i in order:  # ordinals in answering order per session
                ordinal[i] = counts[session_index[i]]
                counts[session_index[i]] += 1
            session_ids = []
            raw.execute(
                "SELECT nextval(pg_get_serial_sequence('annotation_annotatorsession', 'id'))"
            )
            first_session = raw.fetchone()[0]
            session_ids = first_session + np.arange(5000)
            started = now - timedelta(hours=49)
            copy_rows(
                raw, "annotation_annotatorsession",
                ["id", "study_id", "token", "pseudonym", "participant_id", "source",
                 "external_ids", "client_info", "created_at", "completed_at", "n_practice_done",
                 "n_done", "n_issued"],
                ((int(session_ids[s]), study.pk, uuid.uuid4().hex * 2, f"{s:012x}", f"p{s}",
                  "bench", "{}", "{}", started.isoformat(),
                  (now - timedelta(minutes=s % 50)).isoformat() if s % 3 == 0 else None,
                  0, int(counts[s]), int(counts[s])) for s in range(5000)),
            )  # fmt: skip
            raw.execute(
                "SELECT setval(pg_get_serial_sequence('annotation_annotatorsession', 'id'), %s)",
                [int(session_ids[-1])],
            )
            trial_ids = [uuid.uuid4() for _ in range(n)]
            stamps = [c.isoformat() for c in created]
            a_on_left = (votes["choice"].to_numpy() == "left") == (
                votes["preferred"].to_numpy() == "a"
            )
            vote_pair = pair_pk[votes["pair_id"].to_numpy()]
            vote_session = session_ids[session_index]
            copy_rows(
                raw, "annotation_trial",
                ["id", "session_id", "pair_id", "kind", "ordinal", "a_on_left", "issued_at",
                 "lease_expires_at", "answered_at", "released"],
                zip(trial_ids, vote_session, vote_pair, ["label"] * n, ordinal,
                    ["t" if x else "f" for x in a_on_left], stamps, stamps, stamps, ["f"] * n,
                    strict=True),
            )  # fmt: skip
            copy_rows(
                raw, "annotation_vote",
                ["id", "trial_id", "session_id", "pair_id", "kind", "choice", "preferred",
                 "late", "response_ms", "client_info", "created_at"],
                ((uuid.uuid4(), t, s, p, "label", c, pr, "f", ms, "{}", at)
                 for t, s, p, c, pr, ms, at in zip(
                     trial_ids, vote_session, vote_pair, votes["choice"], votes["preferred"],
                     votes["response_ms"], stamps, strict=True)),
            )  # fmt: skip
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    return {"votes": n, "pairs": len(pairs), "scenes": len(scenes), "images": len(images)}


class Browser:
    """One keep-alive connection with the session's cookies."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.cookies: dict[str, str] = {}
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def request(self, method: str, path: str, body: str | None = None, headers=None):
        headers = {**(headers or {})}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        start = time.perf_counter()
        self.connection.request(method, path, body=body, headers=headers)
        response = self.connection.getresponse()  # returns once the status line and headers are in
        first_byte = time.perf_counter() - start
        content = response.read()
        for header, value in response.getheaders():
            if header.lower() == "set-cookie":
                name, _, rest = value.partition("=")
                self.cookies[name] = rest.split(";", 1)[0]
        return response.status, content, first_byte

    def log_in(self) -> None:
        status, page, _ = self.request("GET", "/login/")
        token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1).decode()
        body = urlencode({"username": USER, "password": PASSWORD, "csrfmiddlewaretoken": token})
        status, _, _ = self.request(
            "POST", "/login/", body,
            {"Content-Type": "application/x-www-form-urlencoded", "Referer": "http://127.0.0.1/"},
        )  # fmt: skip
        if status != 302:
            sys.exit(f"log in failed: {status}")


def start_server(name: str, port: int, workers: int, data_dir: Path, redis_db: int):
    env = {
        **os.environ,
        "DATABASE_URL": database_url(name),
        "IQA_DATA_DIR": str(data_dir),
        "IQA_CACHE_URL": f"redis://127.0.0.1:6379/{redis_db}",
        "DJANGO_DEBUG": "0",
    }
    command = [
        sys.executable, "-m", "gunicorn", "config.wsgi", "--bind", f"127.0.0.1:{port}",
        "--workers", str(workers), "--threads", "4", "--no-control-socket", "--timeout", "120",
    ]  # fmt: skip
    log = open(data_dir / "gunicorn.log", "wb")  # noqa: SIM115
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/api/v1/ping")
            if connection.getresponse().status == 200:
                return process
        except OSError:
            time.sleep(0.2)
    process.kill()
    sys.exit((data_dir / "gunicorn.log").read_text()[-3000:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", default="iqa_bench_dashboard")
    parser.add_argument("--requests", type=int, default=200, help="per URL")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--redis-db", type=int, default=8, help="the cache's Redis database")
    parser.add_argument("--reuse", action="store_true", help="keep the database of a last run")
    args = parser.parse_args()

    os.environ["DATABASE_URL"] = database_url(args.database)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    sys.path.insert(0, str(REPO / "bench"))
    if not args.reuse:
        recreate(args.database)
    import django

    django.setup()
    started = time.perf_counter()
    if not args.reuse:
        sizes = write_study(seed=1)
        print(
            f"study: {sizes['votes']:,} votes, {sizes['pairs']:,} pairs, {sizes['scenes']:,} "
            f"scenes, 5,000 sessions; written in {time.perf_counter() - started:.0f} s"
        )
    from annotation.models import Study
    from workspace import dashboard

    study = Study.objects.get(slug=SLUG)
    computed = []
    for _ in range(3):
        t = time.perf_counter()
        dashboard.study_progress_compute(study=study)
        computed.append(time.perf_counter() - t)
    print(f"recomputing the vote counts (uncached): {min(computed) * 1000:.0f} ms (best of 3)")

    # Start cold: no cached dashboard numbers of an earlier run.
    keys = subprocess.run(
        ["redis-cli", "-n", str(args.redis_db), "--scan", "--pattern", "*iqa:dashboard:*"],
        check=True, capture_output=True, text=True,
    ).stdout.split()  # fmt: skip
    if keys:
        subprocess.run(
            ["redis-cli", "-n", str(args.redis_db), "DEL", *keys], check=True, capture_output=True
        )
    urls = [
        f"/studies/{SLUG}/",
        f"/api/v1/studies/{SLUG}/progress",
        f"/api/v1/studies/{SLUG}",
    ]
    with tempfile.TemporaryDirectory(prefix="iqa-bench-") as tmp:
        port = 19000 + os.getpid() % 1000
        server = start_server(args.database, port, args.workers, Path(tmp), args.redis_db)
        try:
            browser = Browser(port)
            browser.log_in()
            print(
                f"gunicorn {args.workers} workers x 4 threads; {args.requests} requests per URL, "
                "one after another; time to first byte:"
            )
            for path in urls:
                status, _, cold = browser.request("GET", path)
                assert status == 200, (path, status)
                times = []
                for _ in range(args.requests):
                    status, _, first_byte = browser.request("GET", path)
                    assert status == 200, (path, status)
                    times.append(first_byte)
                ms = np.asarray(times) * 1000
                p50, p95 = np.percentile(ms, [50, 95])
                print(
                    f"  {path:<40} cold {cold * 1000:6.0f} ms   p50 {p50:5.1f} ms   "
                    f"p95 {p95:5.1f} ms   max {ms.max():6.1f} ms"
                )
        finally:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
