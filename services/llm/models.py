"""Which model to call and for how long: the ordered model list of one provider, which
remembers the models the API said do not exist, and the timeouts of one attempt."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from services.llm.errors import ModelNotFoundError
from services.llm.types import ChatRequest, StreamEvent


def attempt_timeouts(
    read: float, connect: float, time_left: float | None
) -> tuple[float, float] | None:
    """(read, connect) seconds for one call: the configured ones, cut to the caller's time
    left; None when the caller has no deadline (the client's own timeouts apply)."""
    if time_left is None:
        return None
    read = max(0.001, min(read, time_left))
    return read, min(connect, read)


class ModelChain:
    """An ordered list of models for one provider that remembers, for the life of the
    process (of this object), which models the API said do not exist."""

    def __init__(self, models: Sequence[str]) -> None:
        cleaned = [m.strip() for m in models if m and m.strip()]
        if not cleaned:
            raise ValueError("at least one model is required")
        self.models: tuple[str, ...] = tuple(dict.fromkeys(cleaned))
        self._retired: set[str] = set()
        self._lock = threading.Lock()

    def candidates(self, preferred: str | None = None) -> list[str]:
        """Models to try in order: ``preferred`` first (unless retired), then the list."""
        with self._lock:
            order = ([preferred] if preferred else []) + list(self.models)
            return [m for m in dict.fromkeys(order) if m not in self._retired]

    def retire(self, model: str) -> None:
        with self._lock:
            self._retired.add(model)

    @property
    def retired(self) -> frozenset[str]:
        with self._lock:
            return frozenset(self._retired)

    @property
    def current(self) -> str | None:
        live = self.candidates()
        return live[0] if live else None

    def stream(
        self,
        provider: str,
        request: ChatRequest,
        stream_model: Callable[[ChatRequest, str], Iterator[StreamEvent]],
        log: Any,
    ) -> Iterator[StreamEvent]:
        """Stream from the first live model; one the API says does not exist is retired
        (for the life of the process) and the next one is tried."""
        last: ModelNotFoundError | None = None
        for model in self.candidates(request.model):
            try:
                yield from stream_model(request, model)
                return
            except ModelNotFoundError as exc:
                self.retire(model)
                log.warning(
                    "%s model %s not found (%s); moving to the next configured model",
                    provider,
                    model,
                    exc,
                )
                last = exc
        raise ModelNotFoundError(
            f"no configured {provider} model is available (tried/retired: "
            f"{', '.join(sorted(self.retired)) or 'none'})"
            + (f"; last error: {last}" if last else ""),
            provider=provider,
            model=request.model or self.models[0],
            status=404,
        )
