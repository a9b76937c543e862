"""Text and image search from Python and the CLI, and saved text queries for SQL users.

Scores: for L2-normalised vectors the L2 distance d lies in [0, 2] and cosine similarity is
1 - d²/2; the score shown is (1 + cosine) / 2 = 1 - d²/4, from 0 (opposite) to 1 (identical).
Rank first, then read scores: what a "good" score is differs from model to model.
"""

from __future__ import annotations

import asyncio
import difflib
import shlex
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from pipeline.core.score import score
from pipeline.core.space import EmbeddingSpace
from pipeline.db.spaces import register_space
from pipeline.embedding.backends import EmbeddingBackend, ImageItem, ItemFailure
from pipeline.embedding.images import BadImage
from pipeline.embedding.readers import ObjectReader
from pipeline.errors import ConfigError
from pipeline.listing.registry import find_source


class QueryError(ConfigError):
    """A query that cannot be answered as asked: no text and no image, k below 1, or a query image
    never listed, ambiguous, deleted, failed to embed or not in the space. Bad usage: exit 2."""

    exit_code = 2


@dataclass
class Match:
    locator: str
    name: str
    distance: float
    score: float

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


async def save_text_queries(conn, backend: EmbeddingBackend, texts: list[str]) -> list[str]:
    """Save texts (if given) in the backend's space and embed every pending one; returns those embedded."""
    space_id = await register_space(conn, backend.space)
    await conn.executemany(
        "INSERT INTO text_embeddings (text, space_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        [(text, space_id) for text in texts],
    )
    pending = [
        r[0]
        for r in await conn.fetch(
            "SELECT text FROM text_embeddings WHERE space_id = $1 AND embedding IS NULL ORDER BY text_embedding_id",
            space_id,
        )
    ]
    if pending:
        vectors = await asyncio.to_thread(lambda: list(backend.embed_texts(pending)))
        await conn.executemany(
            "UPDATE text_embeddings SET embedding = $3, embedded_at = now() WHERE space_id = $1 AND text = $2",
            [(space_id, text, vector) for text, vector in zip(pending, vectors, strict=False)],
        )
    return pending


async def search(
    conn,
    backend: EmbeddingBackend,
    *,
    text: str | None = None,
    image: str | None = None,
    k: int = 10,
    min_score: float | None = None,
    source: str | None = None,
    reader: ObjectReader | None = None,
) -> Matches:
    """The k images nearest to a text, an image, or both (hybrid: the mean of the two unit vectors).

    `image` is a listed locator, a listed name (ambiguous across sources: an error that lists the
    locators), or a file embedded on the spot. `source` (id, root, spec or folder) limits the
    search, and the names, to one listed source; by default every source is searched. Nothing is
    embedded (no model loaded) before the query is known to be answerable.
    """
    check_query(text, image, k)
    space = backend.space
    space_id = await conn.fetchval(
        "SELECT space_id FROM embedding_spaces WHERE name = $1", space.name
    )
    source_id, root = await find_source(conn, source) if source else (None, None)
    listed = await _listed_query_image(conn, image, space, space_id, source_id) if image else None
    if not await _anything_loaded(conn, space_id, source_id):
        return Matches.empty(await _nothing_loaded(conn, space, root))

    vectors = []
    if text:
        vectors.append(await asyncio.to_thread(lambda: next(backend.embed_texts([text]))))
    exclude = None
    if listed is not None:
        exclude, vector = listed
        vectors.append(vector)
    elif image:
        reader = reader or ObjectReader()
        vectors.append(await asyncio.to_thread(_embed_file, backend, image, reader))
    query = np.mean(vectors, axis=0)
    query = query / np.linalg.norm(query)
    rows = await _nearest(conn, space, space_id, source_id, query, k, exclude)
    matches = Matches(
        Match(r["locator"], r["name"], float(r["distance"]), score(r["distance"])) for r in rows
    )
    if not matches:
        return Matches.empty(f"no other image is loaded in space {space.name}")
    kept = Matches(m for m in matches if min_score is None or m.score >= min_score)
    if not kept:
        kept.why_empty = (
            f"no result scores at least {min_score:g}; the best was {matches[0].score:.2f}"
        )
    return kept


