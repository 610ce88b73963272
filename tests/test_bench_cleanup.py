"""Interrupting a benchmark stops everything it started and removes its temporary files:
``python -m bench.summary --run`` as a real process, given SIGINT while its load test runs
(the summary passes the stop on to the benchmark, which stops gunicorn, the fake model and
the embedded PostgreSQL, and deletes its working directory)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parent.parent


def alive(pid: int) -> bool:
    """Running, not merely a zombie waiting for a parent (the daemonised postmaster's is
    init, which in a container may never reap it)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_for_children(pid: int, names: tuple[str, ...], timeout: float) -> list:
    """The process's descendants once each of ``names`` is among their command lines."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        children = psutil.Process(pid).children(recursive=True)
        lines = " ".join(" ".join(p.cmdline()) for p in children if alive(p.pid))
        if all(name in lines for name in names):
            return children
        time.sleep(0.2)
    raise AssertionError(f"never saw {names} among the children of {pid}")


@pytest.fixture
def tmp_path():
    """A fresh TMPDIR the embedded server's own system user can reach (pytest's is 0700)."""
    path = Path(tempfile.mkdtemp(prefix="bench-cleanup-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_ctrl_c_during_a_load_test_leaves_no_process_or_directory_behind(tmp_path):
    # A short grace period: gunicorn would otherwise wait 25 s for the open streams.
    env = {
        **os.environ,
        "TMPDIR": str(tmp_path),
        "PYTHONWARNINGS": "ignore",
        "GRACEFUL_TIMEOUT": "2",
    }
    env.pop("XDG_RUNTIME_DIR", None)
    summary = subprocess.Popen(
        [sys.executable, "-m", "bench.summary", "--run"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A shell without job control starts background jobs with SIGINT ignored, and a
        # Python started so keeps ignoring it; a supervisor's child would not.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        # Everything is up once gunicorn runs: the database, the fake model, the server.
        started = wait_for_children(
            summary.pid, ("bench.service_bench", "llm_server", "gunicorn"), timeout=120
        )
        [workdir] = tmp_path.glob("service-bench-*")
        postmaster = int((workdir / "pg" / "postmaster.pid").read_text().split()[0])
        assert alive(postmaster)

        summary.send_signal(signal.SIGINT)  # to the summary alone, as a supervisor would
        try:
            _, err = summary.communicate(timeout=180)
        except subprocess.TimeoutExpired:
            summary.kill()
            _, err = summary.communicate()
            raise AssertionError("no clean exit 180 s after Ctrl-C:\n" + err[-3000:]) from None
    finally:
        if summary.poll() is None:
            summary.kill()
    assert summary.returncode == 130, err[-2000:]
    assert "Traceback" not in err, err[-2000:]
    assert "interrupted: stopping what the benchmark started" in err
    assert not workdir.exists()
    assert not [p.pid for p in started if alive(p.pid)]
    # pg_ctl stop returns once the pid file is gone; the process exits a moment later.
    deadline = time.monotonic() + 10
    while alive(postmaster) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(postmaster)
    assert not list(tmp_path.glob("service-bench-*"))
