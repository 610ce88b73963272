"""The offline provider: answers without any language model, from the retrieved memories.

Used when no provider is configured (no API key, no base URL) and as the router's last
fallback when every configured provider failed or none answered before the deadline. It
says plainly that no language model is available, lists the memories retrieved for the
message, calls no tools and costs nothing. Its ``Done`` event names provider and model
``offline`` so callers can label the response.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

from .types import ChatRequest, Done, StreamEvent, TextDelta, Usage

PROVIDER = "offline"
Reason = Literal["not_configured", "unavailable", "timed_out"]

_HEADLINES: dict[str, str] = {
    "not_configured": (
        "No language model is configured for this service (no API key is set), so this is "
        "an automatic answer, not one from an AI model."
    ),
    "unavailable": (
        "No language model is available right now (every configured provider failed), so "
        "this is an automatic answer, not one from an AI model."
    ),
    "timed_out": (
        "The language model did not answer in time, so this is an automatic answer, not one "
        "from an AI model."
    ),
}
MAX_LISTED = 5


def offline_answer(request: ChatRequest, reason: Reason) -> str:
    """The whole offline answer: a plain statement, then the memories that may be relevant."""
    lines = [_HEADLINES[reason]]
    memories = [m for m in request.memories if m.strip()][:MAX_LISTED]
    if memories:
        lines.append("")
        lines.append("What I have saved that may be relevant to your message:")
        lines += [f"- {memory}" for memory in memories]
    else:
        lines.append("I have no saved memories that match your message.")
    lines.append("")
    lines.append(
        "The conversation is kept, but no new facts are saved until a language model is available."
    )
    return "\n".join(lines)


class OfflineProvider:
    """A :class:`~services.llm.types.ChatProvider`-like fallback; ``reason`` picks the
    wording (``not_configured``, ``unavailable`` or ``timed_out``)."""

    name = PROVIDER

    def stream(self, request: ChatRequest, reason: Reason = "unavailable") -> Iterator[StreamEvent]:
        text = offline_answer(request, reason)
        for line in text.splitlines(keepends=True):
            yield TextDelta(line)
        yield Done(usage=Usage(), stop_reason="end_turn", model=PROVIDER, provider=PROVIDER)
