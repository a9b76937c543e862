"""imgvec: list a bucket of images, embed them, load the vectors into PostgreSQL + pgvector.

The data flow (ARCHITECTURE.md draws it, and says where everything is):

    source plug-in (sources/)
      → listing/            writes  manifests/manifest-*.csv      (checkpoints/manifest.py)
      → embedding/stage.py  writes  embeddings/<space>/part-*.csv  (checkpoints/parts.py, failures.py)
      → loading/            writes  the tables                      (db/)

Stages hand work over only through those files; `runner.py` wires the embed stage to the
database and chains the three for `imgvec run`. Importing the package is cheap: backends that
need torch or the Vertex SDK import them lazily.
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    # The notebook API, imported on first use so `import pipeline` stays light.
    if name in ("embed_images", "embed_texts"):
        from pipeline.embedding import api

        return getattr(api, name)
    raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
