"""Text and image search from Python and the CLI, and saved text queries for SQL users.

Scores: for L2-normalised vectors the L2 distance d lies in [0, 2] and cosine similarity is
1 - d²/2; the score shown is (1 + cosine) / 2 = 1 - d²/4, from 0 (opposite) to 1 (identical).
Rank first, then read scores: what a "good" score is differs from model to model.

Searching only reads: it works under the read-only role `imgvec db grant-reader` creates. The
modules: `query` (the nearest images to a text, images or an upload), `similar` (to a listed
object's stored vector), `nearest` (the SQL both run), `filters` (--where and the plain
filters), `query_image` (which listed image a query names, or why none), `empty` (why an answer
is empty), `answers` (what a search returns), `diverse` (a sample spread over a space's
clusters), `texts` (saving text queries: the one writer here, for `imgvec text-embed`).
"""

from pipeline.search.answers import Match, Matches, NotFound, QueryError
from pipeline.search.query import search
from pipeline.search.similar import similar_to
from pipeline.search.texts import save_text_queries

__all__ = [
    "Match",
    "Matches",
    "NotFound",
    "QueryError",
    "save_text_queries",
    "search",
    "similar_to",
]
