"""The terminal chat (``python -m services.cli``): in this process on the configured
database, or against a running service over its HTTP API (``POST /v1/chat`` with
Server-Sent Events). Streams answers as they arrive; ``/memories``, ``/new`` and ``/quit``
work inside the chat. Logs go to stderr so they never mix into the conversation.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import urllib.parse
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Protocol, TextIO

from services.agent import Agent
from services.errors import AppError
from services.memories.store import MemoryStore

PROMPT = "you> "

Event = dict[str, Any]  # a turn event as JSON (TurnEvent.to_dict() or an SSE data line)


class ChatError(Exception):
    """The turn was refused before it started (bad input, unknown thread, bad key)."""


class Session(Protocol):
    """Where turns run: in this process, or in a running service."""

    def turn(self, thread_id: str | None, message: str) -> Iterator[Event]: ...

    def memories(self) -> list[Event]: ...


class LocalSession:
    def __init__(self, agent: Agent, memories: MemoryStore, user_id: str) -> None:
        self.agent = agent
        self.store = memories
        self.user_id = user_id

    def turn(self, thread_id: str | None, message: str) -> Iterator[Event]:
        try:
            events = self.agent.run_turn(self.user_id, thread_id, message)
        except AppError as error:
            raise ChatError(error.message) from None
        return (event.to_dict() for event in events)

    def memories(self) -> list[Event]:
        page = self.store.list(self.user_id, limit=200)
        return [{"id": m.id, "content": m.content, "context": m.context} for m in page.items]


class HttpSession:
    """The same two operations over the HTTP API (``--url``), as the key's user."""

    def __init__(self, base_url: str, key: str) -> None:
        target = urllib.parse.urlsplit(base_url)
        if target.scheme not in ("http", "https") or not target.hostname:
            raise SystemExit(f"--url must be http(s)://host[:port], not {base_url!r}")
        self.target = target
        self.headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

    def _request(self, method: str, path: str, body: Event | None = None):
        kind = http.client.HTTPSConnection if self.target.scheme == "https" else None
        connection = (kind or http.client.HTTPConnection)(
            self.target.hostname, self.target.port, timeout=120
        )
        connection.request(method, path, None if body is None else json.dumps(body), self.headers)
        response = connection.getresponse()
        if response.status >= 400:
            error = json.loads(response.read() or b"{}").get("error", {})
            connection.close()
            raise ChatError(error.get("message", response.reason))
        return connection, response

    def turn(self, thread_id: str | None, message: str) -> Iterator[Event]:
        body: Event = {"message": message, "stream": True}
        if thread_id:
            body["thread_id"] = thread_id
        connection, response = self._request("POST", "/v1/chat", body)
        return _sse_events(connection, response)

    def memories(self) -> list[Event]:
        connection, response = self._request("GET", "/v1/memories?limit=200")
        try:
            return json.loads(response.read())["items"]
        finally:
            connection.close()


def _sse_events(connection: http.client.HTTPConnection, response: Any) -> Iterator[Event]:
    try:
        while line := response.readline():
            if line.startswith(b"data: "):
                yield json.loads(line[len(b"data: ") :])
    finally:
        connection.close()


def run_chat(
    agent: Agent,
    memories: MemoryStore,
    user_id: str,
    lines: Iterable[str],
    out: TextIO,
    **options: Any,
) -> str | None:
    """The chat loop in-process (see ``chat_loop``)."""
    return chat_loop(LocalSession(agent, memories, user_id), lines, out, **options)


def chat_loop(
    session: Session,
    lines: Iterable[str],
    out: TextIO,
    *,
    thread_id: str | None = None,
    show_memories: bool = False,
    verbose: bool = False,
    prompt: str = PROMPT,
) -> str | None:
    """The chat loop over ``lines``; returns the last thread id."""
    out.write(prompt)
    out.flush()
    for raw in lines:
        line = raw.strip()
        if line in ("/quit", "/exit"):
            break
        if line == "/new":
            thread_id = None
            out.write("(new thread)\n")
        elif line:
            try:
                if line == "/memories":
                    print_memories(session.memories(), out)
                else:
                    events = session.turn(thread_id, line)
                    thread_id = print_turn(events, out, show_memories, verbose) or thread_id
            except ChatError as error:
                out.write(f"error: {error}\n")
        out.write(prompt)
        out.flush()
    out.write("\n")
    return thread_id


