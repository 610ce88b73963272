"""The SSE reader the providers use on the SDKs' HTTP responses, and how an error event
inside a 200 Anthropic stream is classified."""

from services.llm.anthropic_provider import stream_error
from services.llm.errors import ProviderUnavailableError, RateLimitedError, StreamInterruptedError
from services.llm.sse import sse_events


def test_events_split_anywhere_across_chunks():
    body = (
        b'event: message_start\r\ndata: {"a": 1}\r\n\r\n'
        b": a comment\n\nevent: ping\ndata: {}\n\n"
        b"data: line one\ndata:line two\nid: 7\n\n"
    )
    for size in (1, 2, 5, len(body)):
        chunks = [body[i : i + size] for i in range(0, len(body), size)]
        assert list(sse_events(chunks)) == [
            ("message_start", b'{"a": 1}'),
            ("ping", b"{}"),
            ("", b"line one\nline two"),
        ]


def test_an_event_cut_off_by_the_end_of_the_stream_is_dropped():
    assert list(sse_events([b"event: message_stop\ndata: {}\n"])) == []
    assert list(sse_events([b"event: a\n\ndata: x\n\n"])) == [("", b"x")]


def test_error_events_are_classified_by_type():
    def err(kind: str) -> bytes:
        return b'{"type": "error", "error": {"type": "%s", "message": "busy"}}' % kind.encode()

    assert isinstance(stream_error(err("overloaded_error"), "m"), ProviderUnavailableError)
    assert isinstance(stream_error(err("rate_limit_error"), "m"), RateLimitedError)
    other = stream_error(err("invalid_request_error"), "m")
    assert isinstance(other, StreamInterruptedError) and "busy" in str(other)
    garbled = stream_error(b"not json", "m")
    assert isinstance(garbled, StreamInterruptedError) and "not json" in str(garbled)
