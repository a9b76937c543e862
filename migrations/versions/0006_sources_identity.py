"""Sources, so that one name means one image: `image_embeddings` shows the default source only.

Object names are relative to the prefix a source was listed from, so two sources (the demo and a
user's folder, two buckets) can both hold an `IMG001.jpg`; the classic query
`(SELECT embedding FROM image_embeddings WHERE image_id = …)` then failed with "more than one row
returned by a subquery". Now:

- `sources` has one row per listed source (its normalised root), one of them the default, as
  `embedding_spaces` has a default space; `objects.source_id` says which source listed an object.
- Within a source a live object's name is unique (an index says so), and `image_embeddings` shows
  the default source of the default space, so its `image_id` is unique.
- `image_locator()` and `image_vector()` turn a name (of the default source) or a full locator
  (of any source) into one object, and raise a clear exception, with a HINT, for a name that is
  unknown, deleted, only in other sources, failed to embed, or not in the space.
  `similar_images()` uses them; `image_score(NULL)` is NULL (it was 1).
- `set_default_source('…')` switches the source behind the view; nothing else moves.

Existing objects are backfilled: each object's source root is its locator minus its name (the
prefix it was listed under), one source per root; the earliest listed becomes the default.

Revision ID: 0006_sources_identity
Revises: 0005_lean_embeddings
Create Date: 2026-11-23
"""

from collections.abc import Sequence

from alembic import context, op
from sqlalchemy import text

revision: str = "0006_sources_identity"
down_revision: str | None = "0005_lean_embeddings"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SOURCES_TABLE = """
CREATE TABLE sources (
    source_id        integer GENERATED ALWAYS AS IDENTITY,
    root             text NOT NULL,
    kind             text NOT NULL,
    spec             text NOT NULL,
    is_default       boolean NOT NULL DEFAULT false,
    first_listed_at  timestamptz NOT NULL DEFAULT now(),
    last_listed_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT pk_sources PRIMARY KEY (source_id),
    CONSTRAINT uq_sources_root UNIQUE (root),
    CONSTRAINT ck_sources_kind CHECK (kind IN ('gs', 's3', 'file', 'list'))
)
"""

# The prefix an object was listed under is its locator minus its name.
BACKFILL_SOURCES = """
INSERT INTO sources (root, kind, spec, first_listed_at, last_listed_at)
SELECT root, min(scheme), root, min(first_seen), max(last_seen)
FROM (SELECT CASE WHEN right(locator, length(name)) = name
                  THEN left(locator, length(locator) - length(name)) ELSE locator END AS root,
             scheme, first_seen, last_seen
      FROM objects) o
GROUP BY root
"""
BACKFILL_OBJECTS = """
UPDATE objects o SET source_id = s.source_id FROM sources s
WHERE s.root = CASE WHEN right(o.locator, length(o.name)) = o.name
                    THEN left(o.locator, length(o.locator) - length(o.name)) ELSE o.locator END
"""
BACKFILL_DEFAULT = """
UPDATE sources SET is_default = true
WHERE source_id = (SELECT source_id FROM sources ORDER BY first_listed_at, root LIMIT 1)
"""

DEFAULT_SOURCE_FUNCTION = """
CREATE FUNCTION imgvec_default_source() RETURNS integer LANGUAGE sql STABLE
AS $$ SELECT source_id FROM sources WHERE is_default $$
"""

