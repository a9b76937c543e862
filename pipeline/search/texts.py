"""Saved text queries: texts embedded once, then searched from SQL (view `text_queries`)."""

from __future__ import annotations

import asyncio

from pipeline.db.spaces import load_space, register_space
from pipeline.embedding.backends import EmbeddingBackend


async def save_text_queries(conn, backend: EmbeddingBackend, texts: list[str]) -> list[str]:
    """Save texts (if given) in the backend's space and embed every pending one; returns those
    embedded. It writes (the space too, when given texts for it): the owner's `imgvec text-embed`
    runs it, never a search."""
    if texts:
        space_id = await register_space(conn, backend.space)
    else:
        # Nothing to save: a space not registered yet has no pending texts, and registering it
        # would list an empty space (and make it the default if it were the first).
        found = await load_space(conn, backend.space.name)
        if found is None:
            return []
        space_id = found[0]
    await conn.executemany(
        "INSERT INTO text_embeddings (text, space_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        [(text, space_id) for text in texts],
    )
    pending = [
        r[0]
        for r in await conn.fetch(
            "SELECT text FROM text_embeddings WHERE space_id = $1 AND embedding IS NULL "
            "ORDER BY text_embedding_id",
            space_id,
        )
    ]
    if pending:
        vectors = await asyncio.to_thread(lambda: list(backend.embed_texts(pending)))
        await conn.executemany(
            "UPDATE text_embeddings SET embedding = $3, embedded_at = now() "
            "WHERE space_id = $1 AND text = $2",
            [(space_id, text, vector) for text, vector in zip(pending, vectors, strict=False)],
        )
    return pending
