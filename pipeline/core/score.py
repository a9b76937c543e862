"""The 0-1 score shown beside a distance — the one definition. The SQL function
`image_score(distance)` (migration 0006) computes the same; tests/test_core.py checks they agree.

For L2-normalised vectors the L2 distance d lies in [0, 2] and cosine similarity is 1 - d²/2; the
score is (1 + cosine) / 2 = 1 - d²/4, from 0 (opposite) to 1 (identical). Rank first, then read
scores: what a "good" score is differs from model to model."""

from __future__ import annotations

from typing import overload


@overload
def score(distance: float) -> float: ...
@overload
def score(distance: None) -> None: ...
def score(distance: float | None) -> float | None:
    """The score of an L2 distance between unit vectors (None for None, as SQL's NULL)."""
    if distance is None:
        return None
    return float(min(1.0, max(0.0, 1.0 - distance * distance / 4.0)))
