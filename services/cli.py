"""A terminal chat: ``python -m services.cli chat --user alice``, or against a running
service: ``python -m services.cli chat --url http://localhost:8080 --key mak_...``.

Without ``--url`` it runs the same agent the HTTP service runs, in-process, on the
configured database (embedded PostgreSQL by default, shared with a running ``make run``)
and language models (offline without keys). With ``--url`` it speaks the HTTP API
(``POST /v1/chat`` with Server-Sent Events) as the key's user. Streams the answer as it
arrives. ``--show-memories`` prints each memory the model writes, updates or
deletes; ``--verbose`` prints the model, tokens, cost and latency after each answer.
Inside the chat: ``/memories`` lists what is saved, ``/new`` starts a new thread,
``/quit`` (or end of input) leaves.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import urllib.parse
from collections.abc import Iterable, Sequence
from typing import TextIO

from services.agent import Agent, MemoryChanged, TextChunk, ToolUsed, TurnError, TurnFinished
from services.errors import AppError
from services.memories import MemoryStore

PROMPT = "you> "


def run_chat(
    agent: Agent,
    memories: MemoryStore,
    user_id: str,
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
        elif line == "/memories":
            list_memories(memories, user_id, out)
        elif line:
            thread_id = chat_turn(agent, user_id, thread_id, line, out, show_memories, verbose)
        out.write(prompt)
        out.flush()
    out.write("\n")
    return thread_id


def chat_turn(
    agent: Agent,
    user_id: str,
    thread_id: str | None,
    message: str,
    out: TextIO,
    show_memories: bool,
    verbose: bool,
) -> str | None:
    try:
        events = agent.run_turn(user_id, thread_id, message)
    except AppError as error:
        out.write(f"error: {error.message}\n")
        return thread_id
    out.write("bot> ")
    for event in events:
        if isinstance(event, TextChunk):
            out.write(event.text)
            out.flush()
        elif isinstance(event, MemoryChanged) and show_memories:
            out.write(f"\n  [memory {event.action}: {event.content} ({event.memory_id})]\n")
        elif isinstance(event, ToolUsed) and verbose and not event.ok:
            out.write(f"\n  [tool {event.name} refused: {event.error}]\n")
        elif isinstance(event, TurnError):
            out.write(f"\n  [error: {event.message}]")
        elif isinstance(event, TurnFinished):
            out.write("\n")
            if event.offline:
                out.write("  [offline: no language model answered]\n")
            if verbose:
                lat = event.latency
                out.write(
                    f"  [{event.provider}/{event.model} in={event.usage.input_tokens} "
                    f"out={event.usage.output_tokens} ${event.cost_usd:.5f} "
                    f"total={lat.total_ms:.0f}ms llm={lat.llm_ms:.0f}ms "
                    f"overhead={lat.overhead_ms:.1f}ms thread={event.thread_id}]\n"
                )
            thread_id = event.thread_id
    return thread_id


class HttpChat:
    """The chat loop's two operations over the HTTP API, for ``--url``."""

    def __init__(self, base_url: str, key: str) -> None:
        target = urllib.parse.urlsplit(base_url)
        if target.scheme not in ("http", "https") or not target.hostname:
            raise SystemExit(f"--url must be http(s)://host[:port], not {base_url!r}")
        self.target = target
        self.headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

    def _connection(self) -> http.client.HTTPConnection:
        kind = (
            http.client.HTTPSConnection
            if self.target.scheme == "https"
            else (http.client.HTTPConnection)
        )
        return kind(self.target.hostname, self.target.port, timeout=120)

    def turn(
        self,
        thread_id: str | None,
        message: str,
        out: TextIO,
        show_memories: bool,
        verbose: bool,
    ) -> str | None:
        body: dict[str, object] = {"message": message, "stream": True}
        if thread_id:
            body["thread_id"] = thread_id
        connection = self._connection()
        try:
            connection.request("POST", "/v1/chat", json.dumps(body), self.headers)
            response = connection.getresponse()
            if response.status != 200:
                error = json.loads(response.read() or b"{}").get("error", {})
                out.write(f"error: {error.get('message', response.reason)}\n")
                return thread_id
            out.write("bot> ")
            while line := response.readline():
                if not line.startswith(b"data: "):
                    continue
                event = json.loads(line[len(b"data: ") :])
                if event["type"] == "text":
                    out.write(event["text"])
                    out.flush()
                elif event["type"] == "memory" and show_memories:
                    out.write(
                        f"\n  [memory {event['action']}: {event['content']} "
                        f"({event['memory_id']})]\n"
                    )
                elif event["type"] == "error":
                    out.write(f"\n  [error: {event['message']}]")
                elif event["type"] == "final":
                    out.write("\n")
                    if event["offline"]:
                        out.write("  [offline: no language model answered]\n")
                    if verbose:
                        out.write(
                            f"  [{event['provider']}/{event['model']} "
                            f"${event['cost_usd']:.5f} thread={event['thread_id']}]\n"
                        )
                    thread_id = event["thread_id"]
        finally:
            connection.close()
        return thread_id

    def memories(self, out: TextIO) -> None:
        connection = self._connection()
        try:
            connection.request("GET", "/v1/memories?limit=200", headers=self.headers)
            page = json.loads(connection.getresponse().read())
        finally:
            connection.close()
        if not page.get("items"):
            out.write("(no memories)\n")
        for memory in page.get("items", []):
            context = f" — {memory['context']}" if memory.get("context") else ""
            out.write(f"  {memory['id']}  {memory['content']}{context}\n")


