"""scripts/supervise.sh: `make run`'s processes stop together, and Ctrl-C always returns."""

import os
import signal
import subprocess
import time

from tests.conftest import REPO, process_group

# A process that ignores SIGTERM, and a child of it that does too (trap '' is inherited).
STUBBORN = "trap '' TERM; sleep 300 & wait"


def as_from_a_terminal() -> None:
    """In the child before it runs bash: SIGINT at its default and unblocked, as a shell
    started from a terminal has it (a signal ignored or blocked here would be inherited,
    whatever an earlier test left in this process, and Ctrl-C could not reach the
    script's trap)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGINT])


def supervise(body: str, grace: int) -> subprocess.Popen:
    script = f"set -euo pipefail; STOP_GRACE={grace}; source scripts/supervise.sh; {body}"
    return subprocess.Popen(
        ["bash", "-c", script],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        preexec_fn=as_from_a_terminal,
    )


def wait_for_children(process: subprocess.Popen, count: int) -> None:
    deadline = time.monotonic() + 10
    while len(process_group(process.pid)) < count + 1:
        assert time.monotonic() < deadline, process_group(process.pid)
        time.sleep(0.05)


def finish(process: subprocess.Popen) -> tuple[int, str]:
    try:
        output, _ = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        raise
    time.sleep(0.2)
    return process.returncode, output


def test_ctrl_c_stops_every_process_and_exits_0():
    process = supervise(
        "supervise_start one sleep 300; supervise_start two sleep 300; supervise_wait", grace=60
    )
    wait_for_children(process, 2)
    os.killpg(process.pid, signal.SIGINT)
    status, output = finish(process)
    assert status == 0, output
    assert "Stopping one, two..." in output
    assert "did not stop" not in output
    assert process_group(process.pid) == []


def test_a_process_that_ignores_sigterm_is_killed_after_the_grace_period():
    process = supervise(
        f'supervise_start polite sleep 300; supervise_start stubborn bash -c "{STUBBORN}"; '
        "supervise_wait",
        grace=1,
    )
    wait_for_children(process, 3)  # polite, stubborn and stubborn's sleep
    os.killpg(process.pid, signal.SIGINT)
    status, output = finish(process)
    assert status == 0, output
    lines = [line for line in output.splitlines() if "did not stop" in line]
    assert len(lines) == 1, output
    assert lines[0].startswith("stubborn (pid ")
    assert lines[0].endswith("did not stop 1s after SIGTERM; killing it.")
    assert process_group(process.pid) == [], "the stubborn process or its child survived"


def test_a_process_that_dies_stops_the_others_and_its_status_is_the_exit_status():
    process = supervise(
        'supervise_start server sleep 300; supervise_start crasher bash -c "sleep 0.5; exit 3"; '
        "supervise_wait",
        grace=60,
    )
    status, output = finish(process)
    assert status == 3, output
    assert "A process exited (status 3); stopping the others." in output
    assert "Stopping server, crasher..." in output
    assert process_group(process.pid) == []


def test_ctrl_c_while_starting_stops_what_has_started():
    process = supervise("supervise_start early sleep 300; sleep 300", grace=60)
    wait_for_children(process, 2)  # early, and the script's own sleep
    os.killpg(process.pid, signal.SIGINT)
    status, output = finish(process)
    assert status == 0, output
    assert "Stopping early..." in output
    assert process_group(process.pid) == []
