"""Announces changed memory ids on Pub/Sub so the ``embed_memories`` function embeds them.

Configured by ``PUBSUB_TOPIC`` (``projects/P/topics/T``); with no topic nothing is
published and the in-process worker (or the periodic sweep) finds the rows anyway, since
the outbox is the table itself. google-cloud-pubsub is imported on first publish.
Publishing is called after the commit and never fails or slows the caller: the client
batches in the background and a failed publish is only logged (the sweep is the backstop).

Message: data = ``{"memory_ids": [...]}`` (JSON, UTF-8); attributes ``kind=memory-written``
and ``count``.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from typing import Any, Protocol

from services.config import Settings

log = logging.getLogger(__name__)

MESSAGE_KIND = "memory-written"
MAX_IDS_PER_MESSAGE = 500


class Publisher(Protocol):
    def publish(self, memory_ids: Sequence[str]) -> None: ...


def encode_message(memory_ids: Sequence[str]) -> tuple[bytes, dict[str, str]]:
    data = json.dumps({"memory_ids": list(memory_ids)}).encode("utf-8")
    return data, {"kind": MESSAGE_KIND, "count": str(len(memory_ids))}


class PubSubPublisher:
    def __init__(self, topic: str, client: Any | None = None) -> None:
        if not topic.startswith("projects/") or "/topics/" not in topic:
            raise ValueError("PUBSUB_TOPIC must look like projects/P/topics/T")
        self.topic = topic
        self._client = client
        self._lock = threading.Lock()

    def publish(self, memory_ids: Sequence[str]) -> None:
        ids = list(dict.fromkeys(memory_ids))
        try:
            client = self._get_client()
            for start in range(0, len(ids), MAX_IDS_PER_MESSAGE):
                data, attributes = encode_message(ids[start : start + MAX_IDS_PER_MESSAGE])
                future = client.publish(self.topic, data, **attributes)
                future.add_done_callback(_log_failure)
        except Exception:  # the periodic sweep embeds these rows anyway
            log.exception("could not publish %d changed memory ids", len(ids))

    def close(self) -> None:
        """Send what is still batched and stop the client's threads (process shutdown)."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.stop()

    def _get_client(self) -> Any:
        with self._lock:
            if self._client is None:
                from google.cloud import pubsub_v1

                self._client = pubsub_v1.PublisherClient()
            return self._client


def _log_failure(future: Any) -> None:
    error = future.exception()
    if error is not None:
        log.warning("publishing changed memory ids failed: %s", error)


def make_publisher(settings: Settings) -> Publisher | None:
    return PubSubPublisher(settings.pubsub_topic) if settings.pubsub_topic else None
