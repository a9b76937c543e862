"""Attributes: a JSON object per image (labels from sidecar tables, folder names, dataset columns)
that searches filter on.

- `objects.attributes jsonb NOT NULL DEFAULT '{}'`, with a GIN index (jsonb_path_ops: it serves
  `attributes @> '{"class": "cat"}'`, the containment every equality filter compiles to).
- `image_embeddings` gains an `attributes` column (at the end, so CREATE OR REPLACE keeps the
  view's comments and grants).
- `similar_images()` gains a last parameter `filter jsonb DEFAULT NULL`: only images whose
  attributes contain it are answered. A new parameter is a new signature, so the function is
  dropped and created again: its comment and its hnsw.iterative_scan pin are set again here, and
  EXECUTE is PUBLIC's as for every new function (the read-only role of `imgvec db grant-reader`
  can run it without a new grant).

Revision ID: 0010_attributes
Revises: 0009_plugins_exit_codes
Create Date: 2026-11-30
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0010_attributes"
down_revision: str | None = "0009_plugins_exit_codes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ATTRIBUTES_COMMENT = (
    "What is known about the image beyond the store's metadata, as a JSON object of scalars, e.g. "
    '{"class": "cat", "split": "train"}: from a sidecar table, folder names or dataset columns. '
    'Changing it never re-embeds the image. Filter with attributes @> \'{"class": "cat"}\' '
    "(GIN index ix_objects_attributes)."
)
VIEW_ATTRIBUTES_COMMENT = "objects.attributes: the image's labels as a JSON object."

SIMILAR_IMAGES = """
CREATE FUNCTION similar_images(
    image text, k integer DEFAULT 5, space integer DEFAULT imgvec_default_space(),
    filter jsonb DEFAULT NULL)
RETURNS TABLE (image_id text, locator text, distance double precision, score double precision)
LANGUAGE plpgsql STABLE AS $fn$
DECLARE
    dim integer := (SELECT dimension FROM embedding_spaces WHERE space_id = space);
    query_locator text;
    query_vector vector;
BEGIN
    IF dim IS NULL THEN
        RAISE EXCEPTION 'no embedding space %', coalesce(space::text, 'NULL')
            USING HINT = 'SELECT * FROM embedding_spaces';
    END IF;
    IF k IS NULL OR k < 1 THEN
        RAISE EXCEPTION 'k must be at least 1, not %', coalesce(k::text, 'NULL');
    END IF;
    query_locator := image_locator(image);
    query_vector := image_vector(image, space);  -- (the name as given, for its messages)
    -- The cast to the space's dimension is what lets the space's HNSW index serve the ORDER BY;
    -- the filter is a bound value ($5), never text in the query.
    RETURN QUERY EXECUTE format($q$
        SELECT name, locator, distance, image_score(distance) FROM (
            SELECT o.name, o.locator, e.embedding::vector(%1$s) <-> $1 AS distance
            FROM embeddings e JOIN objects o ON o.object_id = e.object_id
            WHERE e.space_id = %2$s AND o.deleted_at IS NULL
              AND o.source_id = $4 AND o.locator <> $2
              AND ($5 IS NULL OR o.attributes @> $5)
            ORDER BY distance LIMIT $3) nearest
        ORDER BY distance
    $q$, dim, space) USING query_vector, query_locator, k, imgvec_default_source(), filter;
END
$fn$
"""
SIMILAR_IMAGES_COMMENT = (
    "The k images of the default source nearest to an image (by name or full locator), itself "
    "excluded, with distance and 0-1 score. space defaults to the default space; filter, a JSON "
    "object, keeps the images whose attributes contain it. Unknown or ambiguous names raise an "
    "error. Example: SELECT * FROM similar_images('IMG001.jpg', 10, "
    'filter => \'{"class": "cat"}\');'
)

# 0006's similar_images, restored by the downgrade.
SIMILAR_IMAGES_0006 = """
CREATE FUNCTION similar_images(
    image text, k integer DEFAULT 5, space integer DEFAULT imgvec_default_space())
RETURNS TABLE (image_id text, locator text, distance double precision, score double precision)
LANGUAGE plpgsql STABLE AS $fn$
DECLARE
    dim integer := (SELECT dimension FROM embedding_spaces WHERE space_id = space);
    query_locator text;
    query_vector vector;
BEGIN
    IF dim IS NULL THEN
        RAISE EXCEPTION 'no embedding space %', coalesce(space::text, 'NULL')
            USING HINT = 'SELECT * FROM embedding_spaces';
    END IF;
    IF k IS NULL OR k < 1 THEN
        RAISE EXCEPTION 'k must be at least 1, not %', coalesce(k::text, 'NULL');
    END IF;
    query_locator := image_locator(image);
    query_vector := image_vector(image, space);  -- (the name as given, for its messages)
    -- The cast to the space's dimension is what lets the space's HNSW index serve the ORDER BY.
    RETURN QUERY EXECUTE format($q$
        SELECT name, locator, distance, image_score(distance) FROM (
            SELECT o.name, o.locator, e.embedding::vector(%1$s) <-> $1 AS distance
            FROM embeddings e JOIN objects o ON o.object_id = e.object_id
            WHERE e.space_id = %2$s AND o.deleted_at IS NULL
              AND o.source_id = $4 AND o.locator <> $2
            ORDER BY distance LIMIT $3) nearest
        ORDER BY distance
    $q$, dim, space) USING query_vector, query_locator, k, imgvec_default_source();
