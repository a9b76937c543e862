"""The `--where` language: parsing into conditions (no I/O), and its compilation to SQL in which
every value is a bound parameter. Filtering real rows: tests/test_search.py."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest

from pipeline.core.where import Condition, UnreadableWhere, Value, parse_where
from pipeline.errors import EXIT_USAGE, UsageError
from pipeline.search.where import where_sql


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("class=cat", Condition("class", "=", (Value("cat"),))),
        (" class = cat ", Condition("class", "=", (Value("cat"),))),
        ("class!=cat", Condition("class", "!=", (Value("cat"),))),
        ("year>=2025", Condition("year", ">=", (Value("2025", 2025),))),
        ("year>2025", Condition("year", ">", (Value("2025", 2025),))),
        ("score<0.5", Condition("score", "<", (Value("0.5", 0.5),))),
        ("year<=-3", Condition("year", "<=", (Value("-3", -3),))),
        ("taken>=2026-01-01", Condition("taken", ">=", (Value("2026-01-01"),))),
        ("flag=True", Condition("flag", "=", (Value("True", True),))),
        ('year="2025"', Condition("year", "=", (Value("2025"),))),  # quoted: text only
        ("caption=a red car", Condition("caption", "=", (Value("a red car"),))),
        ("name='a b, c.jpg'", Condition("name", "=", (Value("a b, c.jpg"),))),
        ("note='it''s'", Condition("note", "=", (Value("it's"),))),
        ('note="say ""hi"""', Condition("note", "=", (Value('say "hi"'),))),
        ("note='a=b'", Condition("note", "=", (Value("a=b"),))),
        (
            "class in (cat, dog)",
            Condition("class", "in", (Value("cat"), Value("dog"))),
        ),
        (
            "class IN ('a b', \"c,d\", 'e''f', 3)",
            Condition("class", "in", (Value("a b"), Value("c,d"), Value("e'f"), Value("3", 3))),
        ),
        ("class in(cat)", Condition("class", "in", (Value("cat"),))),
        ("meta.split-name=train", Condition("meta.split-name", "=", (Value("train"),))),
    ],
)
def test_expressions_parse_into_conditions(expression, expected):
    assert parse_where(expression) == expected


def test_listed_fields_are_columns_and_other_fields_attributes():
    assert parse_where("size>10").is_listed_field
    assert parse_where("content_type=image/png").is_listed_field
    assert not parse_where("class=cat").is_listed_field


@pytest.mark.parametrize(
    ("expression", "why"),
    [
        ("", "does not start with a field name"),
        ("=cat", "does not start with a field name"),
        ("class", "no =, !=, >=, >, <=, < or in (...) after class"),
        ("class ~ cat", "no =, !=, >=, >, <=, < or in (...)"),
        ("class=", "no value"),
        ("class='cat", "the quote ' is not closed"),
        ("class='cat' dog", "text after the quoted value"),
        ("class in (cat, dog", "the list is not closed by )"),
        ("class in (cat,, dog)", "an empty value in the list"),
        ("class in ()", "an empty value in the list"),
        ("class in (cat) extra", "text after the list"),
    ],
)
def test_an_unreadable_expression_is_a_usage_error_showing_the_forms(expression, why):
    with pytest.raises(UnreadableWhere, match=re.escape(why)):
        parse_where(expression)
    with pytest.raises(UsageError) as raised:  # as the search side says it
        where_sql(["class=cat", expression], first_parameter=1)
    assert why in str(raised.value)
    assert raised.value.exit_code == EXIT_USAGE
    assert "FIELD=VALUE" in raised.value.hint and "FIELD in (VALUE" in raised.value.hint


HOSTILE = ["'); DROP TABLE objects; --", "100%", "a'b\"c", "$1", "x) OR true OR (y"]


@pytest.mark.parametrize("value", HOSTILE)
def test_values_and_attribute_names_never_reach_the_sql_text(value):
    quoted = "'" + value.replace("'", "''") + "'"
    for expression in (
        f"class={quoted}",
        f"class!={quoted}",
        f"class>={quoted}",
        f"class in ({quoted}, x)",
        f"name={quoted}",
        f"locator in ({quoted})",
    ):
        sql, values = where_sql([expression], first_parameter=6)
        assert value not in sql and "DROP" not in sql and "%" not in sql
        # Carried as a value: as it is, or inside the JSON document of a containment.
        escaped = json.dumps(value)[1:-1]
        carried = [str(item) for v in values for item in (v if isinstance(v, list) else [v])]
        assert any(value in v or escaped in v for v in carried), (expression, values)


def test_placeholders_are_numbered_on_from_the_querys_own():
    sql, values = where_sql(["class=cat", "year>=2025", "size<10"], first_parameter=6)
    assert sql == (
        "(o.attributes @> $6::jsonb) AND "
        "(CASE jsonb_typeof((o.attributes -> $7::text)) "
        "WHEN 'number' THEN (o.attributes -> $7::text)::numeric >= $8::numeric "
        "WHEN 'string' THEN CASE WHEN (o.attributes ->> $7::text) ~ "
        r"'^\s*-?\d{1,30}(\.\d{1,30})?\s*$' "
        "THEN (o.attributes ->> $7::text)::numeric >= $8::numeric END END) AND "
        "(o.size < $9::bigint)"
    )
    assert values[0] == '{"class": "cat"}' and values[1] == "year" and values[3] == 10
    assert where_sql([], first_parameter=6) == ("true", [])


def test_a_bare_number_matches_the_json_number_or_the_same_text():
    sql, values = where_sql(["year=2025"], first_parameter=1)
    assert sql == "(o.attributes @> $1::jsonb OR o.attributes @> $2::jsonb)"
    assert values == ['{"year": "2025"}', '{"year": 2025}']


def test_listed_fields_take_their_columns_types():
    assert where_sql(["updated_at>=2026-01-02"], 1) == (
        "(o.updated_at >= $1::timestamptz)",
        [datetime(2026, 1, 2, tzinfo=UTC)],
    )
    assert where_sql(["size in (1, 2)"], 1) == ("(o.size = ANY($1::bigint[]))", [[1, 2]])
    assert where_sql(["name>m"], 1) == ('(o.name COLLATE "C" > $1::text)', ["m"])
    assert where_sql(["content_type!=image/png"], 1) == (
        "(o.content_type <> $1::text)",
        ["image/png"],
    )
    with pytest.raises(UsageError, match="size compares to a whole number of bytes"):
        where_sql(["size>big"], 1)
    with pytest.raises(UsageError, match="updated_at compares to an ISO date"):
        where_sql(["updated_at>yesterday"], 1)
