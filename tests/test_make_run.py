"""`make run`'s script on embedded defaults: SQLite, the file-system broker, a real worker."""

import http.cookiejar
import json
import os
import re
import signal
import subprocess
import time
import urllib.parse
import urllib.request
import warnings

import pytest

from tests.browser import finish_with_keyboard
from tests.conftest import (
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    REPO,
    embedded_env,
    free_port,
    process_group,
)

pytestmark = pytest.mark.slow


def post_json(url: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, json.load(response)


def fetch(opener, url: str, data: dict | None = None) -> tuple[int, str]:
    body = urllib.parse.urlencode(data).encode() if data is not None else None
    try:
        with opener.open(url, data=body, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_run_script_serves_the_demo_studies_and_the_admin_then_stops_on_ctrl_c(tmp_path, chromium):
    port = free_port()
    env = embedded_env(tmp_path / "data", PYTHONUNBUFFERED="1")
    ARTIFACTS.mkdir(exist_ok=True)
    log_path = ARTIFACTS / "make-run.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            ["bash", "scripts/run.sh", "127.0.0.1", str(port)],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    opener = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
    )
    try:
        deadline = time.monotonic() + 120
        while "The platform is running" not in log_path.read_text():
            assert process.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.5)
        output = log_path.read_text()
        assert f"Researchers: {base}/login/" in output
        # The login in the banner's last lines, the password as ensure_admin saved it.
        saved = (tmp_path / "data" / "admin_password").read_text().strip()
        login = output.index(f"  Log in as:     user admin, password {saved}\n")
        assert output.index("Annotator API: POST") < login  # after the URLs, not above them
        assert f"Studies:     {base}/studies/" in output
        assert f"Annotate:    {base}/annotate/demo/" in output
        assert f"Annotator API: POST {base}/api/v1/studies/demo/sessions" in output
        assert f"Admin:       {base}/admin/" in output

        # Anyone sees ok per service; the details are for staff (after the login below).
        status, body = fetch(opener, f"{base}/healthz")
        assert status == 200, body
        assert json.loads(body) == {
            "status": "ok",
            "database": {"ok": True},
            "broker": {"ok": True},
        }

        # The printed researcher login: / and /studies/ lead a logged-out visitor to it.
        status, login_page = fetch(opener, f"{base}/")
        assert status == 200
        assert "<h1>Log in</h1>" in login_page
        assert 'name="next" value="/studies/"' in login_page
        password = re.search(r"password: (\S+)", output).group(1)
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login_page).group(1)
        status, index = fetch(
            opener,
            f"{base}/login/",
            {
                "csrfmiddlewaretoken": token,
                "username": "admin",
                "password": password,
                "next": "/studies/",
            },
        )
        assert status == 200
        assert "demo-pairwise" in index
        status, body = fetch(opener, f"{base}/healthz")
        assert status == 200, body
        assert '"vendor": "sqlite"' in body
        assert "filesystem://" in body
        # The same session reaches the researcher API: the demo studies' pairs.
        status, body = fetch(opener, f"{base}/api/v1/studies")
        assert status == 200, body
        pairs = {study["slug"]: study["counts"]["pairs"] for study in json.loads(body)}
        assert pairs == {"demo": 44, "demo-pairwise": 110}

        status, admin = fetch(opener, f"{base}/admin/annotation/pair/")
        assert status == 200
        assert "160 pairs" in admin  # both demo studies: 154, and 6 gold pairs

        # Annotators work on the embedded defaults too (SQLite: the portable ORM path).
        status, session = post_json(
            f"{base}/api/v1/studies/demo/sessions", {"participant_id": "make-run"}
        )
        assert status == 201
        token = session["token"]
        for _ in range(3):
            with urllib.request.urlopen(f"{base}/api/v1/sessions/{token}/next-trial") as r:
                trial = json.load(r)
            with urllib.request.urlopen(f"{base}{trial['images']['left']}") as r:
                assert r.read(8) == b"\x89PNG\r\n\x1a\n"
            time.sleep(0.45)  # a look at it: sooner than min_response_ms would not count
            vote = {"trial_id": trial["trial_id"], "choice": "similar", "response_ms": 900}
            status, answer = post_json(f"{base}/api/v1/sessions/{token}/votes", vote)
            assert status == 201
        assert answer["progress"]["done"] == 3

        # The printed annotator URL: a study an annotator finishes with the keyboard alone.
        # (A browser of its own, closed before Ctrl-C, so no connection of it stays open.)
        browser = chromium.browser_type.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        page = context.new_page()
        page.goto(f"{base}/annotate/demo/")
        answered = finish_with_keyboard(page)
        assert len(answered) == 42  # 2 practice trials and the quota of 40
        code = page.inner_text("#completion-code")
        token = page.evaluate("JSON.parse(localStorage.getItem('iqa:demo:anonymous')).token")
        browser.close()
        with urllib.request.urlopen(f"{base}/api/v1/sessions/{token}") as r:
            finished = json.load(r)
        assert finished["completed"]
        assert finished["completion_code"] == code
        assert finished["progress"] == {"done": 42, "total": 42}

        # The worker beside the web server runs tasks from the file-system broker.
        check = subprocess.run(
            [".venv/bin/python", "manage.py", "verify_study", "demo", "--wait", "--timeout", "60"],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert check.returncode == 0, check.stderr
        assert "Checked: ok: 53" in check.stdout  # 48 images, 4 gold decoys, 1 worked example
    finally:
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C sends to the foreground group
        try:
            # scripts/supervise.sh kills what has not stopped 15 s after SIGTERM.
            returncode = process.wait(timeout=45)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            pytest.fail("Ctrl-C did not stop the platform:\n" + log_path.read_text()[-4000:])
    assert returncode == 0
    time.sleep(0.5)
    assert process_group(process.pid) == [], "processes survived Ctrl-C"
    log = log_path.read_text()
    assert "Stopping worker, import worker, beat, web server..." in log
    assert "A process exited (status 0)" not in log  # a normal stop says nothing alarming
    # A process that had to be killed is Celery's or gunicorn's slow shutdown, not a lost
    # vote; the run still ended, but the summary says which one it was.
    for line in log.splitlines():
        if "did not stop" in line:
            warnings.warn(line, stacklevel=1)
