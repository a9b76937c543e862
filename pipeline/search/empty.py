"""Why a space has nothing to search, and which spaces do: an empty answer is never silent."""

from __future__ import annotations

import difflib
import json

from pipeline.core.space import EmbeddingSpace
from pipeline.core.where import LISTED_FIELDS, Condition, Value, parse_where
from pipeline.errors import ConfigError
from pipeline.plugins import backend_class
from pipeline.search.filters import Filters


async def anything_loaded(conn, space_id: int | None, source_id: int | None) -> bool:
    """Whether the space (None: never registered) holds a live image of the source (None: any)."""
    if space_id is None:
        return False
    return await conn.fetchval(
        """
        SELECT EXISTS (SELECT 1 FROM embeddings e JOIN objects o ON o.object_id = e.object_id
                       WHERE e.space_id = $1 AND o.deleted_at IS NULL
                         AND ($2::integer IS NULL OR o.source_id = $2))
        """,
        space_id,
        source_id,
    )


async def nothing_loaded(conn, space: EmbeddingSpace, root: str | None) -> str:
    where = f"space {space.name}" + (f" from source {root}" if root else "")
    why = f"nothing loaded in {where}: run `imgvec run SOURCE` with the same backend options"
    others = await _spaces_with_vectors(conn)
    if others:
        listed = "; ".join(f"{name}: search it with {options}" for name, options in others)
        why += f" (spaces with vectors: {listed})"
    return why


async def unmatched_filters(
    conn, space: EmbeddingSpace, space_id: int | None, filters: Filters
) -> str:
    """Why no image matches the filters, with what was likely meant: an attribute no image in the
    space has (and the close names), a value no image has (`class=cta`, and the close values), a
    value starting with '=' (`class==cat`), a content type without a slash (`png`)."""
    why = f"no image in space {space.name} matches {filters.describe()}"
    conditions = [parse_where(expression) for expression in filters.where]
    notes = [
        f"the value of {c.field} {c.operator} is {c.value.text!r} (one = compares)"
        for c in conditions
        if c.operator in ("=", "!=") and c.value.text.startswith("=")
    ]
    asked = sorted({c.field for c in conditions if not c.is_listed_field})
    if asked and space_id is not None:
        # (a scan of the space's attributes: paid only by an empty answer)
        rows = await conn.fetch(
            """
            SELECT DISTINCT attribute FROM embeddings e JOIN objects o ON o.object_id = e.object_id,
                   jsonb_object_keys(o.attributes) AS attribute
            WHERE e.space_id = $1 AND o.deleted_at IS NULL ORDER BY attribute
            """,
            space_id,
        )
        known = [r["attribute"] for r in rows]
        for field in (f for f in asked if f not in known):
            close = difflib.get_close_matches(field, [*known, *LISTED_FIELDS], n=1)
            notes.append(
                f"no image there has an attribute {field!r}"
                + (f" (did you mean {close[0]!r}?)" if close else "")
            )
        if notes and known:
            notes.append(f"its attributes: {', '.join(known[:20])}")
        for c in conditions:  # (a value '=cat' is noted above already)
            if c.operator == "=" and not c.is_listed_field and c.field in known:
                if not c.value.text.startswith("="):
                    notes.extend(await _unmatched_value(conn, space_id, c.field, c.value))
    notes.extend(_slashless_content_types(filters, conditions))
    return "; ".join([why, *notes])


#: the images read, and the values kept, to name the close values of an attribute: a bound on
#: what an empty answer costs however big the space (a value past them is just not suggested)
VALUES_READ = 100_000
VALUES_KEPT = 1_000


async def _unmatched_value(conn, space_id: int, field: str, value: Value) -> list[str]:
    """`class=cta`: no image has that value (exactly: the filter's own index condition), and the
    values close to it among those read (one round trip, capped)."""
    documents = [json.dumps({field: v}) for v in (value.text, value.json_scalar) if v is not None]
    row = await conn.fetchrow(
        """
        SELECT EXISTS (SELECT FROM embeddings e JOIN objects o ON o.object_id = e.object_id
                       WHERE e.space_id = $1 AND o.deleted_at IS NULL
                         AND o.attributes @> ANY($3::jsonb[])) AS present,
               ARRAY(SELECT DISTINCT value FROM (
                   SELECT o.attributes ->> $2::text AS value
                   FROM embeddings e JOIN objects o ON o.object_id = e.object_id
                   WHERE e.space_id = $1 AND o.deleted_at IS NULL AND o.attributes ? $2::text
                   LIMIT $4) read WHERE value IS NOT NULL LIMIT $5) AS values
        """,
        space_id,
        field,
        documents,
        VALUES_READ,
        VALUES_KEPT,
    )
    if row["present"]:
        return []  # the value is there: another filter left nothing
    close = difflib.get_close_matches(value.text, row["values"], n=3, cutoff=0.6)
    return [
        f"no image there has {field} = {value.text!r}"
        + (f" (did you mean {' or '.join(map(repr, close))}?)" if close else "")
    ]


def _slashless_content_types(filters: Filters, conditions: list[Condition]) -> list[str]:
    """`--content-type png`: a content type is a MIME type, never an extension."""
    given = [filters.content_type] if filters.content_type else []
    given += [
        v.text
        for c in conditions
        if c.field == "content_type" and c.operator in ("=", "in")
        for v in c.values
    ]
    if any("/" not in g for g in given):
        return ["content types are written image/png (or image/*)"]
    return []


async def _spaces_with_vectors(conn) -> list[tuple[str, str]]:
    """(name, the options that select it) of each space that holds vectors."""
    rows = await conn.fetch(
        """
        SELECT s.name, s.backend, s.model, s.weights, s.dimension, s.metric, s.normalized
        FROM embedding_spaces s
        WHERE EXISTS (SELECT 1 FROM embeddings e WHERE e.space_id = s.space_id) ORDER BY s.space_id
        """
    )
    return [
        (
            r["name"],
            options_for(
                EmbeddingSpace(
                    r["backend"],
                    r["model"],
                    r["weights"],
                    r["dimension"],
                    r["metric"],
                    r["normalized"],
                )
            ),
        )
        for r in rows
    ]


def options_for(space: EmbeddingSpace) -> str:
    """The command-line options that select a space: its backend knows its own naming. A space
    whose backend is not installed here can only be named by its backend."""
    try:
        backend = backend_class(space.backend)
    except ConfigError:
        return f"--backend {space.backend}"
    return backend.options_for_space(space)
