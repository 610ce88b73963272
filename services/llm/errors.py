"""How a provider call fails: the ProviderError hierarchy (retryable or not), the
classification of an HTTP status into it, and the provider's Retry-After."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any


class ProviderError(Exception):
    """A provider call failed. ``retryable`` says whether trying again may help."""

    retryable = False

    def __init__(
        self,
        message: str,
        *,
        provider: str = "",
        model: str = "",
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.provider = provider
        self.model = model
        self.status = status
        self.retry_after = retry_after


class RetryableProviderError(ProviderError):
    """429, 5xx (incl. Anthropic's 529 overloaded), 408/409, timeouts, connection errors."""

    retryable = True


class RateLimitedError(RetryableProviderError):
    pass


class ProviderUnavailableError(RetryableProviderError):
    pass


class ProviderTimeoutError(RetryableProviderError):
    pass


class ProviderConnectionError(RetryableProviderError):
    pass


class StreamInterruptedError(RetryableProviderError):
    """The connection dropped or the stream ended without its terminating event."""


class ModelNotFoundError(ProviderError):
    """404 ``not_found_error``: the model is retired or unknown to this API."""


class FatalProviderError(ProviderError):
    """400/401/403 and other 4xx: retrying the same request will not help."""


class AuthenticationFailedError(FatalProviderError):
    pass


class BadRequestError(FatalProviderError):
    pass


class NoProviderAvailable(Exception):
    """No provider is configured, or every one failed (or is circuit-open) before
    producing output. ``errors`` holds the last error per provider tried."""

    def __init__(self, message: str, errors: Sequence[ProviderError] = ()) -> None:
        super().__init__(message)
        self.errors = list(errors)


def error_for_status(
    status: int,
    message: str,
    *,
    provider: str,
    model: str,
    error_type: str | None = None,
    error_code: str | None = None,
    retry_after: float | None = None,
) -> ProviderError:
    """Classify an HTTP error status into the hierarchy."""
    kw: dict[str, Any] = {"provider": provider, "model": model, "status": status}
    if status == 429:
        return RateLimitedError(message, retry_after=retry_after, **kw)
    if status >= 500 or status in (408, 409):
        return ProviderUnavailableError(message, retry_after=retry_after, **kw)
    if status == 404 and (
        error_type in (None, "not_found_error", "invalid_request_error")
        or error_code == "model_not_found"
    ):
        return ModelNotFoundError(message, **kw)
    if status in (401, 403):
        return AuthenticationFailedError(message, **kw)
    if status in (400, 413, 422):
        return BadRequestError(message, **kw)
    return FatalProviderError(message, **kw)


def parse_retry_after(
    headers: Mapping[str, str] | None, now: Callable[[], float] = time.time
) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``retry-after`` (seconds or HTTP date)."""
    if not headers:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now())
