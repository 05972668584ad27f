"""Errors that carry a stable code and an HTTP status, so every layer reports failures the same way."""

from __future__ import annotations


class AppError(Exception):
    """A failure the caller can act on. `code` is stable and documented; `message` is for people."""

    status = 400
    code = "BadRequest"

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        if status:
            self.status = status


class ValidationError(AppError):
    status = 400
    code = "InvalidRequest"


class NotFoundError(AppError):
    status = 404
    code = "NotFound"


class ConflictError(AppError):
    status = 409
    code = "Conflict"


class TooLargeError(AppError):
    status = 413
    code = "PayloadTooLarge"


class UnsupportedFormatError(AppError):
    status = 415
    code = "UnsupportedFormat"


class AuthenticationError(AppError):
    status = 401
    code = "Unauthorized"


class ForbiddenError(AppError):
    status = 403
    code = "Forbidden"


class FormatError(Exception):
    """A file could not be read or transformed; the message ends PreProcessingError with this reason."""
