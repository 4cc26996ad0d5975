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
    .venv/bin/python bench/dashboard.py --smoke   # seconds: what the suite runs

It needs PostgreSQL on 127.0.0.1:5432 and Redis on 127.0.0.1:6379 (``make services``).
"""

import argparse
import http.client
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

sys.path.insert(0, str(REPO / "bench"))
from _synthetic import PASSWORD, USER, database_url, recreate, start_server, write_study  # noqa: E402

SLUG = "bench-dashboard"


class Browser:
    """One keep-alive connection with the session's cookies."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.cookies: dict[str, str] = {}
        self.headers: dict[str, str] = {}  # of the last response
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
        self.headers = {name.lower(): value for name, value in response.getheaders()}
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", default="iqa_bench_dashboard")
    parser.add_argument("--requests", type=int, default=200, help="per URL")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--redis-db", type=int, default=8, help="the cache's Redis database")
    parser.add_argument("--reuse", action="store_true", help="keep the database of a last run")
    parser.add_argument("--scenes", type=int, default=1818, help="scenes of 11 images")
    parser.add_argument(
        "--smoke", action="store_true", help="20 scenes, 5 requests per URL: seconds"
    )
    args = parser.parse_args()
    if args.smoke:
        args.scenes, args.requests, args.workers = 20, 5, 1

    os.environ["DATABASE_URL"] = database_url(args.database)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    if not args.reuse:
        recreate(args.database)
    import django

    django.setup()
    started = time.perf_counter()
    if not args.reuse:
        sizes = write_study(slug=SLUG, scenes=args.scenes, seed=1)
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
        server = start_server(
            args.database, port, Path(tmp), workers=args.workers,
            settings={"IQA_CACHE_URL": f"redis://127.0.0.1:6379/{args.redis_db}"},
        )  # fmt: skip
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