def print_turn(
    events: Iterable[Event], out: TextIO, show_memories: bool, verbose: bool
) -> str | None:
    """Write a turn's events as they arrive; returns the thread id from the final event."""
    out.write("bot> ")
    thread_id = None
    for event in events:
        kind = event["type"]
        if kind == "text":
            out.write(event["text"])
            out.flush()
        elif kind == "memory" and show_memories:
            out.write(
                f"\n  [memory {event['action']}: {event['content']} ({event['memory_id']})]\n"
            )
        elif kind == "tool" and verbose and not event["ok"]:
            out.write(f"\n  [tool {event['name']} refused: {event['error']}]\n")
        elif kind == "error":
            out.write(f"\n  [error: {event['message']}]")
        elif kind == "final":
            out.write("\n")
            if event["offline"]:
                out.write("  [offline: no language model answered]\n")
            if verbose:
                usage, latency = event["usage"], event["latency"]
                out.write(
                    f"  [{event['provider']}/{event['model']} in={usage['input_tokens']} "
                    f"out={usage['output_tokens']} ${event['cost_usd']:.5f} "
                    f"total={latency['total_ms']:.0f}ms llm={latency['llm_ms']:.0f}ms "
                    f"overhead={latency['overhead_ms']:.1f}ms thread={event['thread_id']}]\n"
                )
            thread_id = event["thread_id"]
    return thread_id


def print_memories(memories: list[Event], out: TextIO) -> None:
    if not memories:
        out.write("(no memories)\n")
    for memory in memories:
        context = f" — {memory['context']}" if memory.get("context") else ""
        out.write(f"  {memory['id']}  {memory['content']}{context}\n")


DESCRIPTION = """\
Chat with the agent in the terminal. It streams each answer as it arrives and remembers
what you tell it across chats.

Without --url the agent runs in this process, on the configured database (the embedded
one under DATA_DIR by default, shared with a running make run) and language models
(offline answers without an API key). With --url it talks to a running service as the
user of the API key.

Inside the chat:
  /memories   list what is saved about you
  /new        start a new conversation
  /quit       leave (so does Ctrl-D)"""

EPILOG = """\
Examples:
  .venv/bin/python -m services.cli chat --user alice
  .venv/bin/python -m services.cli chat --user alice --show-memories --verbose
  .venv/bin/python -m services.cli chat --url http://localhost:8080 --key mak_...
  .venv/bin/python -m services.cli memories --user alice

Warnings and errors go to stderr, never into the chat; LOG_LEVEL=INFO (or DEBUG) shows
more there."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    prompt = PROMPT if sys.stdin.isatty() else ""
    if args.command == "chat" and args.url:
        if not args.key:
            parser.error("--url needs --key (or MEMORY_AGENT_KEY)")
        return chat_over_http(args, prompt)
    if not args.user:
        parser.error("--user is required without --url")
    return run_locally(args, prompt)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m services.cli",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="{chat,memories}")
    chat = sub.add_parser(
        "chat",
        help="chat with the agent in the terminal",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    chat.add_argument("--user", help="the user id to chat as (in this process)")
    chat.add_argument("--url", help="chat with a running service at this URL instead")
    chat.add_argument(
        "--key",
        default=os.environ.get("MEMORY_AGENT_KEY"),
        help="API key for --url (default: $MEMORY_AGENT_KEY)",
    )
    chat.add_argument("--thread", default=None, help="continue this conversation (thread id)")
    chat.add_argument(
        "--show-memories", action="store_true", help="print each memory the agent saves"
    )
    chat.add_argument(
        "--verbose", action="store_true", help="print model, tokens, cost and time per answer"
    )
    mem = sub.add_parser(
        "memories",
        help="list a user's memories",
        description="List everything saved about a user, newest first.",
        epilog="Example:\n  .venv/bin/python -m services.cli memories --user alice",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    mem.add_argument("--user", required=True, help="the user id")
    return parser


def chat_over_http(args: argparse.Namespace, prompt: str) -> int:
    """``chat --url``: the chat loop against a running service, as the key's user."""
    try:
        chat_in_terminal(HttpSession(args.url, args.key), args, prompt)
    except (KeyboardInterrupt, OSError) as error:
        if isinstance(error, OSError):
            print(f"error: cannot reach {args.url}: {error}", file=sys.stderr)
            return 1
    return 0


def chat_in_terminal(session: Session, args: argparse.Namespace, prompt: str) -> None:
    chat_loop(
        session,
        sys.stdin,
        sys.stdout,
        thread_id=args.thread,
        show_memories=args.show_memories,
        verbose=args.verbose,
        prompt=prompt,
    )


def run_locally(args: argparse.Namespace, prompt: str) -> int:
    """``chat`` or ``memories`` in this process, on the configured database and models."""
    from services.config import Settings
    from services.runtime import build_runtime
    from services.telemetry import configure_logging

    settings = Settings.from_env()
    # The terminal is the conversation: below WARNING only when LOG_LEVEL asks for it.
    configure_logging(settings, level=os.environ.get("LOG_LEVEL") or "WARNING")
    runtime = build_runtime(settings)
    try:
        assert runtime.agent is not None
        session = LocalSession(runtime.agent, runtime.memories, args.user)
        if args.command == "memories":
            print_memories(session.memories(), sys.stdout)
            return 0
        chat_in_terminal(session, args, prompt)
    except KeyboardInterrupt:
        pass
    finally:
        runtime.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
