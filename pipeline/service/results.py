"""A result, the one JSON shape of an image in every answer (design: issue 16, "HTTP API")."""

from __future__ import annotations

import re
from typing import Any, overload

# The search code speaks the command line's flags; over HTTP the same things are parameters.
_FLAG = re.compile(
    r"--(where|image|prefix|content-type|since|min-score|k|n|space|source|text)\b[ =]?"
)


@overload
def api_terms(text: str) -> str: ...
@overload
def api_terms(text: None) -> None: ...


def api_terms(text: str | None) -> str | None:
    """A message in the API's terms: `--where 'a=b'` -> `where='a=b'`, `--min-score` -> `min_score=`."""
    if text is None:
        return None
    return _FLAG.sub(lambda flag: flag[1].replace("-", "_") + "=", text)


def image_urls(object_id: int) -> dict[str, str]:
    return {
        "thumbnail_url": f"/api/images/{object_id}/thumbnail",
        "original_url": f"/api/images/{object_id}/original",
    }


def result(
    *,
    object_id: int,
    name: str,
    locator: str,
    content_type: str | None,
    attributes: dict[str, Any] | None,
    distance: float | None = None,
    score: float | None = None,
) -> dict[str, Any]:
    found: dict[str, Any] = {"object_id": object_id, "name": name, "locator": locator}
    if distance is not None:
        found |= {"distance": distance, "score": score}
    return found | {
        "content_type": content_type,
        "attributes": attributes or {},
        **image_urls(object_id),
    }


def match_result(match) -> dict[str, Any]:
    """A search's Match (pipeline.search.answers) as a result."""
    return result(
        object_id=match.object_id,
        name=match.name,
        locator=match.locator,
        content_type=match.content_type,
        attributes=match.attributes,
        distance=match.distance,
        score=match.score,
    )


def answer(space: str, query: dict[str, Any], matches) -> dict[str, Any]:
    """A search's answer: the results, and when there are none, why (`note`)."""
    return {
        "space": space,
        "query": query,
        "results": [match_result(m) for m in matches],
        "note": api_terms(matches.why_empty),
    }
