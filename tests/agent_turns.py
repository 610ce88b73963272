"""A whole agent turn at once, for tests and benchmarks that check its outcome rather than
its event stream (the product streams every turn through ``Agent.run_turn``)."""

from __future__ import annotations

from dataclasses import dataclass

from services.agent import Agent, MemoryChanged, ToolUsed, TurnError, TurnFinished


@dataclass(frozen=True)
class TurnResult:
    text: str
    final: TurnFinished
    memory_changes: list[MemoryChanged]
    tools: list[ToolUsed]
    errors: list[TurnError]


def respond(
    agent: Agent,
    user_id: str,
    thread_id: str | None,
    message: str,
    *,
    request_id: str | None = None,
) -> TurnResult:
    """Run one turn to its end and sort its events by kind."""
    changes: list[MemoryChanged] = []
    tools: list[ToolUsed] = []
    errors: list[TurnError] = []
    final: TurnFinished | None = None
    for event in agent.run_turn(user_id, thread_id, message, request_id=request_id):
        if isinstance(event, MemoryChanged):
            changes.append(event)
        elif isinstance(event, ToolUsed):
            tools.append(event)
        elif isinstance(event, TurnError):
            errors.append(event)
        elif isinstance(event, TurnFinished):
            final = event
    assert final is not None, "a turn always ends with its final event"
    return TurnResult(final.text, final, changes, tools, errors)
