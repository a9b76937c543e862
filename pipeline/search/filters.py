"""Every filter a query takes, compiled to one SQL condition on `objects o` with bound values:
the `--where` language (pipeline.search.where) and the plain filters beside it — a name prefix,
a content type (exact, or `image/*` for a family), and a moment the object changed since."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from pipeline.search.where import where_sql


@dataclass(frozen=True)
class Filters:
    where: list[str] = field(default_factory=list)
    prefix: str | None = None
    content_type: str | None = None
    since: datetime | None = None

    def __bool__(self) -> bool:
        return bool(self.where or self.prefix or self.content_type or self.since)

    def sql(self, first_parameter: int) -> tuple[str, list]:
        """(condition, values): placeholders numbered from $`first_parameter`. No filter: "true"."""
        condition, values = where_sql(self.where, first_parameter)
        conditions = [] if condition == "true" else [condition]

        def bind(value) -> str:
            values.append(value)
            return f"${first_parameter + len(values) - 1}"

        if self.prefix:
            conditions.append(f"starts_with(o.name, {bind(self.prefix)}::text)")
        if self.content_type:
            family = self.content_type.removesuffix("*")
            if family != self.content_type:  # image/*: every type of the family
                conditions.append(f"starts_with(o.content_type, {bind(family)}::text)")
            else:
                conditions.append(f"o.content_type = {bind(self.content_type)}::text")
        if self.since is not None:
            since = self.since if self.since.tzinfo else self.since.replace(tzinfo=UTC)
            conditions.append(f"o.updated_at >= {bind(since)}::timestamptz")
        return " AND ".join(conditions) or "true", values

    def describe(self) -> str:
        """The filters as the CLI takes them, for a message about an empty answer."""
        said = [f"--where {w!r}" for w in self.where]
        if self.prefix:
            said.append(f"--prefix {self.prefix!r}")
        if self.content_type:
            said.append(f"--content-type {self.content_type!r}")
        if self.since is not None:
            said.append(f"--since {self.since.isoformat()}")
        return " and ".join(said)