# Names and locators are data: every message quotes them as JSON strings, so quotes, newlines and
# unicode stay on one readable line.
IMAGE_LOCATOR = """
CREATE FUNCTION image_locator(image text) RETURNS text LANGUAGE plpgsql STABLE AS $fn$
DECLARE
    default_source integer := imgvec_default_source();
    hit text;
    elsewhere text;
    gone timestamptz;
BEGIN
    IF image IS NULL THEN
        RAISE EXCEPTION 'no image given (NULL)'
            USING HINT = 'give an image name from image_embeddings.image_id, or a full locator';
    END IF;
    -- A full locator names one object, whichever source listed it.
    SELECT locator INTO hit FROM objects WHERE locator = image AND deleted_at IS NULL;
    IF hit IS NOT NULL THEN
        RETURN hit;
    END IF;
    -- A name means an image of the default source, where live names are unique.
    SELECT locator INTO hit FROM objects
    WHERE source_id = default_source AND name = image AND deleted_at IS NULL;
    IF hit IS NOT NULL THEN
        RETURN hit;
    END IF;
    SELECT string_agg(to_json(locator)::text, ', ' ORDER BY locator) INTO elsewhere
    FROM (SELECT locator FROM objects WHERE name = image AND deleted_at IS NULL
          ORDER BY locator LIMIT 10) other;
    IF elsewhere IS NOT NULL THEN
        RAISE EXCEPTION 'image % is not in the default source %; it is listed as %',
            to_json(image)::text,
            coalesce((SELECT to_json(root)::text FROM sources WHERE source_id = default_source),
                     '(none)'),
            elsewhere
            USING ERRCODE = 'no_data_found',
                  HINT = 'give one of these full locators instead of the name, or make its source '
                         'the default: SELECT set_default_source(''ROOT'') (roots: SELECT * FROM sources)';
    END IF;
    SELECT max(deleted_at) INTO gone FROM objects
    WHERE (locator = image OR name = image) AND deleted_at IS NOT NULL;
    IF gone IS NOT NULL THEN
        RAISE EXCEPTION 'image % was deleted from its source on %', to_json(image)::text, gone
            USING ERRCODE = 'no_data_found',
                  HINT = 'its vectors are kept, but it is no longer searched';
    END IF;
    RAISE EXCEPTION 'image % was never listed', to_json(image)::text
        USING ERRCODE = 'no_data_found',
              HINT = 'give a name from image_embeddings.image_id (SELECT image_id FROM '
                     'image_embeddings WHERE image_id ILIKE ''%part%'') or a full locator; '
                     'new images are added by imgvec run SOURCE';
END
$fn$
"""

IMAGE_VECTOR = """
CREATE FUNCTION image_vector(image text, space integer DEFAULT imgvec_default_space())
RETURNS vector LANGUAGE plpgsql STABLE AS $fn$
DECLARE
    space_name text := (SELECT name FROM embedding_spaces WHERE space_id = space);
    locator_ text;
    hit vector;
    why text;
BEGIN
    IF space_name IS NULL THEN
        RAISE EXCEPTION 'no embedding space %', coalesce(space::text, 'NULL')
            USING HINT = 'SELECT * FROM embedding_spaces';
    END IF;
    locator_ := image_locator(image);
    SELECT e.embedding INTO hit FROM objects o
    JOIN embeddings e ON e.object_id = o.object_id AND e.space_id = space
    WHERE o.locator = locator_;
    IF hit IS NOT NULL THEN
        RETURN hit;
    END IF;
    SELECT f.reason INTO why FROM failures f
    WHERE f.locator = locator_ AND f.space_id = space ORDER BY f.last_failed_at DESC LIMIT 1;
    IF why IS NOT NULL THEN
        RAISE EXCEPTION 'image % could not be embedded in space %: %',
            to_json(image)::text, space_name, why
            USING ERRCODE = 'no_data_found',
                  HINT = 'imgvec embed --retry-failed tries it again; sql/recent_failures.sql lists the others';
    END IF;
    RAISE EXCEPTION 'image % has no vector in space % yet', to_json(image)::text, space_name
        USING ERRCODE = 'no_data_found',
              HINT = 'imgvec run SOURCE, with the backend options of that space, embeds and loads it';
END
$fn$
"""

SIMILAR_IMAGES = """
CREATE OR REPLACE FUNCTION similar_images(
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

SET_DEFAULT_SOURCE = """
CREATE FUNCTION set_default_source(source text) RETURNS text LANGUAGE plpgsql AS $fn$
DECLARE
    chosen sources%ROWTYPE;
    known text;
