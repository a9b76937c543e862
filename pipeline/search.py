"""Text and image search from Python and the CLI, and saved text queries for SQL users.

Scores: for L2-normalised vectors the L2 distance d lies in [0, 2] and cosine similarity is
1 - d²/2; the score shown is (1 + cosine) / 2 = 1 - d²/4, from 0 (opposite) to 1 (identical).
Rank first, then read scores: what a "good" score is differs from model to model.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass

import numpy as np

from pipeline.db.spaces import register_space
from pipeline.embedding.backends import EmbeddingBackend, ImageItem, ItemFailure
from pipeline.embedding.images import BadImage, decode_image
from pipeline.embedding.readers import ObjectReader
from pipeline.errors import ConfigError


@dataclass
class Match:
    locator: str
    name: str
    distance: float
    score: float

    def as_dict(self) -> dict:
        return asdict(self)


def score(distance: float) -> float:
    return float(min(1.0, max(0.0, 1.0 - distance * distance / 4.0)))


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
    reader: ObjectReader | None = None,
) -> list[Match]:
    """The k images nearest to a text, an image (a listed locator or name, or a file), or both
    (hybrid: the mean of the two unit vectors)."""
    if not text and not image:
        raise ConfigError("search needs a text, an --image, or both")
    space = backend.space
    space_id = await register_space(conn, space)
    vectors = []
    if text:
        vectors.append(await asyncio.to_thread(lambda: next(backend.embed_texts([text]))))
    exclude = None
    if image:
        vector, exclude = await _image_vector(
            conn, backend, space_id, image, reader or ObjectReader()
        )
        vectors.append(vector)
    query = np.mean(vectors, axis=0)
    query = query / np.linalg.norm(query)
    rows = await conn.fetch(
        f"""
        SELECT o.locator, o.name, e.embedding::vector({space.dimension}) <-> $1 AS distance
        FROM embeddings e JOIN objects o ON o.object_id = e.object_id
        WHERE e.space_id = $2 AND o.deleted_at IS NULL AND o.locator IS DISTINCT FROM $4
        ORDER BY distance LIMIT $3
        """,
        query,
        space_id,
        k,
        exclude,
    )
    matches = [
        Match(r["locator"], r["name"], float(r["distance"]), score(r["distance"])) for r in rows
    ]
    return [m for m in matches if min_score is None or m.score >= min_score]


async def _image_vector(conn, backend, space_id: int, image: str, reader: ObjectReader):
    """(vector, locator to leave out): a listed image's stored vector, else the file embedded now."""
    row = await conn.fetchrow(
        """
        SELECT o.locator, e.embedding FROM objects o
        JOIN embeddings e ON e.object_id = o.object_id AND e.space_id = $1
        WHERE o.locator = $2 OR o.name = $2 ORDER BY o.locator = $2 DESC LIMIT 1
        """,
        space_id,
        image,
    )
    if row is not None:
        return row["embedding"].to_numpy(), row["locator"]

    def embed_now():
        try:
            data = reader.read(image)
            decoded = decode_image(data)
        except (BadImage, ItemFailure) as err:
            raise ConfigError(f"cannot use {image} as the query image: {err}") from None
        source = backend.prepare(decoded) if backend.input_kind == "image" else data
        [(_, result)] = list(backend.embed_stream([ImageItem(image, source=source)]))
        if isinstance(result, ItemFailure):
            raise ConfigError(f"cannot embed {image}: {result.reason}")
        return result

    return await asyncio.to_thread(embed_now), None
