"""The small error hierarchy every stage raises and the CLI turns into one clear line.

Retryable and permanent errors are different classes: a scheduler may rerun a job that failed
with a `RetryableError`; a `PermanentError` needs a person (a wrong password, a missing bucket).
"""

from __future__ import annotations


class ImgvecError(Exception):
    """Base class: `str(err)` is the one line the user sees; `hint` names the next step."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


class PermanentError(ImgvecError):
    """Retrying the same command will fail the same way until something is fixed."""


class RetryableError(ImgvecError):
    """A passing condition (server starting, network blip, quota): rerunning may succeed."""


class ConfigError(PermanentError):
    """Settings or arguments are wrong or incomplete."""


class DatabaseUnavailable(RetryableError):
    """The database could not be reached in time."""


class DatabaseError(PermanentError):
    """The database answered, but refused (authentication, missing pgvector, too old)."""
