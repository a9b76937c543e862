"""imgvec: list a bucket of images, embed them, load the vectors into PostgreSQL + pgvector.

Importing the package is cheap: backends that need torch or the Vertex SDK import them lazily.
"""

__version__ = "0.1.0"
