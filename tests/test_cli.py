"""The terminal chat: in-process over real stores, and as a real process on stdin/stdout."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from services.agent import Agent
from services.cli import run_chat
from services.llm import AnthropicProvider, OfflineProvider, Router
from services.threads import ThreadStore
from services.usage import UsageRecorder
from tests.fakes.llm_server import FakeLLMServer, Reply, ToolUse
from tests.processes import unique_user

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def fake():
    with FakeLLMServer() as srv:
        yield srv


def test_chat_streams_answers_and_shows_memories(fake, store, pool):
    router = Router(
        [AnthropicProvider("k", base_url=fake.anthropic_base_url, timeout=5)],
        fallback=OfflineProvider(),
    )
    agent = Agent(store, ThreadStore(pool), router, UsageRecorder(pool))
    fake.script(
        "anthropic",
        Reply(
            text="Noted. ",
            tool_calls=[ToolUse("upsert_memory", {"content": "Owns a bike", "context": "chat"})],
        ),
        Reply(text="Enjoy the ride!"),
        Reply(text="Hello again."),
    )
    user = unique_user()
    out = io.StringIO()
    lines = ["I own a bike", "/memories", "/new", "hi", "/quit", "never read"]
    run_chat(agent, store, user, lines, out, show_memories=True, verbose=True, prompt="> ")
    text = out.getvalue()
    assert "bot> Noted. " in text and "Enjoy the ride!" in text
    assert "[memory written: Owns a bike" in text
    assert text.count("Owns a bike") == 2  # the memory event and the /memories listing
    assert "(new thread)" in text and "Hello again." in text
    assert "anthropic/claude-sonnet-4-5-20250929" in text
    assert len(fake.requests_for("anthropic")) == 3


def test_cli_process_chats_over_stdin(fake, database_url, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "ANTHROPIC_"))}
    env.update(
        DATABASE_URL=database_url,
        ANTHROPIC_API_KEY="test-key",
        ANTHROPIC_BASE_URL=fake.anthropic_base_url,
        LLM_PROVIDERS="anthropic",
        EMBED_IN_PROCESS="false",
        DATA_DIR=str(tmp_path),
        LOG_LEVEL="ERROR",
        PYTHONWARNINGS="ignore",
    )
    fake.reset()
    fake.script("anthropic", Reply(text="Hi from the fake model."))
    done = subprocess.run(
        [sys.executable, "-m", "services.cli", "chat", "--user", unique_user(), "--verbose"],
        input="hello\n",
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=90,
    )
    assert done.returncode == 0, done.stderr
    assert "bot> Hi from the fake model." in done.stdout
    assert "thread=" in done.stdout


def test_cli_chats_with_a_running_service_over_http(fake, database_url, pool, tmp_path):
    from services.auth import ApiKeyStore
    from tests.processes import Gunicorn

    server = Gunicorn(
        {
            "DATABASE_URL": database_url,
            "EMBED_IN_PROCESS": "false",
            "LLM_PROVIDERS": "anthropic",
            "ANTHROPIC_API_KEY": "test-key",
            "ANTHROPIC_BASE_URL": fake.anthropic_base_url,
        }
    )
    try:
        user = unique_user()
        _, key = ApiKeyStore(pool).create(user)
        fake.reset()
        fake.script(
            "anthropic",
            Reply(
                text="",
                tool_calls=[ToolUse("upsert_memory", {"content": "Owns a kayak", "context": "x"})],
            ),
            Reply(text="Noted, a kayak."),
        )
        done = subprocess.run(
            [sys.executable, "-m", "services.cli", "chat", "--url", server.url,
             "--show-memories"],
            input="I own a kayak\n/memories\n",
            capture_output=True,
            text=True,
            cwd=ROOT,
            env={**os.environ, "MEMORY_AGENT_KEY": key, "PYTHONWARNINGS": "ignore"},
            timeout=90,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("bot> ") and "Noted, a kayak." in done.stdout
        assert "[memory written: Owns a kayak" in done.stdout
        assert done.stdout.count("Owns a kayak") >= 2  # the event, then /memories
        bad = subprocess.run(
            [sys.executable, "-m", "services.cli", "chat", "--url", server.url, "--key", "nope"],
            input="hello\n", capture_output=True, text=True, cwd=ROOT, timeout=60,
        )  # fmt: skip
        assert "error:" in bad.stdout
    finally:
        server.stop()