BEGIN
    SELECT * INTO chosen FROM sources s
    WHERE s.source_id::text = source OR s.root = source OR s.spec = source
       OR s.root = source || '/' OR s.root = 'file://' || source OR s.root = 'file://' || source || '/'
    ORDER BY s.root = source DESC, s.source_id LIMIT 1;
    IF chosen.source_id IS NULL THEN
        SELECT string_agg(format('%s %s', s.source_id, to_json(s.root)), ', ' ORDER BY s.source_id)
        INTO known FROM sources s;
        RAISE EXCEPTION 'no source % is listed', to_json(source)::text
            USING ERRCODE = 'no_data_found',
                  HINT = 'give a source_id or root of SELECT * FROM sources: ' || coalesce(known, 'none yet');
    END IF;
    -- Two statements: the unique index on is_default is checked row by row.
    UPDATE sources SET is_default = false WHERE is_default AND source_id <> chosen.source_id;
    UPDATE sources SET is_default = true WHERE source_id = chosen.source_id;
    RETURN chosen.root;
END
$fn$
"""

IMAGE_SCORE = """
CREATE OR REPLACE FUNCTION image_score(distance double precision) RETURNS double precision
LANGUAGE sql IMMUTABLE {strict} PARALLEL SAFE
AS $$ SELECT greatest(0, least(1, 1 - distance * distance / 4)) $$
"""

COMMENTS = [
    (
        "TABLE sources",
        "One row per listed source: a bucket prefix, a local folder or a file of locators. Names "
        "(objects.name) are relative to a source, so the same name can exist in two sources; "
        "image_embeddings shows the default source, where each name is one image.",
    ),
    ("COLUMN sources.source_id", "Key; objects.source_id refers to it."),
    (
        "COLUMN sources.root",
        "The normalised place listed: gs://bucket/prefix, s3://bucket/prefix, file:///abs/folder/ "
        "or list:/abs/locators.txt. A locator is its root followed by its name.",
    ),
    ("COLUMN sources.kind", "gs, s3, file (a local folder) or list (a file of locators)."),
    ("COLUMN sources.spec", "The source as it was last given to imgvec list / run."),
    (
        "COLUMN sources.is_default",
        "The source behind image_embeddings and the analyst functions; at most one row is true. "
        "The first source listed becomes the default; SELECT set_default_source('ROOT') switches.",
    ),
    ("COLUMN sources.first_listed_at", "When the source was first listed."),
    ("COLUMN sources.last_listed_at", "When the source was last listed."),
    (
        "COLUMN objects.source_id",
        "The source whose latest listing saw the object; name is relative to it. Live names are "
        "unique within a source.",
    ),
    (
        "COLUMN objects.name",
        "The name an analyst uses: the key relative to the listed prefix, e.g. IMG001.jpg; unique "
        "among the live objects of a source (in a file of locators a clashing name is the locator).",
    ),
    (
        "FUNCTION imgvec_default_source()",
        "The source_id of the default source (the one behind image_embeddings).",
    ),
    (
        "FUNCTION image_locator(text)",
        "The locator of an image given by name (in the default source) or by full locator (any "
        "source). Raises a clear error, with a hint, for a name never listed, deleted, or only in "
        "other sources.",
    ),
    (
        "FUNCTION image_vector(text, integer)",
        "The vector of an image (name or locator, as image_locator) in a space (default: the "
        "default space). Raises a clear error when it could not be embedded (with the reason) or "
        "is not in the space. Example: ORDER BY embedding <-> (SELECT image_vector('IMG001.jpg')).",
    ),
    (
        "FUNCTION similar_images(text, integer, integer)",
        "The k images of the default source nearest to an image (by name or full locator), itself "
        "excluded, with distance and 0-1 score. space defaults to the default space. Unknown or "
        "ambiguous names raise an error. Example: SELECT * FROM similar_images('IMG001.jpg', 10);",
    ),
    (
        "FUNCTION set_default_source(text)",
        "Make a source (its source_id, root, or spec as listed) the default behind "
        "image_embeddings; returns its root. No vector moves. Example: "
        "SELECT set_default_source('gs://photos/2026/');",
    ),
    (
        "FUNCTION image_score(double precision)",
        "A 0-1 score from an L2 distance between normalised vectors: (1 + cosine similarity) / 2 "
        "= 1 - d^2/4. NULL for a NULL distance.",
    ),
    (
        "VIEW image_embeddings",
        "The default space's vectors of the default source's images, under the names of the "
        "classic Vertex AI + pgvector tutorial: ORDER BY embedding <-> (SELECT embedding FROM "
        "image_embeddings WHERE image_id = …) uses the HNSW index. image_id is unique.",
    ),
    (
        "COLUMN image_embeddings.image_id",
        "objects.name: the key relative to the listed prefix, e.g. IMG001.jpg; unique in the view.",
    ),
]


def upgrade() -> None:
    for statement in (
        SOURCES_TABLE,
        "CREATE UNIQUE INDEX uq_sources_is_default ON sources (is_default) WHERE is_default",
        "ALTER TABLE objects ADD COLUMN source_id integer",
        BACKFILL_SOURCES,
        BACKFILL_OBJECTS,
        BACKFILL_DEFAULT,
        "ALTER TABLE objects ADD CONSTRAINT fk_objects_source_id_sources FOREIGN KEY (source_id) "
        "REFERENCES sources (source_id)",
        # Also serves the lookup of a name in a source.
        "CREATE UNIQUE INDEX uq_objects_source_id_name ON objects (source_id, name) "
        "WHERE deleted_at IS NULL",
        DEFAULT_SOURCE_FUNCTION,
        # Objects inserted by hand join the default source.
        "ALTER TABLE objects ALTER COLUMN source_id SET DEFAULT imgvec_default_source()",
        IMAGE_SCORE.format(strict="STRICT"),
        IMAGE_LOCATOR,
        IMAGE_VECTOR,
        SIMILAR_IMAGES,
        SET_DEFAULT_SOURCE,
    ):
        op.execute(statement)
    _pin_iterative_scan("strict_order")
    _replace_view(source_filter=True)
    _comment(COMMENTS)


def downgrade() -> None:
    _replace_view(source_filter=False)
    _pin_iterative_scan(None)
    for statement in (
        "DROP FUNCTION set_default_source(text)",
        "DROP FUNCTION image_vector(text, integer)",
        "DROP FUNCTION image_locator(text)",
        IMAGE_SCORE.format(strict="CALLED ON NULL INPUT"),
        "ALTER TABLE objects ALTER COLUMN source_id DROP DEFAULT",
        "DROP FUNCTION imgvec_default_source()",
        "DROP INDEX uq_objects_source_id_name",
        "ALTER TABLE objects DROP COLUMN source_id",
        "DROP TABLE sources",
    ):
        op.execute(statement)
    op.execute(_SIMILAR_IMAGES_0004)
    _comment(
        [
            (
                "COLUMN objects.name",
                "The name an analyst uses: the key relative to the listed prefix, e.g. IMG001.jpg.",
            ),
            (
                "FUNCTION image_score(double precision)",
                "A 0-1 score from an L2 distance between normalised vectors: (1 + cosine "
                "similarity) / 2 = 1 - d^2/4.",
            ),
            (
                "FUNCTION similar_images(text, integer, integer)",
                "The k images nearest to an image (by name or locator), itself excluded, with "
                "distance and 0-1 score. space defaults to the default space. Example: SELECT * "
                "FROM similar_images('IMG001.jpg', 10);",
            ),
            (
                "VIEW image_embeddings",
                "The default space's vectors under the names of the classic Vertex AI + pgvector "
                "tutorial: ORDER BY embedding <-> (SELECT embedding FROM image_embeddings WHERE "
                "image_id = …) uses the HNSW index.",
            ),
            (
                "COLUMN image_embeddings.image_id",
                "objects.name: the key relative to the listed prefix, e.g. IMG001.jpg.",
            ),
        ]
    )


def _replace_view(*, source_filter: bool) -> None:
    """The view keeps its columns and types, so CREATE OR REPLACE keeps its comments and grants.
    Until a space is the default the view stays the empty placeholder of 0001."""
    source = " AND o.source_id = (SELECT source_id FROM sources WHERE is_default)"
    if context.is_offline_mode():
        # `alembic upgrade head --sql`: the default space is known only when the script runs.
        op.execute(
            f"""
            DO $do$
            DECLARE space integer; dim integer;
            BEGIN
                SELECT space_id, dimension INTO space, dim FROM embedding_spaces WHERE is_default;
                IF space IS NULL THEN
                    RETURN;
                END IF;
                EXECUTE format($v$
                    CREATE OR REPLACE VIEW image_embeddings AS
                        SELECT o.name AS image_id,
                               o.locator AS content,
                               e.embedding::vector(%s) AS embedding
                        FROM embeddings e
                        JOIN objects o ON o.object_id = e.object_id
                        WHERE e.space_id = %s AND o.deleted_at IS NULL{source if source_filter else ""}
                $v$, dim, space);
            END
            $do$
            """
        )
        return
    bind = op.get_bind()
    default = bind.execute(
        text("SELECT space_id, dimension FROM embedding_spaces WHERE is_default")
    ).first()
    if default is None:
        return
    space_id, dimension = int(default[0]), int(default[1])
    op.execute(
        f"""
        CREATE OR REPLACE VIEW image_embeddings AS
            SELECT o.name AS image_id,
                   o.locator AS content,
                   e.embedding::vector({dimension}) AS embedding
            FROM embeddings e
            JOIN objects o ON o.object_id = e.object_id
            WHERE e.space_id = {space_id} AND o.deleted_at IS NULL{source if source_filter else ""}
        """
    )


def _pin_iterative_scan(mode: str | None) -> None:
    """similar_images() filters the index's candidates by source: with pgvector >= 0.8 it reads on
    until k rows pass (hnsw.iterative_scan), so a default source that is a small part of a space
    still gets k answers. pgvector 0.7 has no such setting: there it is left alone."""
    target = "FUNCTION similar_images(text, integer, integer)"
    if context.is_offline_mode():
        # `alembic upgrade head --sql`: the pgvector version is known only when the script runs.
        action = (
            "RESET hnsw.iterative_scan" if mode is None else f"SET hnsw.iterative_scan = {mode}"
        )
        op.execute(
            f"""
            DO $do$
            BEGIN
                IF (SELECT string_to_array(extversion, '.')::int[] >= ARRAY[0, 8]
                    FROM pg_extension WHERE extname = 'vector') THEN
                    EXECUTE 'ALTER {target} {action}';
                END IF;
            END
            $do$
            """
        )
        return
    version = (
        op.get_bind()
        .execute(text("SELECT extversion FROM pg_extension WHERE extname = 'vector'"))
        .scalar()
    )
    if version is None or tuple(int(p) for p in version.split(".")[:2]) < (0, 8):
        return
    if mode is None:
        op.execute(f"ALTER {target} RESET hnsw.iterative_scan")
    else:
        op.execute(f"ALTER {target} SET hnsw.iterative_scan = {mode}")


def _comment(comments: list[tuple[str, str]]) -> None:
    for target, comment in comments:
        op.execute(f"COMMENT ON {target} IS '{comment.replace(chr(39), chr(39) * 2)}'")


# 0004's similar_images, restored by the downgrade.
_SIMILAR_IMAGES_0004 = """
CREATE OR REPLACE FUNCTION similar_images(image text, k integer DEFAULT 5, space integer DEFAULT imgvec_default_space())
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