def check_query(text: str | None, image: str | None, k: int) -> None:
    if not text and not image:
        raise QueryError("search needs a text, an --image, or both")
    if k < 1:
        raise QueryError(f"k must be at least 1, not {k}")


async def _nearest(conn, space: EmbeddingSpace, space_id, source_id, query, k, exclude):
    async with conn.transaction():
        if await _has_iterative_scans(conn):
            # Deleted objects and other sources are filtered out of the index's candidates: read
            # on until k rows pass, in exact order (pgvector >= 0.8).
            await conn.execute("SET LOCAL hnsw.iterative_scan = strict_order")
        return await conn.fetch(
            f"""
            SELECT o.locator, o.name, e.embedding::vector({space.dimension}) <-> $1 AS distance
            FROM embeddings e JOIN objects o ON o.object_id = e.object_id
            WHERE e.space_id = $2 AND o.deleted_at IS NULL AND o.locator IS DISTINCT FROM $4
              AND ($5::integer IS NULL OR o.source_id = $5)
            ORDER BY distance LIMIT $3
            """,
            query,
            space_id,
            k,
            exclude,
            source_id,
        )


async def _has_iterative_scans(conn) -> bool:
    """pgvector >= 0.8 in this database (`imgvec db status` notes an older one, and how to update
    it); older ones search without iterative scans: a source may then get fewer than k rows."""
    from pipeline.db import ITERATIVE_SCANS, version_tuple

    version = await conn.fetchval("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
    return version is not None and version_tuple(version) >= ITERATIVE_SCANS


async def _anything_loaded(conn, space_id: int | None, source_id: int | None) -> bool:
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


async def _nothing_loaded(conn, space: EmbeddingSpace, root: str | None) -> str:
    where = f"space {space.name}" + (f" from source {root}" if root else "")
    why = f"nothing loaded in {where}: run `imgvec run SOURCE` with the same backend options"
    others = await _spaces_with_vectors(conn)
    if others:
        listed = "; ".join(f"{name}: search it with {options}" for name, options in others)
        why += f" (spaces with vectors: {listed})"
    return why


async def _spaces_with_vectors(conn) -> list[tuple[str, str]]:
    """(name, the options that select it) of each space that holds vectors."""
    rows = await conn.fetch(
        """
        SELECT s.name, s.backend, s.model, s.weights, s.dimension FROM embedding_spaces s
        WHERE EXISTS (SELECT 1 FROM embeddings e WHERE e.space_id = s.space_id) ORDER BY s.space_id
        """
    )
    return [(r["name"], _options(r)) for r in rows]


def _options(space) -> str:
    """The command-line options that select a space (the inverse of the backends' naming)."""
    if space["backend"] == "vertex":
        return f"--backend vertex --dimension {space['dimension']}"
    model = "" if space["model"] == "ViT-B-32" else f"--model {space['model']} "
    weights = space["weights"]
    if weights.startswith("none-seed"):
        seed = weights.removeprefix("none-seed")
        return f"{model}--pretrained none" + ("" if seed == "0" else f" --seed {seed}")
    if weights.startswith("file-"):
        return f"{model}--pretrained PATH (the checkpoint file whose SHA-256 starts {weights[5:]})"
    return f"{model}--pretrained {weights}"


async def _listed_query_image(conn, image: str, space, space_id, source_id):
    """(locator, vector) of a listed query image; None when it is not listed but is a file or a
    URI to embed on the spot. Anything else is a QueryError that says why and what to do."""
    rows = await conn.fetch(
        """
        SELECT o.locator, o.deleted_at, s.root, e.embedding
        FROM objects o
        LEFT JOIN sources s ON s.source_id = o.source_id
        LEFT JOIN embeddings e ON e.object_id = o.object_id AND e.space_id = $2
        WHERE o.locator = $1 OR (o.name = $1 AND ($3::integer IS NULL OR o.source_id = $3))
        ORDER BY o.locator
        """,
        image,
        space_id,
        source_id,
    )
    exact = [r for r in rows if r["locator"] == image]
    live = exact or [r for r in rows if r["deleted_at"] is None]
    if len(live) > 1:
        raise _ambiguous(image, live)
    if not live:
        if _is_file_or_uri(image):
            return None
        if rows:
            gone = max(r["deleted_at"] for r in rows)
            raise QueryError(
                f"{image!r} was deleted from its source on {gone:%Y-%m-%d %H:%M} UTC",
                hint="its vectors are kept, but it is no longer searched; give a file to search by it",
            )
        raise await _never_listed(conn, image, source_id)
    [row] = live
    if row["embedding"] is not None:
        return row["locator"], row["embedding"].to_numpy()
    raise await _not_in_space(conn, image, row["locator"], space, space_id)


def _ambiguous(image: str, rows) -> QueryError:
    shown = ", ".join(repr(r["locator"]) for r in rows[:5])
    more = f" and {len(rows) - 5} more" if len(rows) > 5 else ""
    roots = sorted({r["root"] for r in rows if r["root"]})
    return QueryError(
        f"{image!r} names {len(rows)} images: {shown}{more}",
        hint=f"give the full locator, e.g. --image {shlex.quote(rows[0]['locator'])}, or choose "
        f"the source with --source ({', '.join(repr(root) for root in roots)})",
    )


async def _never_listed(conn, image: str, source_id: int | None) -> QueryError:
    # Typos keep the length within a few characters: that bounds what is read on a big table.
    names = await conn.fetch(
        """
        SELECT DISTINCT name FROM objects
        WHERE deleted_at IS NULL AND ($2::integer IS NULL OR source_id = $2)
          AND length(name) BETWEEN length($1) - 3 AND length($1) + 3
        LIMIT 50000
        """,
        image,
        source_id,
    )
    close = difflib.get_close_matches(image, [r["name"] for r in names], n=3, cutoff=0.6)
    hint = (
        f"did you mean {' or '.join(repr(name) for name in close)}?"
        if close
        else "give a listed name or locator (imgvec run SOURCE lists and embeds new images), "
        "or the path of an image file"
    )
    return QueryError(f"{image!r} was never listed and is not a file", hint=hint)


async def _not_in_space(conn, image: str, locator: str, space, space_id) -> QueryError:
    reason = await conn.fetchval(
        """
        SELECT reason FROM failures WHERE locator = $1 AND space_id = $2
        ORDER BY last_failed_at DESC LIMIT 1
        """,
        locator,
        space_id,
    )
    if reason is not None:
        return QueryError(
            f"{image!r} was listed but could not be embedded in space {space.name}: {reason}",
            hint="`imgvec embed --retry-failed` (same backend options) tries it again",
        )
    elsewhere = await conn.fetch(
        """
        SELECT s.name FROM embeddings e JOIN objects o ON o.object_id = e.object_id
        JOIN embedding_spaces s ON s.space_id = e.space_id WHERE o.locator = $1 ORDER BY s.space_id
        """,
        locator,
    )
    found = f" (it has vectors in {', '.join(r['name'] for r in elsewhere)})" if elsewhere else ""
    return QueryError(
        f"{image!r} is listed but not in space {space.name}{found}",
        hint="`imgvec run SOURCE` with the same backend options embeds and loads it, or give the "
        "backend options of a space it is in",
    )


def _is_file_or_uri(image: str) -> bool:
    if image.startswith(("gs://", "s3://")):
        return True
    return Path(image.removeprefix("file://")).expanduser().is_file()


def _embed_file(backend, image: str, reader: ObjectReader):
    """An image that was never listed (a file, a URI), embedded now."""
    try:
        source = backend.load_source(ImageItem(image), reader)
    except (BadImage, ItemFailure) as err:
        raise ConfigError(f"cannot use {image} as the query image: {err}") from None
    [(_, result)] = list(backend.embed_stream([ImageItem(image, source=source)]))
    if isinstance(result, ItemFailure):
        raise ConfigError(f"cannot embed {image}: {result.reason}")
    return result
