"""A diverse sample of a space: k-means over (a sample of) its vectors, and the image nearest
each centroid, so that n picks cover the collection's n main kinds of image instead of
repeating its biggest one (as Supervisely's `/diverse` does). `random` draws n images instead.

Big spaces are sampled in SQL first (a seeded random order of the ids: the vectors of the sample
only are read), so 200k vectors answer in seconds; the cluster sizes are counted over the sample
and scaled to the space."""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict, dataclass, field

import numpy as np

from pipeline.core.space import EmbeddingSpace
from pipeline.search.answers import QueryError
from pipeline.search.empty import nothing_loaded, unmatched_filters
from pipeline.search.filters import Filters

METHODS = ("kmeans", "random")


@dataclass
class Pick:
    object_id: int
    locator: str
    name: str
    cluster: int | None  # clusters numbered from the biggest; None for a random pick
    cluster_size: int | None  # images of the space in it (estimated from the sample)
    content_hash: str | None
    distance_to_centroid: float | None
    content_type: str | None = None
    attributes: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


class Picks(list):
    """Picks, the biggest cluster first; when there are none, `why_empty` says why."""

    why_empty: str | None = None


async def diverse(
    conn,
    space: EmbeddingSpace,
    n: int,
    method: str = "kmeans",
    prefix: str | None = None,
    where: list[str] | None = None,
    sample: int = 20_000,
    seed: int = 0,
) -> Picks:
    """n images of the space spread over it (each from another cluster), or n random ones."""
    if n < 1:
        raise QueryError(f"n must be at least 1, not {n}")
    if method not in METHODS:
        raise QueryError(f"method must be one of {', '.join(METHODS)}, not {method!r}")
    filters = Filters(where or [], prefix)
    condition, values = filters.sql(first_parameter=3)  # ($1, $2: the sample's own)
    space_id = await conn.fetchval(
        "SELECT space_id FROM embedding_spaces WHERE name = $1", space.name
    )
    drawn = max(n, sample) if method == "kmeans" else n
    async with conn.transaction():
        # A seeded order: the same seed draws the same sample (setseed holds for this session).
        await conn.execute("SELECT setseed($1)", (seed % 1000) / 1000)
        rows = await conn.fetch(
            f"""
            WITH matching AS (
                SELECT o.object_id FROM embeddings e JOIN objects o ON o.object_id = e.object_id
                WHERE e.space_id = $1 AND o.deleted_at IS NULL AND {condition}
            ), drawn AS (SELECT object_id FROM matching ORDER BY random() LIMIT $2)
            SELECT o.object_id, o.locator, o.name, o.content_hash, o.content_type,
                   o.attributes::text, e.embedding::vector({space.dimension}) AS embedding,
                   (SELECT count(*) FROM matching) AS total
            FROM drawn JOIN objects o USING (object_id)
            JOIN embeddings e ON e.object_id = o.object_id AND e.space_id = $1
            ORDER BY o.object_id
            """,
            space_id,
            drawn,
            *values,
        )
    if not rows:
        picks = Picks()
        if filters:
            picks.why_empty = await unmatched_filters(conn, space, space_id, filters)
        else:
            picks.why_empty = await nothing_loaded(conn, space, None)
        return picks
    if method == "random":
        return Picks(_pick(row, None, None, None) for row in rows)
    # Seconds of CPU for a big sample: off the event loop (the service answers meanwhile).
    return await asyncio.to_thread(_kmeans_picks, rows, n, seed)


def _kmeans_picks(rows, n: int, seed: int) -> Picks:
    # (heavy: imported only when a diverse sample is asked for)
    from sklearn.cluster import KMeans
    from threadpoolctl import threadpool_limits

    vectors = np.stack([row["embedding"].to_numpy() for row in rows])
    distinct = len({vector.tobytes() for vector in vectors})
    # One BLAS/OpenMP thread: measured on 20k x 512 on a busy 2-core machine, 1.7 s against 11 s
    # with two (the threads fight the server's and each other); it also leaves the server's
    # other requests a core. k-means++ seeding makes one run (n_init=1) enough for a sample, and
    # 30 iterations place the centres well enough to pick from (a sample of 200k vectors in 1000
    # small clusters took 149 to converge fully: 7.5 s, against 1.2 s).
    with threadpool_limits(1):
        fit = KMeans(min(n, distinct), n_init=1, max_iter=30, random_state=seed).fit(vectors)
    scale = rows[0]["total"] / len(rows)
    found = []
    for label, centroid in enumerate(fit.cluster_centers_):
        members = np.flatnonzero(fit.labels_ == label)
        if not len(members):
            continue
        distances = np.linalg.norm(vectors[members] - centroid, axis=1)
        nearest = members[int(np.argmin(distances))]
        found.append((len(members), nearest, float(distances.min())))
    found.sort(key=lambda f: (-f[0], f[1]))
    return Picks(
        _pick(rows[index], number, round(size * scale), distance)
        for number, (size, index, distance) in enumerate(found)
    )


def _pick(row, cluster: int | None, size: int | None, distance: float | None) -> Pick:
    return Pick(
        row["object_id"],
        row["locator"],
        row["name"],
        cluster,
        size,
        row["content_hash"],
        distance,
        row["content_type"],
        json.loads(row["attributes"]),
    )
