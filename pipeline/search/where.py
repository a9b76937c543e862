"""`--where` conditions compiled to SQL over `objects o`: a fragment and its bound values.

Every value, and every attribute name, is a bound parameter; the SQL text holds only the
operators of pipeline.core.where.COMPARISONS and fixed column names. Nothing here can raise on a
row: attributes are compared as JSON, and text is cast to a number only once a pattern has
shown it is one.

- `class=cat` is `o.attributes @> '{"class": "cat"}'`, which the GIN index ix_objects_attributes
  serves; a bare number or true/false also matches that JSON value (`year=2025`: 2025 or "2025").
- `class!=cat` keeps images that have a class, and another one.
- `year>=2025` compares JSON numbers, and texts that are numbers, as numbers; `taken>=2026-01`
  compares texts byte by byte (COLLATE "C"), which orders ISO dates and times.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal

from pipeline.core.where import (
    ACCEPTED_FORMS,
    ORDERINGS,
    Condition,
    UnreadableWhere,
    Value,
    parse_where,
)
from pipeline.errors import UsageError

TEXT_COLUMNS = ("name", "locator", "content_type")
# A text that is a plain decimal number, short enough that its cast to numeric cannot fail.
NUMERIC_TEXT = r"'^\s*-?\d{1,30}(\.\d{1,30})?\s*$'"


class _Parameters:
    """Bound values, numbered on from the query's own."""

    def __init__(self, first: int) -> None:
        self.first = first
        self.values: list = []

    def bind(self, value) -> str:
        self.values.append(value)
        return f"${self.first + len(self.values) - 1}"


def where_sql(expressions: Sequence[str], first_parameter: int) -> tuple[str, list]:
    """The conditions of `expressions`, all of which must hold, as one SQL condition on `o`
    (objects) with placeholders from $`first_parameter` on, and the values to bind to them.
    No expressions: "true"."""
    parameters = _Parameters(first_parameter)
    try:
        parsed = [parse_where(e) for e in expressions]
    except UnreadableWhere as err:
        raise UsageError(str(err), hint=f"accepted: {ACCEPTED_FORMS}") from None
    conditions = [_condition_sql(c, parameters) for c in parsed]
    return " AND ".join(f"({c})" for c in conditions) or "true", parameters.values


def _condition_sql(condition: Condition, parameters: _Parameters) -> str:
    if condition.is_listed_field:
        return _column_sql(condition, parameters)
    if condition.operator in ("=", "in"):
        return _contains_any(condition.field, condition.values, parameters)
    key = f"{parameters.bind(condition.field)}::text"
    if condition.operator == "!=":
        equal = _contains_any(condition.field, condition.values, parameters)
        return f"o.attributes ? {key} AND NOT ({equal})"
    return _ordering_sql(key, condition.operator, condition.value, parameters)


def _contains_any(field: str, values: Sequence[Value], parameters: _Parameters) -> str:
    """Containment of {field: value} for each JSON value the values stand for (an OR of
    containments: each one an index condition)."""
    documents = [
        json.dumps({field: scalar}, ensure_ascii=False)
        for value in values
        for scalar in (
            [value.text] if value.json_scalar is None else [value.text, value.json_scalar]
        )
    ]
    return " OR ".join(f"o.attributes @> {parameters.bind(d)}::jsonb" for d in documents)


def _ordering_sql(key: str, operator: str, value: Value, parameters: _Parameters) -> str:
    attribute, as_text = f"(o.attributes -> {key})", f"(o.attributes ->> {key})"
    if isinstance(value.json_scalar, int | float) and not isinstance(value.json_scalar, bool):
        number = f"{parameters.bind(Decimal(value.text))}::numeric"
        # Nested CASEs: the cast is reached only for a JSON number or a text that is one.
        return (
            f"CASE jsonb_typeof({attribute}) "
            f"WHEN 'number' THEN {attribute}::numeric {operator} {number} "
            f"WHEN 'string' THEN CASE WHEN {as_text} ~ {NUMERIC_TEXT} "
            f"THEN {as_text}::numeric {operator} {number} END END"
        )
    text = f"{parameters.bind(value.text)}::text"
    return f"jsonb_typeof({attribute}) = 'string' AND {as_text} COLLATE \"C\" {operator} {text}"


def _column_sql(condition: Condition, parameters: _Parameters) -> str:
    column = f"o.{condition.field}"
    values = [_column_value(condition.field, v) for v in condition.values]
    if condition.field in TEXT_COLUMNS:
        cast = "text"
        if condition.operator in ORDERINGS:
            column += ' COLLATE "C"'
    else:
        cast = "bigint" if condition.field == "size" else "timestamptz"
    if condition.operator == "in":
        return f"{column} = ANY({parameters.bind(values)}::{cast}[])"
    operator = "<>" if condition.operator == "!=" else condition.operator
    return f"{column} {operator} {parameters.bind(values[0])}::{cast}"


def _column_value(field: str, value: Value):
    """The value as the column's type: size a whole number of bytes, updated_at an ISO date or
    time (UTC unless it says otherwise)."""
    if field == "size":
        if isinstance(value.json_scalar, int) and not isinstance(value.json_scalar, bool):
            return value.json_scalar
        raise UsageError(f"--where size compares to a whole number of bytes, not {value.text!r}")
    if field == "updated_at":
        try:
            moment = datetime.fromisoformat(value.text)
        except ValueError:
            raise UsageError(
                f"--where updated_at compares to an ISO date or time, not {value.text!r}",
                hint="e.g. updated_at>=2026-01-01 or updated_at<2026-03-01T12:00:00+01:00",
            ) from None
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return value.text
