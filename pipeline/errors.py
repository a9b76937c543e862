"""The small error hierarchy every stage raises and the CLI turns into one clear line.

Retryable and permanent errors are different classes: a scheduler may rerun a job that failed
with a `RetryableError` (exit code 75, EX_TEMPFAIL from sysexits.h, which schedulers and mail
systems read as "try again later"); a `PermanentError` needs a person (a wrong password, a missing
bucket) and exits 1.
"""

from __future__ import annotations

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_FINISHED_WITH_FAILURES = 3
EXIT_TEMPFAIL = 75


class ImgvecError(Exception):
    """Base class: `str(err)` is the one line the user sees; `hint` names the next step."""

    exit_code = EXIT_FAILED

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


class PermanentError(ImgvecError):
    """Retrying the same command will fail the same way until something is fixed."""


class RetryableError(ImgvecError):
    """A passing condition (server starting, network blip, quota): rerunning may succeed."""

    exit_code = EXIT_TEMPFAIL


class ConfigError(PermanentError):
    """Settings or arguments are wrong or incomplete."""


class UsageError(ConfigError):
    """The command cannot do what was asked, as asked: exit code 2, like a bad option."""

    exit_code = EXIT_USAGE


class DatabaseUnavailable(RetryableError):
    """The database could not be reached in time."""


class DatabaseError(PermanentError):
    """The database answered, but refused (authentication, missing pgvector, too old)."""
