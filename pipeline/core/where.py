"""The filter language of `--where`: one expression, one condition on an image. No I/O.

    class=cat   class!=cat   year>=2025   year<2026   class in (cat, dog)   name='a b.jpg'

A field is an attribute name (objects.attributes), or one of LISTED_FIELDS, which are the
listing's own columns. A value is bare (the rest of the expression, or up to the next comma in a
list) or quoted with ' or " (a quote inside is doubled: 'it''s'); quotes keep spaces, commas and
parentheses. A bare value that reads as a number or as true/false is also that JSON value; a
quoted one is text only (`year="2025"`). Conditions are compiled to SQL with every value a bound
parameter: pipeline.search.where.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# The listing's columns a filter may name; any other field is an attribute.
LISTED_FIELDS = ("name", "locator", "size", "content_type", "updated_at")
COMPARISONS = ("=", "!=", ">=", "<=", ">", "<")
ORDERINGS = (">", ">=", "<", "<=")

ACCEPTED_FORMS = (
    "FIELD=VALUE, FIELD!=VALUE, FIELD>=VALUE (also >, <, <=), FIELD in (VALUE, VALUE, ...); "
    "quote a value with spaces, commas or quotes: class='a b' or class in ('a,b', \"c d\"); "
    f"FIELD is an attribute or one of {', '.join(LISTED_FIELDS)}"
)

_FIELD = re.compile(r"\s*([A-Za-z_][\w.\-]*)\s*")
_OPERATOR = re.compile(r"(!=|>=|<=|=|>|<)|(in)\s*\(", re.IGNORECASE)
_NUMBER = re.compile(r"-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?")
_BARE_IN_LIST = re.compile(r"[^,()'\"]+")


class UnreadableWhere(ValueError):
    """An expression that is none of the accepted forms; `str()` says why (the search side makes
    it a usage error that shows ACCEPTED_FORMS)."""


@dataclass(frozen=True)
class Value:
    """A value as written (`text`), and the JSON number or boolean a bare one also stands for."""

    text: str
    json_scalar: int | float | bool | None = None


@dataclass(frozen=True)
class Condition:
    """`field operator value`; `in` holds several values, every other operator one."""

    field: str
    operator: str  # one of COMPARISONS, or "in"
    values: tuple[Value, ...]

    @property
    def is_listed_field(self) -> bool:
        return self.field in LISTED_FIELDS

    @property
    def value(self) -> Value:
        return self.values[0]


def parse_where(expression: str) -> Condition:
    """One condition from an expression; UnreadableWhere says why it is none."""
    field_match = _FIELD.match(expression)
    if not field_match:
        raise _unparsable(expression, "it does not start with a field name")
    field = field_match.group(1)
    rest = expression[field_match.end() :]
    operator_match = _OPERATOR.match(rest)
    if not operator_match:
        raise _unparsable(expression, f"no =, !=, >=, >, <=, < or in (...) after {field}")
    rest = rest[operator_match.end() :]
    if operator_match.group(2):
        return Condition(field, "in", _parse_list(expression, rest))
    return Condition(field, operator_match.group(1), (_parse_single(expression, rest),))


def _parse_single(expression: str, rest: str) -> Value:
    rest = rest.strip()
    if rest[:1] in ("'", '"'):
        text, end = _quoted(expression, rest, 0)
        if rest[end:].strip():
            raise _unparsable(expression, f"text after the quoted value: {rest[end:].strip()!r}")
        return Value(text)
    if not rest:
        raise _unparsable(expression, "no value")
    return _bare(rest)


def _parse_list(expression: str, rest: str) -> tuple[Value, ...]:
    values: list[Value] = []
    position = 0
    while True:
        while rest[position : position + 1].isspace():
            position += 1
        if rest[position : position + 1] in ("'", '"'):
            text, position = _quoted(expression, rest, position)
            values.append(Value(text))
        else:
            bare = _BARE_IN_LIST.match(rest, position)
            if not bare or not bare.group().strip():
                raise _unparsable(expression, "an empty value in the list")
            values.append(_bare(bare.group().strip()))
            position = bare.end()
        while rest[position : position + 1].isspace():
            position += 1
        separator = rest[position : position + 1]
        position += 1
        if separator == ")":
            break
        if separator != ",":
            raise _unparsable(expression, "the list is not closed by )")
    if rest[position:].strip():
        raise _unparsable(expression, f"text after the list: {rest[position:].strip()!r}")
    return tuple(values)


def _quoted(expression: str, text: str, start: int) -> tuple[str, int]:
    """The value quoted at text[start] (a doubled quote is one quote), and where it ends."""
    quote = text[start]
    parts: list[str] = []
    position = start + 1
    while True:
        end = text.find(quote, position)
        if end < 0:
            raise _unparsable(expression, f"the quote {quote} is not closed")
        parts.append(text[position:end])
        if text[end + 1 : end + 2] != quote:
            return "".join(parts), end + 1
        parts.append(quote)
        position = end + 2


def _bare(text: str) -> Value:
    """A bare value: a number or true/false is also that JSON value (it may be stored either way:
    a dataset column keeps 2025, a CSV sidecar "2025")."""
    if _NUMBER.fullmatch(text):
        number = float(text)
        return Value(
            text, int(text) if number.is_integer() and text.lstrip("-").isdigit() else number
        )
    if text.lower() in ("true", "false"):
        return Value(text, text.lower() == "true")
    return Value(text)


def _unparsable(expression: str, why: str) -> UnreadableWhere:
    return UnreadableWhere(f"cannot read --where {expression!r}: {why}")
