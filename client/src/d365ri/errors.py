"""Errors a person can act on, and the exit codes they map to.

Exit codes (also in `d365ri --help`):
  0  success (Processed / Succeeded, or the command did its work)
  1  error (HTTP or local failure; the message says what to do)
  2  usage error (bad arguments or configuration)
  3  sign-in refused or not allowed (401 / 403)
  4  network unreachable after the retries
  10 the import ended with errors (ProcessedWithErrors / PartiallySucceeded)
  11 the import or export failed (PreProcessingError, PostProcessingFailed, Failed, Canceled)
  12 still running (not terminal when --wait gave up, or without --wait)
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_AUTH = 3
EXIT_NETWORK = 4
EXIT_WITH_ERRORS = 10
EXIT_FAILED = 11
EXIT_RUNNING = 12


class ClientError(Exception):
    """An error with a message for a person and the process exit code it maps to."""

    exit_code = EXIT_ERROR

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message + (f"\n  -> {self.hint}" if self.hint else "")


class UsageError(ClientError):
    exit_code = EXIT_USAGE


class ApiError(ClientError):
    """A reply the server meant: an HTTP status with its JSON error envelope ({"error":{"code","message"}})."""

    def __init__(
        self, status: int, code: str | None, message: str, *, hint: str | None = None, what: str = ""
    ) -> None:
        text = f"{what}: " if what else ""
        text += f"HTTP {status}" + (f" {code}" if code else "") + (f": {message}" if message else "")
        super().__init__(text, hint=hint)
        self.status = status
        self.code = code
        self.server_message = message

    @property
    def permanent(self) -> bool:
        """True when sending the same request again cannot succeed (a 4xx other than 408/429)."""
        return 400 <= self.status < 500 and self.status not in (408, 429)


class AuthError(ApiError):
    exit_code = EXIT_AUTH


class TooLargeError(ApiError):
    """413: the body is over the server's enqueue limit; the package API takes it."""


class NetworkError(ClientError):
    exit_code = EXIT_NETWORK


class SignInError(ClientError):
    """MSAL could not get a token (wrong secret, unknown client, consent missing, device code expired...)."""

    exit_code = EXIT_AUTH
