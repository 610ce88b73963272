"""A wire-level fake of the Pub/Sub Publisher gRPC service, for pointing the real
google-cloud-pubsub client at in tests (``PUBSUB_EMULATOR_HOST=127.0.0.1:PORT``).

Serves ``google.pubsub.v1.Publisher/Publish`` and ``GetTopic`` with the request and response
messages of ``google.pubsub_v1.types`` (proto-plus (de)serialisers). Topics listed in
``topics`` exist; publishing to another answers NOT_FOUND, as Pub/Sub does. Every Publish
request is recorded (:attr:`FakePubSubServer.requests`, one entry per RPC, so client-side
batching is visible); :meth:`FakePubSubServer.fail_next` makes the next N Publish calls fail
with a gRPC status (UNAVAILABLE is what a 503 from the service becomes).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from collections.abc import Iterable
from concurrent import futures
from dataclasses import dataclass

import grpc
from google.pubsub_v1.types import GetTopicRequest, PublishRequest, PublishResponse, Topic

SERVICE = "google.pubsub.v1.Publisher"


@dataclass(frozen=True)
class PublishedMessage:
    data: bytes
    attributes: dict[str, str]
    ordering_key: str
    message_id: str


@dataclass(frozen=True)
class PublishCall:
    topic: str
    messages: list[PublishedMessage]
    metadata: dict[str, str]
    received_at: float
    status: str  # "OK" or the gRPC status code name it was answered with


class FakePubSubServer:
    def __init__(self, topics: Iterable[str] = (), host: str = "127.0.0.1") -> None:
        self.topics = set(topics)
        self._requests: list[PublishCall] = []
        self._failures: deque[tuple[grpc.StatusCode, str]] = deque()
        self._always: tuple[grpc.StatusCode, str] | None = None
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        handler = grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "Publish": grpc.unary_unary_rpc_method_handler(
                    self._publish,
                    request_deserializer=PublishRequest.deserialize,
                    response_serializer=PublishResponse.serialize,
                ),
                "GetTopic": grpc.unary_unary_rpc_method_handler(
                    self._get_topic,
                    request_deserializer=GetTopicRequest.deserialize,
                    response_serializer=Topic.serialize,
                ),
            },
        )
        self._server.add_generic_rpc_handlers((handler,))
        self.port = self._server.add_insecure_port(f"{host}:0")
        self.host = f"{host}:{self.port}"

    # ---- lifecycle ------------------------------------------------------------------------

    def start(self) -> FakePubSubServer:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop(grace=None)

    def __enter__(self) -> FakePubSubServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- scripting and inspection -----------------------------------------------------------

    def fail_next(
        self,
        count: int = 1,
        code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE,
        message: str = "The service is currently unavailable (scripted).",
    ) -> None:
        with self._lock:
            self._failures.extend([(code, message)] * count)

    def fail_always(self, code: grpc.StatusCode | None, message: str = "scripted") -> None:
        with self._lock:
            self._always = None if code is None else (code, message)

    @property
    def requests(self) -> list[PublishCall]:
        with self._lock:
            return list(self._requests)

    def delivered(self) -> list[PublishedMessage]:
        """Messages of the Publish calls that succeeded, in the order they were accepted."""
        return [m for call in self.requests if call.status == "OK" for m in call.messages]

    def wait_for(self, messages: int, timeout: float = 10.0) -> list[PublishedMessage]:
        """Block until ``messages`` messages were accepted (or the timeout passes)."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while True:
                accepted = [
                    m for call in self._requests if call.status == "OK" for m in call.messages
                ]
                left = deadline - time.monotonic()
                if len(accepted) >= messages or left <= 0:
                    return accepted
                self._arrived.wait(left)

    def wait_for_calls(self, calls: int, timeout: float = 10.0) -> list[PublishCall]:
        deadline = time.monotonic() + timeout
        with self._arrived:
            while len(self._requests) < calls and time.monotonic() < deadline:
                self._arrived.wait(max(0.0, deadline - time.monotonic()))
            return list(self._requests)

    # ---- the service ----------------------------------------------------------------------

    def _publish(self, request: PublishRequest, context: grpc.ServicerContext) -> PublishResponse:
        with self._lock:
            failure = self._always or (self._failures.popleft() if self._failures else None)
            if failure is None and request.topic not in self.topics:
                failure = (
                    grpc.StatusCode.NOT_FOUND,
                    f"Resource not found (resource={request.topic})",
                )
            messages = [
                PublishedMessage(
                    bytes(m.data),
                    dict(m.attributes),
                    m.ordering_key,
                    "" if failure else str(next(self._ids)),
                )
                for m in request.messages
            ]
            self._requests.append(
                PublishCall(
                    request.topic,
                    messages,
                    {k: v for k, v in context.invocation_metadata() if isinstance(v, str)},
                    time.monotonic(),
                    failure[0].name if failure else "OK",
                )
            )
            self._arrived.notify_all()
        if failure is not None:
            context.abort(*failure)
        return PublishResponse(message_ids=[m.message_id for m in messages])

    def _get_topic(self, request: GetTopicRequest, context: grpc.ServicerContext) -> Topic:
        if request.topic not in self.topics:
            context.abort(grpc.StatusCode.NOT_FOUND, "Resource not found")
        return Topic(name=request.topic)
