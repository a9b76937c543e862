"""Analyst functions: similar_images() and image_score().

Revision ID: 0004_analyst_functions
Revises: 0003_text_queries
Create Date: 2026-11-22
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004_analyst_functions"
down_revision: str | None = "0003_text_queries"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SIMILAR_IMAGES = """
CREATE FUNCTION similar_images(image text, k integer DEFAULT 5, space integer DEFAULT imgvec_default_space())
RETURNS TABLE (image_id text, locator text, distance double precision, score double precision)
LANGUAGE plpgsql STABLE AS $fn$
DECLARE
    dim integer := (SELECT dimension FROM embedding_spaces WHERE space_id = space);
BEGIN
    IF dim IS NULL THEN
        RAISE EXCEPTION 'no embedding space %', space USING HINT = 'SELECT * FROM embedding_spaces';
    END IF;
    -- The cast to the space's dimension is what lets the space's HNSW index serve the ORDER BY.
    RETURN QUERY EXECUTE format($q$
        WITH q AS (
            SELECT o.object_id, e.embedding::vector(%1$s) AS v
            FROM objects o JOIN embeddings e ON e.object_id = o.object_id AND e.space_id = %2$s
            WHERE o.name = $1 OR o.locator = $1
            ORDER BY o.locator = $1 DESC LIMIT 1
        )
        SELECT o.name, o.locator, d.distance, image_score(d.distance)
        FROM (SELECT e.object_id, e.embedding::vector(%1$s) <-> (SELECT v FROM q) AS distance
              FROM embeddings e
              WHERE e.space_id = %2$s AND e.object_id IS DISTINCT FROM (SELECT object_id FROM q)
              ORDER BY distance LIMIT $2) d
        JOIN objects o ON o.object_id = d.object_id
        WHERE o.deleted_at IS NULL
        ORDER BY d.distance
    $q$, dim, space) USING image, k;
END
$fn$
"""


def upgrade() -> None:
    op.execute("""
        CREATE FUNCTION image_score(distance double precision) RETURNS double precision
        LANGUAGE sql IMMUTABLE PARALLEL SAFE
        AS $$ SELECT greatest(0, least(1, 1 - distance * distance / 4)) $$
    """)
    op.execute(SIMILAR_IMAGES)
    op.execute("""COMMENT ON FUNCTION image_score(double precision) IS
        'A 0-1 score from an L2 distance between normalised vectors: (1 + cosine similarity) / 2 = 1 - d^2/4.'""")
    op.execute("""COMMENT ON FUNCTION similar_images(text, integer, integer) IS
        'The k images nearest to an image (by name or locator), itself excluded, with distance and 0-1 score. '
        'space defaults to the default space. Example: SELECT * FROM similar_images(''IMG001.jpg'', 10);'""")


def downgrade() -> None:
    op.execute("DROP FUNCTION similar_images(text, integer, integer)")
    op.execute("DROP FUNCTION image_score(double precision)")