END
$fn$
"""
SIMILAR_IMAGES_0006_COMMENT = (
    "The k images of the default source nearest to an image (by name or full locator), itself "
    "excluded, with distance and 0-1 score. space defaults to the default space. Unknown or "
    "ambiguous names raise an error. Example: SELECT * FROM similar_images('IMG001.jpg', 10);"
)

# Rebuilt on the default space when there is one (pipeline.db.default_view.make_default says the
# same), else the well-typed empty placeholder of 0001. In SQL, so that `upgrade head --sql`
# works too: the default space is known only when the script runs.
VIEW = """
DO $do$
DECLARE space integer; dim integer;
BEGIN
    SELECT space_id, dimension INTO space, dim FROM embedding_spaces WHERE is_default;
    IF space IS NULL THEN
        CREATE {replace}VIEW image_embeddings AS
            SELECT NULL::text AS image_id, NULL::text AS content, NULL::vector AS embedding{placeholder}
            WHERE false;
        RETURN;
    END IF;
    EXECUTE format($v$
        CREATE {replace}VIEW image_embeddings AS
            SELECT o.name AS image_id,
                   o.locator AS content,
                   e.embedding::vector(%s) AS embedding{column}
            FROM embeddings e
            JOIN objects o ON o.object_id = e.object_id
            WHERE e.space_id = %s AND o.deleted_at IS NULL
              AND o.source_id = (SELECT source_id FROM sources WHERE is_default)
    $v$, dim, space);
END
$do$
"""

# hnsw.iterative_scan exists from pgvector 0.8 on: reading the index on until k rows pass the
# filters is what keeps k answers under a selective filter (pipeline.db.pin_iterative_scans pins
# it later on a database whose extension is updated afterwards).
PIN_ITERATIVE_SCAN = """
DO $do$
BEGIN
    IF (SELECT string_to_array(extversion, '.')::int[] >= ARRAY[0, 8]
        FROM pg_extension WHERE extname = 'vector') THEN
        EXECUTE 'ALTER FUNCTION similar_images(text, integer, integer, jsonb) '
                'SET hnsw.iterative_scan = strict_order';
    END IF;
END
$do$
"""


def upgrade() -> None:
    op.execute("ALTER TABLE objects ADD COLUMN attributes jsonb NOT NULL DEFAULT '{}'")
    op.execute(f"COMMENT ON COLUMN objects.attributes IS {_literal(ATTRIBUTES_COMMENT)}")
    op.execute(
        "CREATE INDEX ix_objects_attributes ON objects USING gin (attributes jsonb_path_ops)"
    )
    op.execute(
        VIEW.format(
            replace="OR REPLACE ",
            placeholder=", NULL::jsonb AS attributes",
            column=",\n                   o.attributes",
        )
    )
    op.execute(
        f"COMMENT ON COLUMN image_embeddings.attributes IS {_literal(VIEW_ATTRIBUTES_COMMENT)}"
    )
    op.execute("DROP FUNCTION similar_images(text, integer, integer)")
    op.execute(SIMILAR_IMAGES)
    op.execute(
        "COMMENT ON FUNCTION similar_images(text, integer, integer, jsonb) IS "
        f"{_literal(SIMILAR_IMAGES_COMMENT)}"
    )
    op.execute(PIN_ITERATIVE_SCAN)


def downgrade() -> None:
    op.execute("DROP FUNCTION similar_images(text, integer, integer, jsonb)")
    op.execute(SIMILAR_IMAGES_0006)
    op.execute(PIN_ITERATIVE_SCAN.replace(", jsonb)", ")"))
    op.execute(
        "COMMENT ON FUNCTION similar_images(text, integer, integer) IS "
        f"{_literal(SIMILAR_IMAGES_0006_COMMENT)}"
    )
    # A view loses no column by CREATE OR REPLACE: it is dropped, and its comments (kept on the
    # other columns) go with it; grant-reader again grants SELECT on it.
    comments = _view_comments()
    op.execute("DROP VIEW image_embeddings")
    op.execute(VIEW.format(replace="", placeholder="", column=""))
    for target, comment in comments:
        op.execute(f"COMMENT ON {target} IS {_literal(comment)}")
    op.execute("DROP INDEX ix_objects_attributes")
    op.execute("ALTER TABLE objects DROP COLUMN attributes")


def _view_comments() -> list[tuple[str, str]]:
    """The comments of image_embeddings as 0006 left them."""
    return [
        (
            "VIEW image_embeddings",
            "The default space's vectors of the default source's images, under the names of the "
            "classic Vertex AI + pgvector tutorial: ORDER BY embedding <-> (SELECT embedding FROM "
            "image_embeddings WHERE image_id = …) uses the HNSW index. image_id is unique.",
        ),
        (
            "COLUMN image_embeddings.image_id",
            "objects.name: the key relative to the listed prefix, e.g. IMG001.jpg; unique in the "
            "view.",
        ),
        ("COLUMN image_embeddings.content", "objects.locator: the full URI of the image."),
        (
            "COLUMN image_embeddings.embedding",
            "The vector in the default space, typed vector(dimension).",
        ),
    ]


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
