"""Errors the application raises on purpose; the HTTP layer maps each to a status code."""

from __future__ import annotations


class AppError(Exception):
    status = 500
    code = "internal"

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class InvalidInput(AppError):
    status = 400
    code = "invalid_input"


class NotFound(AppError):
    status = 404
    code = "not_found"


class Conflict(AppError):
    status = 409
    code = "version_conflict"


class Unauthorized(AppError):
    status = 401
    code = "unauthorized"


class Forbidden(AppError):
    status = 403
    code = "forbidden"


class RateLimited(AppError):
    status = 429
    code = "rate_limited"

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Unavailable(AppError):
    """A dependency is down: the request may succeed if retried after ``retry_after`` s."""

    status = 503
    code = "unavailable"
    retry_after = 1


class DatabaseUnavailable(Unavailable):
    """PostgreSQL cannot be reached, or the connection died under the request.

    Raised by services.db for connection-level failures only (refused, reset, timed out,
    server shutting down or starting up), never for an error in a statement.
    """

    code = "database_unavailable"

    def __init__(self, message: str = "the database is unavailable; retry shortly") -> None:
        super().__init__(message)
