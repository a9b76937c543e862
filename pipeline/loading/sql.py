"""The SQL the load stage runs for each group of parts (pipeline.loading.space_loader)."""

from __future__ import annotations

# Which objects a batch's rows are for: by content hash (identical bytes under several locators
# all get the vector), or by locator where the store gives no hash.
# (Two arrays, not a row per object: asyncpg decodes them at a fraction of the client's CPU.)
OBJECTS_BY_HASH = (
    "SELECT array_agg(content_hash), array_agg(object_id) FROM objects "
    "WHERE content_hash = ANY($1::text[])"
)
OBJECTS_BY_LOCATOR = (
    "SELECT array_agg(locator), array_agg(object_id) FROM objects WHERE locator = ANY($1::text[])"
)
# Which of them already have a vector in the space. (A separate probe by key: folded into one
# query with the match as EXISTS, the planner hashed the whole partition for every batch.)
HAVE_VECTORS = (
    "SELECT array_agg(object_id) FROM embeddings "
    "WHERE space_id = $1 AND object_id = ANY($2::bigint[])"
)
LOADED_PARTS = "SELECT part FROM loaded_parts WHERE space_id = $1"
HAS_FAILURES = "SELECT EXISTS (SELECT 1 FROM failures WHERE stage = 'embed' AND space_id = $1)"
# Created once per connection and emptied at each commit: no catalog churn per part.
CREATE_LOAD_BATCH = (
    "CREATE TEMP TABLE IF NOT EXISTS load_batch "
    "(object_id bigint, embedding vector, content_hash text) ON COMMIT DELETE ROWS"
)
REPLACE_VECTORS = """
UPDATE embeddings e
SET embedding = b.embedding, content_hash = b.content_hash, created_at = now()
FROM load_batch b
WHERE e.space_id = $1 AND e.object_id = b.object_id
"""
# Identical bytes listed under a new locator after their part was loaded: reuse the vector.
# Objects lacking a current vector are found first, so the common case — none — never joins the
# space's vectors by hash.
REUSE_BY_HASH = """
WITH missing AS MATERIALIZED (
    SELECT o.object_id, o.content_hash FROM objects o
    WHERE o.deleted_at IS NULL AND o.content_hash IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM embeddings x
                      WHERE x.space_id = $1 AND x.object_id = o.object_id AND x.content_hash = o.content_hash)
)
INSERT INTO embeddings (space_id, object_id, embedding, content_hash)
SELECT DISTINCT ON (m.object_id) $1, m.object_id, e.embedding, e.content_hash
FROM missing m JOIN embeddings e ON e.space_id = $1 AND e.content_hash = m.content_hash
ON CONFLICT (space_id, object_id) DO UPDATE
SET embedding = EXCLUDED.embedding, content_hash = EXCLUDED.content_hash, created_at = now()
"""
# What the embed stage could not embed (a part's failures file): every object holding those bytes
# gets a failure row — unless a vector arrives for it, which clears its row (see CLEAR_FAILURES).
# The load is the one writer of the failures table; each part is loaded once, so each failed
# attempt to embed counts once.
RECORD_FAILURES = """
WITH f AS (SELECT * FROM unnest($3::text[], $4::text[], $5::text[]) AS f(locator, content_hash, reason))
INSERT INTO failures (locator, stage, space_id, reason, run_id)
SELECT o.locator, 'embed', $1::integer, f.reason, $2::bigint FROM f JOIN objects o ON o.content_hash = f.content_hash
WHERE f.content_hash <> ''
UNION ALL
SELECT o.locator, 'embed', $1::integer, f.reason, $2::bigint FROM f JOIN objects o ON o.locator = f.locator
WHERE f.content_hash = ''
ON CONFLICT ON CONSTRAINT uq_failures_locator_stage_space_id DO UPDATE
SET reason = EXCLUDED.reason, attempts = failures.attempts + 1, last_failed_at = now(),
    run_id = EXCLUDED.run_id
"""
CLEAR_FAILURES = """
DELETE FROM failures f USING objects o
WHERE f.stage = 'embed' AND f.space_id = $1 AND f.locator = o.locator AND o.object_id = ANY($2::bigint[])
"""
RECORD_PARTS = """
INSERT INTO loaded_parts (space_id, part, rows, run_id)
SELECT $1, p.part, p.rows, $4 FROM unnest($2::text[], $3::integer[]) AS p(part, rows)
"""
