"""Initial schema: objects, embedding spaces, embeddings (one partition per space), runs, failures.

Revision ID: 0001_initial
Revises:
Create Date: 2026-11-22
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0001_initial"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Every table and column gets a COMMENT so that `\d+` in psql explains the schema.
COMMENTS = {
    "alembic_version": (
        "Schema version, owned by Alembic: `imgvec db upgrade` (or first use) brings it to the latest.",
        {"version_num": "The Alembic revision the schema is at."},
    ),
    "objects": (
        "One row per image object ever listed, keyed by its full locator. Rows are never deleted "
        "by a listing: an object that disappears gets deleted_at, and its embeddings stay until "
        "`imgvec purge`.",
        {
            "object_id": "Surrogate key used by embeddings and failures.",
            "locator": "Full URI of the object: gs://bucket/key, s3://bucket/key or file:///path.",
            "scheme": "Source kind: gs, s3 or file.",
            "bucket": "Bucket name (gs, s3); NULL for local files.",
            "key": "Object key inside the bucket, or the absolute path of a local file.",
            "name": "The name an analyst uses: the key relative to the listed prefix, e.g. IMG001.jpg.",
            "size": "Size in bytes.",
            "generation": "GCS generation, S3 version id, or local mtime in nanoseconds: changes on overwrite.",
            "etag": "ETag as reported by the store (S3: quoted MD5 or multipart tag).",
            "md5": "MD5 of the content, base64, when the store reports it (GCS md5Hash).",
            "crc32c": "CRC32C of the content, base64, when the store reports it (GCS crc32c).",
            "content_hash": "Hash that identifies the bytes across locators; identical bytes are embedded once per space.",
            "content_type": "MIME type reported by the store or guessed from the extension.",
            "updated_at": "Last modification time reported by the store.",
            "first_seen": "When a listing first saw this locator.",
            "last_seen": "When a listing last saw this locator.",
            "deleted_at": "When a complete listing no longer found the object; NULL while it exists.",
        },
    ),
    "embedding_spaces": (
        "A vector space: one backend + model + weights + dimension. Spaces live side by side; adding "
        "one or changing the default never touches another space's vectors.",
        {
            "space_id": "Key; also the value that selects this space's partition of embeddings.",
            "name": "Readable unique name, backend/model/weights/dimension, e.g. clip/ViT-B-32/laion2b_s34b_b79k/512.",
            "backend": "Embedding backend: clip (open_clip) or vertex (multimodalembedding@001).",
            "model": "Model name within the backend, e.g. ViT-B-32 or multimodalembedding@001.",
            "weights": "Weights tag or checkpoint identity, e.g. laion2b_s34b_b79k; 'none' for random weights.",
            "dimension": "Vector dimension; every vector of the space has exactly this many components.",
            "metric": "Distance the model was trained for: cosine, l2 or ip.",
            "normalized": "True when vectors are L2-normalised: then <-> (L2) ranks exactly as cosine distance.",
            "is_default": "The space behind the image_embeddings view; at most one row is true.",
            "created_at": "When the space was registered.",
        },
    ),
    "embeddings": (
        "Image vectors, one row per object per space, partitioned by space_id (one partition "
        "embeddings_space_<id> per space, each with its own HNSW index on embedding::vector(dim)). "
        "Query a space through image_embeddings or with WHERE space_id = … and the cast.",
        {
            "space_id": "The embedding space (partition key).",
            "object_id": "The embedded object.",
            "embedding": "The vector; all rows of a space have the space's dimension.",
            "content_hash": "Hash of the bytes that were embedded (objects.content_hash at the time).",
            "created_at": "When the vector was loaded.",
        },
    ),
    "runs": (
        "One row per stage run (list, embed, load, index, or a whole run): when, what, how many, how it ended.",
        {
            "run_id": "Key.",
            "stage": "list, embed, load, index or run.",
            "source": "What the run worked on: the listed source or the work dir.",
            "space_id": "The embedding space, for embed/load/index runs.",
            "started_at": "Start time.",
            "finished_at": "End time; NULL while running or when the process died.",
            "status": "running, succeeded, partial (finished with failures) or failed.",
            "counts": 'Counters as JSON, e.g. {"new": 10, "changed": 2, "embedded": 12, "failed": 1}.',
            "error": "The one-line error of a failed run (never contains secrets).",
        },
    ),
    "failures": (
        "Objects a stage could not process, with the reason; the run went on without them.",
        {
            "failure_id": "Key.",
            "locator": "Full URI of the object, as listed.",
            "stage": "The stage that failed: list, embed or load.",
            "space_id": "The embedding space, for embed/load failures; NULL otherwise.",
            "reason": "Why, in one line: e.g. 'truncated JPEG', 'not an image', 'over the 20 MB limit'.",
            "attempts": "How many times the object was tried.",
            "first_failed_at": "First failure.",
            "last_failed_at": "Latest failure.",
            "run_id": "The run of the latest failure.",
        },
    ),
    "image_embeddings": (
        "The default space's vectors under the names of the classic Vertex AI + pgvector tutorial: "
        "ORDER BY embedding <-> (SELECT embedding FROM image_embeddings WHERE image_id = …) uses the HNSW index.",
        {
            "image_id": "objects.name: the key relative to the listed prefix, e.g. IMG001.jpg.",
            "content": "objects.locator: the full URI of the image.",
            "embedding": "The vector in the default space, typed vector(dimension).",
        },
    ),
}


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS vector")
    for statement in _statements(
        """
        CREATE TABLE objects (
            object_id     bigint GENERATED ALWAYS AS IDENTITY,
            locator       text NOT NULL,
            scheme        text NOT NULL,
            bucket        text,
            key           text NOT NULL,
            name          text NOT NULL,
            size          bigint,
            generation    text,
            etag          text,
            md5           text,
            crc32c        text,
            content_hash  text,
            content_type  text,
            updated_at    timestamptz,
            first_seen    timestamptz NOT NULL DEFAULT now(),
            last_seen     timestamptz NOT NULL DEFAULT now(),
            deleted_at    timestamptz,
            CONSTRAINT pk_objects PRIMARY KEY (object_id),
            CONSTRAINT uq_objects_locator UNIQUE (locator),
            CONSTRAINT ck_objects_scheme CHECK (scheme IN ('gs', 's3', 'file'))
        );
        CREATE INDEX ix_objects_name ON objects (name);
        CREATE INDEX ix_objects_content_hash ON objects (content_hash);

        CREATE TABLE embedding_spaces (
            space_id    integer GENERATED ALWAYS AS IDENTITY,
            name        text NOT NULL,
            backend     text NOT NULL,
            model       text NOT NULL,
            weights     text NOT NULL,
            dimension   integer NOT NULL,
            metric      text NOT NULL DEFAULT 'cosine',
            normalized  boolean NOT NULL,
            is_default  boolean NOT NULL DEFAULT false,
            created_at  timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT pk_embedding_spaces PRIMARY KEY (space_id),
            CONSTRAINT uq_embedding_spaces_name UNIQUE (name),
            CONSTRAINT ck_embedding_spaces_dimension CHECK (dimension BETWEEN 1 AND 16000),
            CONSTRAINT ck_embedding_spaces_metric CHECK (metric IN ('cosine', 'l2', 'ip'))
        );
        CREATE UNIQUE INDEX uq_embedding_spaces_is_default ON embedding_spaces (is_default) WHERE is_default;

        -- One partition per space (created when the space is registered) so that each space has its
        -- own HNSW index, its own statistics, and can be dropped without touching the others.
        CREATE TABLE embeddings (
            space_id      integer NOT NULL,
            object_id     bigint NOT NULL,
            embedding     vector NOT NULL,
            content_hash  text,
            created_at    timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT pk_embeddings PRIMARY KEY (space_id, object_id),
            CONSTRAINT fk_embeddings_space_id_embedding_spaces FOREIGN KEY (space_id)
                REFERENCES embedding_spaces (space_id),
            CONSTRAINT fk_embeddings_object_id_objects FOREIGN KEY (object_id)
                REFERENCES objects (object_id) ON DELETE CASCADE
        ) PARTITION BY LIST (space_id);
        CREATE INDEX ix_embeddings_object_id ON embeddings (object_id);

        CREATE TABLE runs (
            run_id       bigint GENERATED ALWAYS AS IDENTITY,
            stage        text NOT NULL,
            source       text,
            space_id     integer,
            started_at   timestamptz NOT NULL DEFAULT now(),
            finished_at  timestamptz,
            status       text NOT NULL DEFAULT 'running',
            counts       jsonb NOT NULL DEFAULT '{}'::jsonb,
            error        text,
            CONSTRAINT pk_runs PRIMARY KEY (run_id),
            CONSTRAINT fk_runs_space_id_embedding_spaces FOREIGN KEY (space_id)
                REFERENCES embedding_spaces (space_id),
            CONSTRAINT ck_runs_stage CHECK (stage IN ('list', 'embed', 'load', 'index', 'run')),
            CONSTRAINT ck_runs_status CHECK (status IN ('running', 'succeeded', 'partial', 'failed'))
        );
        CREATE INDEX ix_runs_started_at ON runs (started_at);

        CREATE TABLE failures (
            failure_id       bigint GENERATED ALWAYS AS IDENTITY,
            locator          text NOT NULL,
            stage            text NOT NULL,
            space_id         integer,
            reason           text NOT NULL,
            attempts         integer NOT NULL DEFAULT 1,
            first_failed_at  timestamptz NOT NULL DEFAULT now(),
            last_failed_at   timestamptz NOT NULL DEFAULT now(),
            run_id           bigint,
            CONSTRAINT pk_failures PRIMARY KEY (failure_id),
            CONSTRAINT uq_failures_locator_stage_space_id UNIQUE NULLS NOT DISTINCT (locator, stage, space_id),
            CONSTRAINT fk_failures_space_id_embedding_spaces FOREIGN KEY (space_id)
                REFERENCES embedding_spaces (space_id),
            CONSTRAINT fk_failures_run_id_runs FOREIGN KEY (run_id)
                REFERENCES runs (run_id) ON DELETE SET NULL,
            CONSTRAINT ck_failures_stage CHECK (stage IN ('list', 'embed', 'load'))
        );

        -- Until a space is made the default the compatibility view is empty (but well typed).
        CREATE VIEW image_embeddings AS
            SELECT NULL::text AS image_id, NULL::text AS content, NULL::vector AS embedding
            WHERE false;
        """
    ):
        op.execute(statement)
    for table, (table_comment, columns) in COMMENTS.items():
        kind = "VIEW" if table == "image_embeddings" else "TABLE"
        op.execute(f"COMMENT ON {kind} {table} IS {_literal(table_comment)}")
        for column, comment in columns.items():
            op.execute(f"COMMENT ON COLUMN {table}.{column} IS {_literal(comment)}")


def downgrade() -> None:
    # The vector extension stays: other schemas in the same database may use it.
    for statement in _statements(
        """
        DROP VIEW IF EXISTS image_embeddings;
        DROP TABLE IF EXISTS failures;
        DROP TABLE IF EXISTS runs;
        DROP TABLE IF EXISTS embeddings CASCADE;
        DROP TABLE IF EXISTS embedding_spaces;
        DROP TABLE IF EXISTS objects;
        """
    ):
        op.execute(statement)


def _statements(script: str) -> list[str]:
    # One statement per execute: the asyncpg driver prepares each, and a prepared statement
    # holds exactly one command.
    return [part.strip() for part in script.split(";\n") if part.strip().rstrip(";")]


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
