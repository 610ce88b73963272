"""The checks every layer applies to what a caller sends: ids, text, metadata, times.

Each raises ``InvalidInput`` (400) naming the field, or ``NotFound`` for an id that cannot
name anything; the numbers come from ``services.limits``.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import numpy as np

from services.errors import InvalidInput, NotFound
from services.limits import MAX_ID_CHARS, MAX_METADATA_BYTES, MAX_PAGE_LIMIT
from services.memories.records import KINDS, Kind


def check_id(value: Any, name: str) -> str:
    """User ids, namespaces and keys: non-empty text without control characters.

    They are only ever compared with ``=`` in parameterised SQL, so ``%``, ``_``, quotes
    and backslashes are ordinary characters that match nothing but themselves.
    """
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"{name} must be a non-empty string", name)
    if len(value) > MAX_ID_CHARS:
        raise InvalidInput(f"{name} is longer than {MAX_ID_CHARS} characters", name)
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise InvalidInput(f"{name} contains control characters", name)
    return value


def check_text(value: Any, name: str, max_chars: int) -> str:
    if not isinstance(value, str):
        raise InvalidInput(f"{name} must be a string", name)
    if len(value) > max_chars:
        raise InvalidInput(f"{name} is longer than {max_chars} characters", name)
    if "\x00" in value:
        raise InvalidInput(f"{name} contains a NUL character", name)
    return value


def check_content(value: Any, name: str, max_chars: int) -> str:
    value = check_text(value, name, max_chars).strip()
    if not value:
        raise InvalidInput(f"{name} must not be empty", name)
    return value


def check_query(query: Any, max_chars: int) -> str:
    """A search text (the ``q`` parameter): something to look for, of bounded length."""
    if not isinstance(query, str) or not query.strip():
        raise InvalidInput("query must be a non-empty string", "q")
    if len(query) > max_chars:
        raise InvalidInput(f"query is longer than {max_chars} characters", "q")
    return query


def check_metadata(value: Any, name: str = "metadata") -> None:
    if not isinstance(value, dict):
        raise InvalidInput(f"{name} must be a JSON object", name)
    try:
        encoded = json.dumps(value)
    except (TypeError, ValueError):
        raise InvalidInput(f"{name} must be JSON-serialisable", name) from None
    if len(encoded) > MAX_METADATA_BYTES or "\\u0000" in encoded:
        raise InvalidInput(f"{name} is larger than {MAX_METADATA_BYTES} bytes or has NUL", name)


def check_importance(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise InvalidInput("importance must be a number between 0 and 1", "importance")
    # The column is a 4-byte real: values below its range (1e-300, say) would be refused.
    return round(float(value), 6)


def check_version(value: Any) -> int | None:
    """An expected version for a conditional write, or None for an unconditional one."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise InvalidInput("version must be an integer", "version")
    return value


def check_time(value: Any, name: str) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):  # ISO 8601 from JSON; a zone-less time is taken as UTC
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise InvalidInput(f"{name} must be an ISO 8601 timestamp", name) from None
    if not isinstance(value, datetime):
        raise InvalidInput(f"{name} must be a timestamp", name)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def check_kind(value: Any, name: str = "kind") -> Kind:
    if value not in KINDS:
        raise InvalidInput(f"{name} must be one of {', '.join(KINDS)}", name)
    return value


def check_uuid(value: Any, name: str) -> str:
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        raise NotFound(f"{name} {value!r} not found", name) from None


def check_limit(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_PAGE_LIMIT:
        raise InvalidInput(f"limit must be an integer between 1 and {MAX_PAGE_LIMIT}", "limit")
    return value


def check_vector(vector: Any, dim: int, where: str) -> np.ndarray:
    array = np.asarray(vector, dtype=np.float32)
    if array.shape != (dim,):
        raise InvalidInput(
            f"{where}: embedding has shape {array.shape}, this deployment stores {dim} dims",
            "embedding",
        )
    if not np.all(np.isfinite(array)):
        raise InvalidInput(f"{where}: embedding has non-finite values", "embedding")
    return array
