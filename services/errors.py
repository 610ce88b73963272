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
