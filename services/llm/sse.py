"""Server-Sent Events read straight off a provider SDK's HTTP response: ``(event, data)``
pairs, so a provider turns each event's JSON into plain dicts instead of the SDK building
a typed model object per event (most of the per-turn CPU of reading a stream).

The request, its retries, authentication and HTTP status errors stay the SDK's: this reads
only the body of a response the SDK has already accepted.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator


def sse_events(chunks: Iterable[bytes]) -> Iterator[tuple[str, bytes]]:
    """``(event name, data)`` per event in a byte stream (the WHATWG SSE rules: ``data:``
    lines joined by newlines, comments and unknown fields ignored, an event without a
    closing blank line at the end of the stream dropped)."""
    event = ""
    data: list[bytes] = []
    pending = b""
    for chunk in chunks:
        lines = (pending + chunk).split(b"\n")
        pending = lines.pop()
        for line in lines:
            if line.endswith(b"\r"):
                line = line[:-1]
            if not line:
                if data:
                    yield event, b"\n".join(data)
                event, data = "", []
                continue
            name, _, value = line.partition(b":")
            if value.startswith(b" "):
                value = value[1:]
            if name == b"data":
                data.append(value)
            elif name == b"event":
                event = value.decode()
