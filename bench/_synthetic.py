"""What the benchmarks on PostgreSQL share: the synthetic study of
``bench/agreement_speed.py`` written to a scratch database with ``COPY``, its metric
scores, and gunicorn on that database.

``write_study`` writes scenes, images, pairs, one session per simulated annotator, a
trial per vote and the votes (spread over the last 48 hours), each table in one ``COPY``
from a data frame; ``write_scores`` adds NR metrics' scores (noisy views of the latent
quality); ``start_server`` starts gunicorn and waits for it to answer.
"""

import http.client
import io
import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
USER, PASSWORD = "bench", "bench password 1"


def database_url(name: str) -> str:
    return f"postgres://postgres@127.0.0.1:5432/{name}"


def recreate(name: str) -> None:
    """Drop and create the scratch database ``name`` and migrate it."""
    subprocess.run(["dropdb", "-h", "127.0.0.1", "-U", "postgres", "--if-exists", name], check=True)
    subprocess.run(["createdb", "-h", "127.0.0.1", "-U", "postgres", name], check=True)
    env = {**os.environ, "DATABASE_URL": database_url(name)}
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=REPO, env=env, check=True)


def demo_scoring(database: str, broker: str, data_dir: str, queue: str, **settings: str) -> dict:
    """A scratch database with both demo studies (``build_demo``) and an emptied Redis
    database for a broker; returns the environment that ``manage.py`` and a scoring
    worker on them run with (tasks to ``queue``; ``settings``: more variables)."""
    recreate(database)
    number = broker.rsplit("/", 1)[1]
    subprocess.run(["redis-cli", "-n", number, "flushdb"], check=True, capture_output=True)
    env = {
        **os.environ,
        "DATABASE_URL": database_url(database),
        "CELERY_BROKER_URL": broker,
        "IQA_DATA_DIR": data_dir,
        "CELERY_TASK_DEFAULT_QUEUE": queue,
        **settings,
    }
    subprocess.run(
        [sys.executable, "manage.py", "build_demo"], cwd=REPO, env=env, check=True,
        capture_output=True,
    )  # fmt: skip
    return env


def start_scoring_worker(env: dict, queue: str) -> subprocess.Popen:
    """``python -m scoring.worker`` (solo pool) on ``queue``, as a deployment starts one."""
    return subprocess.Popen(
        [sys.executable, "-m", "scoring.worker", "--pool", "solo", "--queues", queue,
         "--without-gossip", "--without-mingle", "--loglevel", "WARNING"],
        cwd=REPO, env=env,
    )  # fmt: skip


def copy_frame(cursor, table: str, frame: pd.DataFrame) -> None:
    """COPY ``frame`` (its columns named as the table's; None/NaN as NULL) into ``table``."""
    buffer = io.StringIO()
    frame.to_csv(buffer, sep="\t", header=False, index=False, na_rep="\\N")
    buffer.seek(0)
    with cursor.copy(f"COPY {table} ({', '.join(frame.columns)}) FROM STDIN") as copy:
        while chunk := buffer.read(1 << 20):
            copy.write(chunk)


def copy_rows(cursor, table: str, columns: list[str], rows) -> None:
    """COPY ``rows`` (tuples) into ``table``."""
    copy_frame(cursor, table, pd.DataFrame(list(rows), columns=columns))


def _next_ids(cursor, table: str, n: int) -> np.ndarray:
    """``n`` fresh ids of ``table``'s serial column (the sequence moved past them)."""
    cursor.execute(f"SELECT nextval(pg_get_serial_sequence('{table}', 'id'))")
    first = cursor.fetchone()[0]
    cursor.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), %s)", [first + n])
    return first + np.arange(n)


