"""imgvec: list a bucket of images, embed them, load the vectors into PostgreSQL + pgvector.

Importing the package is cheap: backends that need torch or the Vertex SDK import them lazily.
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    # The notebook API, imported on first use so `import pipeline` stays light.
    if name in ("embed_images", "embed_texts"):
        from pipeline.embedding import api

        return getattr(api, name)
    raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
