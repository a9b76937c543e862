"""What a search returns: matches, nearest first, or a query error that says what to do."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from pipeline.errors import ConfigError


class QueryError(ConfigError):
    """A query that cannot be answered as asked: no text and no image, k below 1, or a query image
    never listed, ambiguous, deleted, failed to embed or not in the space. Bad usage: exit 2."""

    exit_code = 2


class NotFound(QueryError):
    """The query names an object id that does not exist (the API answers 404)."""


@dataclass
class Match:
    object_id: int
    locator: str
    name: str
    distance: float
    score: float
    content_hash: str | None = None
    attributes: dict = field(default_factory=dict)
    content_type: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


class Matches(list):
    """Matches, nearest first. When there are none, `why_empty` says why in one line (an empty
    answer is never silent: an empty space, a --min-score above every match...)."""

    why_empty: str | None = None

    @classmethod
    def empty(cls, why: str) -> Matches:
        matches = cls()
        matches.why_empty = why
        return matches
