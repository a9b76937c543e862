"""The COMMENTs the migrations set on imgvec's tables and their columns (`\\d+ TABLE` in psql):
pipeline.db.tables gives them to the metadata, so that `alembic check` compares them too.

A migration that changes a comment changes it here as well (`tests/test_alembic.py` fails until
they agree).
"""

from __future__ import annotations

# table: (the table's comment, {column: the column's comment})
COMMENTS: dict[str, tuple[str, dict[str, str]]] = {
    "embedding_spaces": (
        "A vector space: one backend + model + weights + dimension. Spaces live side by side; adding one or changing the default never touches another space's vectors.",
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
        "Image vectors, one row per object per space, partitioned by space_id (one partition embeddings_space_<id> per space, each with its own HNSW index on embedding::vector(dim)). Query a space through image_embeddings or with WHERE space_id = … and the cast.",
        {
            "space_id": "The embedding space (partition key).",
            "object_id": "The embedded object.",
            "embedding": "The vector; all rows of a space have the space's dimension.",
            "content_hash": "Hash of the bytes that were embedded (objects.content_hash at the time).",
            "created_at": "When the vector was loaded.",
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
    "loaded_parts": (
        "Embed-stage CSV parts already loaded into embeddings; written in the same transaction as the part's rows, so a crash never loads a part twice or half.",
        {
            "space_id": "The space the part belongs to.",
            "part": "Where the part lives: its path or gs:// URI, e.g. /work/embeddings/clip--ViT-B-32--laion2b_s34b_b79k--512/part-00017.csv.",
            "rows": "Vectors the part held.",
            "loaded_at": "When it was loaded.",
            "run_id": "The load run that loaded it.",
        },
    ),
    "objects": (
        "One row per image object ever listed, keyed by its full locator. Rows are never deleted by a listing: an object that disappears gets deleted_at, and its embeddings are kept (it is no longer searched).",
        {
            "object_id": "Surrogate key used by embeddings and failures.",
            "locator": "Full URI of the object: gs://bucket/key, s3://bucket/key or file:///path.",
            "scheme": "Kind of source that listed the object (the scheme of its source plug-in: gs, s3, file, ...).",
            "bucket": "Bucket name (gs, s3); NULL for local files.",
            "key": "Object key inside the bucket, or the absolute path of a local file.",
            "name": "The name an analyst uses: the key relative to the listed prefix, e.g. IMG001.jpg; unique among the live objects of a source (in a file of locators a clashing name is the locator).",
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
            "source_id": "The source whose latest listing saw the object; name is relative to it. Live names are unique within a source.",
            "attributes": 'What is known about the image beyond the store\'s metadata, as a JSON object of scalars, e.g. {"class": "cat", "split": "train"}: from a sidecar table, folder names or dataset columns. Changing it never re-embeds the image. Filter with attributes @> \'{"class": "cat"}\' (GIN index ix_objects_attributes).',
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
            "status": "running, succeeded, partial (finished with failures), failed, or interrupted (stopped by a signal; rerun the same command to resume).",
            "counts": 'Counters as JSON, e.g. {"new": 10, "changed": 2, "embedded": 12, "failed": 1}.',
            "error": "The one-line error of a failed run (never contains secrets).",
            "backend_pid": "PostgreSQL backend (pg_backend_pid) of the session that runs the stage: while it lives, the run is alive.",
            "backend_start": "When that backend started (pids are reused).",
            "exit_code": "How the run ended for a scheduler: 0 done, 3 done with failures, 1 failed, 2 bad usage, 75 retry later, 130/143 stopped by a signal; NULL while running.",
            "sharded_run": "The sharded run this row is one task's stage of (imgvec run --run-id, or the batch engine's execution id); NULL outside one.",
            "shard": "The task: I/N, task I (0-based) of N, as --shard takes it; NULL when the stage ran unsharded.",
        },
    ),
    "sources": (
        "One row per listed source: a bucket prefix, a local folder or a file of locators. Names (objects.name) are relative to a source, so the same name can exist in two sources; image_embeddings shows the default source, where each name is one image.",
        {
            "source_id": "Key; objects.source_id refers to it.",
            "root": "The normalised place listed: gs://bucket/prefix, s3://bucket/prefix, file:///abs/folder/ or list:/abs/locators.txt. A locator is its root followed by its name.",
            "kind": "gs, s3, file (a local folder) or list (a file of locators).",
            "spec": "The source as it was last given to imgvec list / run.",
            "is_default": "The source behind image_embeddings and the analyst functions; at most one row is true. The first source listed becomes the default; SELECT set_default_source('ROOT') switches.",
            "first_listed_at": "When the source was first listed.",
            "last_listed_at": "When the source was last listed.",
        },
    ),
    "text_embeddings": (
        "Text vectors per space, for text-to-image search. A row with no embedding yet is pending: `imgvec text-embed` (or the next `imgvec run` of that space) fills it.",
        {
            "text_embedding_id": "Key.",
            "text": "The words, e.g. 'red car' (CLIP reads up to 77 tokens, Vertex AI 32).",
            "space_id": "The space the vector lives in; defaults to the default space.",
            "embedding": "The text's vector in that space; NULL while pending.",
            "created_at": "When the text was saved.",
            "embedded_at": "When its vector was computed.",
        },
    ),
}
