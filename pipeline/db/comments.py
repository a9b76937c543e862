"""Carrying COMMENTs from one relation to another: a view that is replaced keeps its comments,
and a new partition gets its parent table's."""

from __future__ import annotations

import asyncpg


async def comments_of(conn: asyncpg.Connection, relation: str) -> dict[str | None, str]:
    """Comments of a relation (key None) and of its columns."""
    rows = await conn.fetch(
        """
        SELECT NULL AS column, obj_description($1::regclass, 'pg_class') AS comment
        UNION ALL
        SELECT a.attname, col_description(a.attrelid, a.attnum)
        FROM pg_attribute a WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped
        """,
        relation,
    )
    return {r["column"]: r["comment"] for r in rows if r["comment"] is not None}


async def apply_comments(
    conn: asyncpg.Connection,
    kind: str,
    relation: str,
    comments: dict[str | None, str],
    prefix: str = "",
) -> None:
    """COMMENT ON the `kind` (TABLE, VIEW) `relation` and its columns; `prefix` goes before the
    relation's own comment."""
    for column, comment in comments.items():
        target = f"{kind} {relation}" if column is None else f"COLUMN {relation}.{_ident(column)}"
        text = prefix + comment if column is None else comment
        await conn.execute(f"COMMENT ON {target} IS {_literal(text)}")


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