def write_study(
    *,
    slug: str,
    scenes: int = 1818,
    votes_per_pair: int = 10,
    target_votes: int | None = None,
    status: str = "live",
    seed: int = 1,
) -> dict:
    """The synthetic study (``scenes`` scenes of 11 images and one of 5, ``votes_per_pair``
    votes on each pair from 5,000 sessions) in the database, owned by the user ``USER``.
    Pairs ask for ``target_votes`` (default: the votes they have, so none is offered).
    Returns its sizes."""
    from agreement_speed import synthetic_study
    from django.contrib.auth import get_user_model
    from django.db import connection, transaction

    from annotation.models import Image, Scene, Study

    data, _ = synthetic_study(
        scenes=scenes, metrics=1, votes_per_pair=votes_per_pair, annotators=5000, seed=seed
    )
    target = votes_per_pair if target_votes is None else target_votes
    rng = np.random.default_rng(seed)
    owner = get_user_model().objects.create_user(USER, password=PASSWORD)
    now = datetime.now(UTC)
    with transaction.atomic():
        study = Study.objects.create(
            slug=slug, title="Benchmark", design="pairwise", votes_per_pair=target,
            status=status, practice_trials=0, trials_per_session=100_000, owner=owner,
        )  # fmt: skip
        names = sorted(data.images["scene"].unique(), key=lambda s: int(s[1:]))
        made = Scene.objects.bulk_create([Scene(study=study, name=name) for name in names])
        scene_id = {scene.name: scene.pk for scene in made}
        images = Image.objects.bulk_create(
            [
                Image(scene_id=scene_id[row.scene], name=row.name, role="test",
                      condition=row.condition, sha256=f"{row.image_id:064x}",
                      file=f"images/{row.image_id}.png", width=64, height=64, format="PNG",
                      size_bytes=1)
                for row in data.images.itertuples()
            ],
            batch_size=5000,
        )  # fmt: skip
        image_pk = np.array([image.pk for image in images])
        pairs, votes = data.pairs, data.votes
        n = len(votes)
        with connection.cursor() as cursor:
            raw = cursor.cursor
            pair_pk = _next_ids(raw, "annotation_pair", len(pairs))
            copy_frame(raw, "annotation_pair", pd.DataFrame({
                "id": pair_pk, "study_id": study.pk,
                "scene_id": pairs["scene"].map(scene_id).to_numpy(),
                "image_a_id": image_pk[pairs["image_a"]],
                "image_b_id": image_pk[pairs["image_b"]],
                "target_votes": target, "gold_answer": "", "n_assigned": votes_per_pair,
                "rand_key": rng.random(len(pairs)),
            }))  # fmt: skip
            # The generator's first annotator of each pair, then the others spread out:
            # a session never sees a pair twice (the trials' constraint).
            position = np.arange(n) % votes_per_pair
            first = votes["annotator"].str[1:].astype(int).to_numpy()[np.arange(n) - position]
            session_index = (first + position * 499) % 5000
            created = now - timedelta(hours=48) + rng.random(n) * timedelta(hours=48)
            order = np.argsort(created, kind="stable")
            ordinal = np.empty(n, dtype=np.int64)  # in answering order per session
            ordinal[order] = pd.Series(session_index[order]).groupby(
                session_index[order]).cumcount().to_numpy()  # fmt: skip
            counts = np.bincount(session_index, minlength=5000)
            session_ids = _next_ids(raw, "annotation_annotatorsession", 5000)
            started = (now - timedelta(hours=49)).isoformat()
            copy_frame(raw, "annotation_annotatorsession", pd.DataFrame({
                "id": session_ids, "study_id": study.pk,
                "token": [uuid.uuid4().hex * 2 for _ in range(5000)],
                "pseudonym": [f"{s:012x}" for s in range(5000)],
                "participant_id": [f"p{s}" for s in range(5000)], "source": "bench",
                "external_ids": "{}", "client_info": "{}", "created_at": started,
                "completed_at": [(now - timedelta(minutes=s % 50)).isoformat()
                                 if s % 3 == 0 else None for s in range(5000)],
                "n_practice_done": 0, "n_done": counts, "n_issued": counts,
                "address_key": "", "assignment_id": "", "shielded": "f",
                "outcome": ["quota" if s % 3 == 0 else "" for s in range(5000)],
            }))  # fmt: skip
            trial_ids = [uuid.uuid4() for _ in range(n)]
            stamps = pd.Series(created).map(datetime.isoformat)
            a_on_left = (votes["choice"].to_numpy() == "left") == (
                votes["preferred"].to_numpy() == "a"
            )
            vote_pair = pair_pk[votes["pair_id"].to_numpy()]
            vote_session = session_ids[session_index]
            copy_frame(raw, "annotation_trial", pd.DataFrame({
                "id": trial_ids, "session_id": vote_session, "pair_id": vote_pair,
                "kind": "label", "ordinal": ordinal, "a_on_left": np.where(a_on_left, "t", "f"),
                "issued_at": stamps, "lease_expires_at": stamps, "answered_at": stamps,
                "released": "f",
            }))  # fmt: skip
            copy_frame(raw, "annotation_vote", pd.DataFrame({
                "id": [uuid.uuid4() for _ in range(n)], "trial_id": trial_ids,
                "session_id": vote_session, "pair_id": vote_pair, "kind": "label",
                "choice": votes["choice"].to_numpy(), "preferred": votes["preferred"].to_numpy(),
                "late": "f", "response_ms": votes["response_ms"].to_numpy(), "client_info": "{}",
                "created_at": stamps,
            }))  # fmt: skip
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    return {"study": study, "votes": n, "pairs": len(pairs), "scenes": len(made),
            "images": len(images)}  # fmt: skip


WHEN = "2025-01-01 00:00:00+00"


def write_scores(slug: str, metrics: int, seed: int = 2) -> int:
    """``metrics`` NR metrics' scores of every image of the study (``metricNN``, version
    ``bench``; every other one lower-better), noisier with each metric. Returns how many
    images were scored."""
    from django.db import connection

    from annotation.models import Image

    ids = np.array(
        Image.objects.filter(scene__study__slug=slug).order_by("id").values_list("id", flat=True)
    )
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=len(ids))
    frames = []
    for m in range(metrics):
        lower = m % 2 == 1
        values = latent + rng.normal(size=len(ids)) * (0.1 + 2.9 * m / max(metrics - 1, 1))
        frames.append(pd.DataFrame({
            "metric": f"metric{m:02d}", "version": "bench", "image_id": ids,
            "reference_id": None, "value": -values if lower else values,
            "lower_better": "t" if lower else "f", "error": "", "seconds": 0,
            "created_at": WHEN,
        }))  # fmt: skip
    if frames:
        with connection.cursor() as cursor:
            copy_frame(cursor.cursor, "scoring_score", pd.concat(frames, ignore_index=True))
    return len(ids)


def start_server(
    name: str,
    port: int,
    data_dir: Path,
    *,
    workers: int = 2,
    threads: int = 4,
    settings: dict[str, str] | None = None,
):
    """gunicorn (``workers`` x ``threads``) on the scratch database ``name``, not in debug
    mode; ``settings``: more environment variables. Returns the process once
    ``/api/v1/ping`` answers (exits with the server's log if it does not in 60 s)."""
    env = {
        **os.environ,
        "DATABASE_URL": database_url(name),
        "IQA_DATA_DIR": str(data_dir),
        "DJANGO_DEBUG": "0",
        **(settings or {}),
    }
    command = [
        sys.executable, "-m", "gunicorn", "config.wsgi", "--bind", f"127.0.0.1:{port}",
        "--workers", str(workers), "--threads", str(threads), "--no-control-socket",
        "--backlog", "2048", "--keep-alive", "30", "--timeout", "120",
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
