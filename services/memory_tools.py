"""The memory tools the model may call, in chat and in reflection: each tool's spec (name,
description, JSON schema of its arguments) together with its implementation, the argument
check (``jsonschema``, from the spec), one ``execute`` and the tool step both callers run.

A call runs for ``ToolContext.user_id`` only; every store call is scoped to that user, so
another user's memory id is simply "not found". A refused call (malformed or invalid
arguments, unknown tool, a store validator's ``AppError``) gets ``{"ok": false, "error":
...}`` naming the problem and touches nothing. An unexpected failure (the store is down) is
a failed result too; each caller decides what it means for its run.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from jsonschema import Draft202012Validator, ValidationError

from services.errors import AppError
from services.llm.types import Message, ToolCall, ToolSpec
from services.memories.records import Memory
from services.memories.store import MemoryStore
from services.retrieval import retrieve

log = logging.getLogger(__name__)

MAX_SEARCH_RESULTS = 20
DEFAULT_SEARCH_RESULTS = 8
STORE_FAILED = "the memory store failed; try again later"

Op = Literal["ADD", "UPDATE", "DELETE"]


class ToolRefused(Exception):
    """A tool call that is answered with an error result (bad arguments, unknown tool)."""


@dataclass(frozen=True)
class ToolContext:
    """Who a call runs for and how its writes are recorded."""

    memories: MemoryStore
    user_id: str
    actor: str  # the history rows' actor: "tool" in chat, "reflection"
    request_id: str
    observed_at: datetime  # when new memories were said


@dataclass(frozen=True)
class ToolResult:
    """One call's answer to the model; ``change`` is the memory it wrote or deleted."""

    call: ToolCall
    content: str  # JSON for the model
    is_error: bool = False
    failed: bool = False  # not refused: the store raised something unexpected
    change: tuple[Op, Memory] | None = None

    @property
    def error(self) -> str | None:
        return json.loads(self.content).get("error") if self.is_error else None

    def message(self) -> Message:
        return Message("tool", self.content, tool_call_id=self.call.id, is_error=self.is_error)


Implementation = Callable[[ToolContext, dict[str, Any]], tuple[dict[str, Any], Any]]


@dataclass(frozen=True)
class MemoryTool:
    spec: ToolSpec
    run: Implementation  # (context, checked arguments) -> (payload, change or None)

    def check(self, call: ToolCall) -> dict[str, Any]:
        return check_arguments(call, self.spec)


# ---- implementations ------------------------------------------------------------------------