def run_http_chat(
    client: HttpChat,
    lines: Iterable[str],
    out: TextIO,
    *,
    thread_id: str | None = None,
    show_memories: bool = False,
    verbose: bool = False,
    prompt: str = PROMPT,
) -> str | None:
    out.write(prompt)
    out.flush()
    for raw in lines:
        line = raw.strip()
        if line in ("/quit", "/exit"):
            break
        if line == "/new":
            thread_id = None
        elif line == "/memories":
            client.memories(out)
        elif line:
            thread_id = client.turn(thread_id, line, out, show_memories, verbose)
        out.write(prompt)
        out.flush()
    return thread_id


def list_memories(memories: MemoryStore, user_id: str, out: TextIO) -> None:
    page = memories.list(user_id, limit=200)
    if not page.items:
        out.write("(no memories)\n")
    for memory in page.items:
        context = f" — {memory.context}" if memory.context else ""
        out.write(f"  {memory.id}  {memory.content}{context}\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.cli", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    chat = sub.add_parser("chat", help="chat with the agent in the terminal")
    chat.add_argument("--user", help="the user id to chat as (in-process)")
    chat.add_argument("--url", help="chat with a running service at this URL instead")
    chat.add_argument("--key", default=os.environ.get("MEMORY_AGENT_KEY"), help="API key for --url")
    chat.add_argument("--thread", default=None, help="continue this thread")
    chat.add_argument("--show-memories", action="store_true", help="print memory changes")
    chat.add_argument("--verbose", action="store_true", help="print model, cost and latency")
    mem = sub.add_parser("memories", help="list a user's memories")
    mem.add_argument("--user", required=True)
    args = parser.parse_args(argv)
    interactive = sys.stdin.isatty()
    if args.command == "chat" and args.url:
        if not args.key:
            parser.error("--url needs --key (or MEMORY_AGENT_KEY)")
        try:
            run_http_chat(
                HttpChat(args.url, args.key),
                sys.stdin,
                sys.stdout,
                thread_id=args.thread,
                show_memories=args.show_memories,
                verbose=args.verbose,
                prompt=PROMPT if interactive else "",
            )
        except (KeyboardInterrupt, OSError) as error:
            if isinstance(error, OSError):
                print(f"error: cannot reach {args.url}: {error}", file=sys.stderr)
                return 1
        return 0
    if not args.user:
        parser.error("--user is required without --url")

    import logging

    from services.config import Settings
    from services.runtime import build_runtime

    settings = Settings.from_env()
    logging.basicConfig(level=settings.log_level, stream=sys.stderr)
    runtime = build_runtime(settings)
    try:
        if args.command == "memories":
            list_memories(runtime.memories, args.user, sys.stdout)
            return 0
        assert runtime.agent is not None
        run_chat(
            runtime.agent,
            runtime.memories,
            args.user,
            sys.stdin,
            sys.stdout,
            thread_id=args.thread,
            show_memories=args.show_memories,
            verbose=args.verbose,
            prompt=PROMPT if interactive else "",
        )
    except KeyboardInterrupt:
        pass
    finally:
        runtime.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
