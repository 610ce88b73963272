"""The page cursor of ``MemoryStore.list``: an opaque token for (created_at, id)."""

from __future__ import annotations

import base64
import uuid
from datetime import datetime

from services.errors import InvalidInput
from services.memories.records import Memory


def encode_cursor(memory: Memory) -> str:
    raw = f"{memory.created_at.isoformat()}|{memory.id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        created, memory_id = base64.urlsafe_b64decode(padded).decode().split("|")
        return datetime.fromisoformat(created), str(uuid.UUID(memory_id))
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput("cursor is not one this service issued", "cursor") from None
