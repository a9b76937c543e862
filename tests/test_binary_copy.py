"""The NumPy binary COPY encoder against a real PostgreSQL + pgvector: the round trip, the `::text`
form, NULLs, empty and multi-byte text, and what the server says to a malformed vector."""

from __future__ import annotations

import asyncpg
import numpy as np
import pytest

from pipeline.db import connect
from pipeline.loading.binary_copy import binary_copy


async def vector_connection(url: str) -> asyncpg.Connection:
    setup = await connect(url, register_vector=False)
    await setup.execute("CREATE EXTENSION IF NOT EXISTS vector")
    await setup.close()
    return await connect(url)


TEXTS = [
    "md5:0123",
    None,
    "",
    "md5:0123456789abcdef",
    "ünïcødé ✓",
    "x",
    None,
    "md5:4567",
    "tab\there",
    "'; DROP",
]


async def test_round_trip_and_text_form(fresh_url):
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((len(TEXTS), 5)).astype(np.float32)
    vectors[0] = [1.5, -0.0, 3e-38, 1e38, 0.1]  # exact float4 values, extremes included
    ids = np.arange(len(TEXTS), dtype=np.int64) * 2**40  # beyond int4
    conn = await vector_connection(fresh_url)
    try:
        await conn.execute(
            "CREATE TABLE t (space_id int, object_id bigint, embedding vector(5), content_hash text)"
        )
        data = binary_copy(
            [("int4", 7), ("int8", ids), ("vector", vectors), ("text", TEXTS)], len(TEXTS)
        )
        await conn.copy_to_table("t", source=data, format="binary")
        rows = await conn.fetch(
            "SELECT space_id, object_id, embedding, embedding::text AS text, content_hash FROM t"
        )
    finally:
        await conn.close()
    assert len(rows) == len(TEXTS)
    by_id = {r["object_id"]: r for r in rows}
    for i, text in enumerate(TEXTS):
        row = by_id[int(ids[i])]
        assert row["space_id"] == 7 and row["content_hash"] == text
        assert np.array_equal(row["embedding"].to_numpy(), vectors[i])
    assert by_id[0]["text"] == "[1.5,-0,3e-38,1e+38,0.1]"


async def test_per_row_int4_and_no_text_column(fresh_url):
    vectors = np.eye(3, dtype=np.float64)  # any float array: cast to float4 on the wire
    conn = await vector_connection(fresh_url)
    try:
        await conn.execute("CREATE TABLE t (a int, v vector(3))")
        await conn.copy_to_table(
            "t", source=binary_copy([("int4", [3, 2, 1]), ("vector", vectors)], 3), format="binary"
        )
        rows = await conn.fetch("SELECT a, v::text FROM t ORDER BY a")
    finally:
        await conn.close()
    assert [(r["a"], r["v"]) for r in rows] == [(1, "[0,0,1]"), (2, "[0,1,0]"), (3, "[1,0,0]")]


async def test_the_server_refuses_what_pgvector_refuses(fresh_url):
    conn = await vector_connection(fresh_url)
    try:
        await conn.execute("CREATE TABLE t (v vector(2))")
        with pytest.raises(asyncpg.DataError, match="NaN not allowed in vector"):
            await conn.copy_to_table(
                "t", source=binary_copy([("vector", np.array([[np.nan, 1.0]]))], 1), format="binary"
            )
        with pytest.raises(asyncpg.DataError, match="expected 2 dimensions, not 3"):
            await conn.copy_to_table(
                "t", source=binary_copy([("vector", np.ones((1, 3)))], 1), format="binary"
            )
    finally:
        await conn.close()


def test_refuses_what_it_cannot_lay_out():
    with pytest.raises(ValueError, match="at most one text column"):
        binary_copy([("text", ["a"]), ("text", ["b"])], 1)
    with pytest.raises(ValueError, match="'jsonb'"):
        binary_copy([("jsonb", ["{}"])], 1)
