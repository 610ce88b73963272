"""Progress of long commands: a tqdm bar on a terminal, periodic lines otherwise; and the
by-hand jobs (``python -m services.jobs embed|retention``) as real processes."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

from services.progress import reporter
from tests.processes import unique_user

ROOT = Path(__file__).resolve().parent.parent


class Terminal(io.StringIO):
    """A text stream that says it is a terminal, as sys.stderr does in a shell."""

    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_a_bar_that_reaches_the_total():
    out = Terminal()
    with reporter("embedding", unit="memories", stream=out) as progress:
        for done in range(0, 501, 100):
            progress(done, 500)
    text = out.getvalue()
    assert "embedding" in text and "500/500" in text and "100%" in text
    assert "\r" in text  # redrawn in place, not one line per update


def test_elsewhere_a_line_every_few_seconds_and_one_at_the_end():
    out = io.StringIO()
    now = [0.0]
    with reporter("loading", total=1000, stream=out, every_s=10, clock=lambda: now[0]) as progress:
        for done in range(0, 1001, 100):
            now[0] += 3.0
            progress(done, None)
    lines = out.getvalue().splitlines()
    assert lines == [
        "loading: 300/1000 rows (30%), 25 rows/s, 12 s",
        "loading: 700/1000 rows (70%), 29 rows/s, 24 s",
        "loading: 1000/1000 rows (100%), 30 rows/s, 33 s",
    ]


def test_quick_or_empty_work_prints_nothing():
    for stream in (io.StringIO(), Terminal()):
        with reporter("schema changes", stream=stream) as progress:
            progress(0, 0)
        assert stream.getvalue() == ""
    out = io.StringIO()
    with reporter("schema changes", stream=out, every_s=10) as progress:
        progress(3, 3)
    assert out.getvalue() == ""


def run_job(database_url: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "EMBEDDING_"))}
    env.update(DATABASE_URL=database_url, DATA_DIR=str(tmp_path))
    env.update(EMBED_IN_PROCESS="false", LLM_PROVIDERS="", PYTHONWARNINGS="ignore")
    return subprocess.run(
        [sys.executable, "-m", "services.jobs", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=120,
    )


def test_embed_job_embeds_every_pending_memory(database_url, store, pool, tmp_path):
    user = unique_user()  # the store has no worker: its writes stay pending
    for text in ("Plays the cello", "Lives by the sea", "Allergic to cats"):
        store.upsert(user, text)
    with pool.transaction() as tx:
        assert tx.value("SELECT count(*) FROM memories WHERE embedding IS NULL") >= 3
    done = run_job(database_url, tmp_path, "embed")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("embedded ") and "memories" in done.stdout
    with pool.transaction() as tx:
        assert tx.value("SELECT count(*) FROM memories WHERE embedding IS NULL") == 0


def test_retention_job_sweeps_every_user_and_says_so(database_url, pool, tmp_path):
    done = run_job(database_url, tmp_path, "retention", "--pause-ratio", "0")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["complete"] is True
    with pool.transaction() as tx:
        users = tx.value(
            "SELECT count(*) FROM (SELECT user_id FROM memories UNION "
            "SELECT user_id FROM threads) AS u"
        )
    assert report["users"] == users