def upsert_memory(ctx: ToolContext, args: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    written = ctx.memories.upsert(
        ctx.user_id,
        args["content"],
        memory_id=args.get("memory_id"),
        context=args.get("context", ""),
        observed_at=ctx.observed_at,
        actor=ctx.actor,
        request_id=ctx.request_id,
    )
    change = (written.op, written.memory) if written.op in ("ADD", "UPDATE") else None
    return {"ok": True, "memory_id": written.memory.id, "op": written.op.lower()}, change


def delete_memory(ctx: ToolContext, args: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    memory = ctx.memories.delete(
        ctx.user_id, args["memory_id"], actor=ctx.actor, request_id=ctx.request_id
    )
    return {"ok": True, "memory_id": memory.id, "op": "delete"}, ("DELETE", memory)


def search_memory(ctx: ToolContext, args: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    """Facts and episodes through the retrieval pipeline, each hit with its kind (and, for
    an episode, who said it in which thread) so the model can tell them apart."""
    limit = int(args.get("limit", DEFAULT_SEARCH_RESULTS))
    hits = retrieve(ctx.memories, ctx.user_id, args["query"], limit=limit).hits
    found = [
        {
            "memory_id": hit.memory.id,
            "content": hit.memory.content,
            "context": hit.memory.context,
            "observed_at": hit.memory.observed_at.isoformat(),
            "kind": hit.memory.kind,
            **said_by(hit.memory),
        }
        for hit in hits
    ]
    return {"ok": True, "memories": found}, None


def said_by(memory: Memory) -> dict[str, Any]:
    if memory.kind != "episode":
        return {}
    return {
        "speaker": memory.metadata.get("speaker"),
        "thread_id": memory.metadata.get("thread_id"),
    }


def _object(properties: dict[str, Any], required: Sequence[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(required),
        "additionalProperties": False,
    }


UPSERT = MemoryTool(
    ToolSpec(
        "upsert_memory",
        "Save a new memory about the user, or replace the text of an existing one (pass its "
        "memory_id). Use for durable facts, preferences and plans.",
        _object(
            {
                "content": {"type": "string", "description": "The fact, one short sentence."},
                "context": {
                    "type": "string",
                    "description": "When/why it was said, e.g. 'said while planning a trip'.",
                },
                "memory_id": {
                    "type": "string",
                    "description": "Id of the memory to update; omit to add a new memory.",
                },
            },
            ["content", "context"],
        ),
    ),
    upsert_memory,
)
DELETE = MemoryTool(
    ToolSpec(
        "delete_memory",
        "Delete a memory by its id (when the user asks to forget it or it is no longer true).",
        _object(
            {"memory_id": {"type": "string", "description": "The memory's id."}}, ["memory_id"]
        ),
    ),
    delete_memory,
)
SEARCH = MemoryTool(
    ToolSpec(
        "search_memory",
        "Search the user's saved memories by meaning and words; returns the best matches.",
        _object(
            {
                "query": {"type": "string", "description": "What to look for."},
                "limit": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": MAX_SEARCH_RESULTS,
                    "default": DEFAULT_SEARCH_RESULTS,
                },
            },
            ["query"],
        ),
    ),
    search_memory,
)
MEMORY_TOOLS: Mapping[str, MemoryTool] = {t.spec.name: t for t in (UPSERT, DELETE, SEARCH)}
TOOL_SPECS: tuple[ToolSpec, ...] = tuple(t.spec for t in MEMORY_TOOLS.values())
_VALIDATORS = {name: Draft202012Validator(t.spec.parameters) for name, t in MEMORY_TOOLS.items()}


# ---- checking and running -------------------------------------------------------------------


def check_arguments(call: ToolCall, spec: ToolSpec) -> dict[str, Any]:
    """The call's arguments if they satisfy the spec's schema; ``null`` counts as absent
    (some models send every optional key). Raises ``ToolRefused`` naming each problem."""
    if call.arguments_error:
        raise ToolRefused(call.arguments_error)
    values = {name: value for name, value in call.arguments.items() if value is not None}
    validator = _VALIDATORS.get(spec.name) or Draft202012Validator(spec.parameters)
    problems = sorted(validator.iter_errors(values), key=lambda e: (list(e.path), e.message))
    if problems:
        raise ToolRefused("; ".join(_describe(problem) for problem in problems))
    return values


def _describe(problem: ValidationError) -> str:
    if problem.validator == "required":
        return f"missing required argument: {problem.message.split(' ', 1)[0].strip(chr(39))}"
    if problem.validator == "additionalProperties":
        extra = sorted(set(problem.instance) - set(problem.schema.get("properties", {})))
        return f"unknown argument(s): {', '.join(extra)}"
    where = ".".join(str(part) for part in problem.path) or "arguments"
    return f"{where}: {problem.message}"


def execute(
    ctx: ToolContext, call: ToolCall, *, logger: logging.Logger | None = None
) -> ToolResult:
    """Run one call for ``ctx.user_id``; never raises."""
    logger = logger or log
    try:
        tool = MEMORY_TOOLS.get(call.name)
        if tool is None:
            raise ToolRefused(f"unknown tool {call.name!r}")
        payload, change = tool.run(ctx, tool.check(call))
        return ToolResult(call, _json(payload), change=change)
    except (ToolRefused, AppError) as exc:
        message = exc.message if isinstance(exc, AppError) else str(exc)
        logger.info("%s tool call %s refused: %s", ctx.actor, call.name, message)
        return ToolResult(call, _json({"ok": False, "error": message}), is_error=True)
    except Exception:
        logger.exception("%s tool call %s failed", ctx.actor, call.name)
        failed = _json({"ok": False, "error": STORE_FAILED})
        return ToolResult(call, failed, is_error=True, failed=True)


def run_tool_step(
    ctx: ToolContext,
    calls: Sequence[ToolCall],
    messages: list[Message],
    *,
    logger: logging.Logger | None = None,
) -> Iterator[ToolResult]:
    """One tool step of a model conversation: execute the calls in order, each result
    appended to ``messages`` (for the next model call) and yielded as it is made."""
    for call in calls:
        result = execute(ctx, call, logger=logger)
        messages.append(result.message())
        yield result


def _json(payload: Mapping[str, Any]) -> str:
    return json.dumps(payload, ensure_ascii=False, default=str)
