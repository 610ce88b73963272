"""What a benchmark starts, it stops: temporary directories, the embedded PostgreSQL and
child processes are stopped and removed however the run ends (done, failed, Ctrl-C or
SIGTERM).

    with cleanup() as run:
        workdir = run.tempdir("service-bench-")
        server = run.postgres(workdir / "pg")
        gunicorn = run.process(subprocess.Popen([...]))
        ...

Things are undone in reverse order of starting: processes first, then PostgreSQL, then
the directories. An interrupted run exits with status 130 after cleaning up, without a
traceback.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from services.db import start_embedded_server


class Interrupted(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that every ``finally`` on the way out runs."""


class Run:
    def __init__(self, stack: ExitStack) -> None:
        self._stack = stack

    def tempdir(self, prefix: str) -> Path:
        path = Path(tempfile.mkdtemp(prefix=prefix))
        self._stack.callback(shutil.rmtree, path, ignore_errors=True)
        return path

    def postgres(self, pgdata: Path) -> Any:
        """The embedded PostgreSQL under ``pgdata``, stopped when the run ends."""
        server = start_embedded_server(pgdata)
        self._stack.callback(server.cleanup)
        return server

    def process(self, process: subprocess.Popen, grace_s: float = 30.0) -> subprocess.Popen:
        """A child process, asked to stop (SIGTERM) and waited for; killed if it hangs."""
        self._stack.callback(_stop, process, grace_s)
        return process

    def callback(self, undo: Callable[..., Any], *args: Any) -> None:
        self._stack.callback(undo, *args)


def _stop(process: subprocess.Popen, grace_s: float) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _raise_interrupted(signum: int, frame: Any) -> None:
    raise Interrupted()


@contextmanager
def cleanup() -> Iterator[Run]:
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_interrupted) if main else None
    interrupted = False
    try:
        with ExitStack() as stack:
            try:
                yield Run(stack)
            except KeyboardInterrupt:
                interrupted = True
                print("interrupted: stopping what the benchmark started", file=sys.stderr)
                # A second Ctrl-C must not cut the clean-up short.
                if main:
                    signal.signal(signal.SIGINT, signal.SIG_IGN)
                    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    finally:
        if main:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            signal.signal(signal.SIGTERM, previous)
    if interrupted:
        raise SystemExit(130)
