"""Sources and backends are plug-ins, found here by name.

imgvec's own are listed below by import path (so that finding one imports nothing else: no torch,
no cloud client); a third party adds more without touching imgvec, through Python entry points,
as `llm` and pytest plug-ins do:

    [project.entry-points."imgvec.backends"]
    mymodel = "my_package.backend:MyBackend"

    [project.entry-points."imgvec.sources"]
    myscheme = "my_package.source:MySource"

A backend class is an `EmbeddingBackend` (pipeline/embedding/backends/base.py): its `name`, its
`Options` (a pydantic model the CLI turns into flags), its `input_kind` and `embed_image_batch`.
A source class is a `Source` (pipeline/sources/base.py): its `scheme`, `list()` and `read()`.
An entry point's name is the backend's name or the source's scheme; an entry point that names an
existing one replaces it (deliberately: a plug-in may ship a better reader of a store).
"""

from __future__ import annotations

import difflib
import functools
import importlib
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pipeline.errors import ConfigError, UsageError

if TYPE_CHECKING:
    from pipeline.core.space import EmbeddingSpace
    from pipeline.embedding.backends.base import EmbeddingBackend
    from pipeline.sources.base import Source

BACKENDS_GROUP = "imgvec.backends"
SOURCES_GROUP = "imgvec.sources"

#: backend name -> "module:Class"
BUILTIN_BACKENDS = {
    "clip": "pipeline.embedding.backends.clip:ClipBackend",
    "vertex": "pipeline.embedding.backends.vertex:VertexBackend",
}
#: source scheme -> "module:Class". Sources with a URI scheme are chosen by it; a spec without
#: one (a path) goes to the first source whose `accepts(spec)` says yes, in this order.
BUILTIN_SOURCES = {
    "gs": "pipeline.sources.gcs:GcsSource",
    "s3": "pipeline.sources.s3:S3Source",
    "file": "pipeline.sources.local:LocalSource",
    "list": "pipeline.sources.locator_file:LocatorFileSource",
    "parquet": "pipeline.sources.parquet:ParquetSource",
}


@functools.cache
def _registry(group: str) -> dict[str, str]:
    """name -> "module:Class", imgvec's own first, then the installed plug-ins'."""
    found = dict(BUILTIN_BACKENDS if group == BACKENDS_GROUP else BUILTIN_SOURCES)
    for entry_point in entry_points(group=group):
        found[entry_point.name] = entry_point.value
    return found


def _load(target: str) -> Any:
    module, _, attribute = target.partition(":")
    try:
        loaded: Any = importlib.import_module(module)
    except ImportError as err:  # (the CLI names the extra to install when it is one of ours)
        raise ConfigError(f"cannot load plug-in {target}: {err}") from err
    for part in attribute.split("."):
        loaded = getattr(loaded, part)
    return loaded


def backend_names() -> list[str]:
    return list(_registry(BACKENDS_GROUP))


def backend_class(name: str) -> type[EmbeddingBackend]:
    """The backend class of that name (any case: `CLIP` is clip), or a usage error naming the
    installed ones."""
    registry = _registry(BACKENDS_GROUP)
    name = _known_name(name, registry)
    if name not in registry:
        raise UsageError(
            f"unknown backend {name!r}; installed: {', '.join(registry)}",
            hint=_did_you_mean(name, registry)
            or "a backend from another package is found once that package is installed",
        )
    return _load(registry[name])


def get_backend(name: str, **options: Any) -> EmbeddingBackend:
    """A backend by name, built from its options (checked by its Options model)."""
    return backend_class(name).from_options(**options)


def backend_for_space(space: EmbeddingSpace) -> EmbeddingBackend:
    """A backend for a space found in the database, loading nothing: it embeds texts and images
    in that space, or (weights it cannot find again, a backend not installed here) says, when
    asked to, which flags select the space."""
    try:
        cls = backend_class(space.backend)
    except ConfigError as err:
        from pipeline.embedding.backends.unavailable import UnavailableBackend

        return UnavailableBackend(space, str(err), f"--backend {space.backend}")
    return cls.for_space(space)


def source_class(scheme: str) -> type[Source]:
    registry = _registry(SOURCES_GROUP)
    scheme = _known_name(scheme, registry)
    if scheme not in registry:
        raise ConfigError(
            f"no source reads {scheme}:// locators; installed sources: {', '.join(registry)}",
            hint=_did_you_mean(scheme, registry),
        )
    return _load(registry[scheme])


def source_class_for(spec: str) -> type[Source]:
    """The source that lists `spec`: by its URI scheme, else (a path) the first that accepts it."""
    scheme = urlsplit(spec).scheme
    registry = _registry(SOURCES_GROUP)
    if scheme in registry:
        return _load(registry[scheme])
    if len(scheme) > 1:  # (a one-letter scheme is a Windows drive)
        raise UsageError(
            f"unknown source scheme {scheme!r} in {spec!r}; installed sources: "
            f"{', '.join(registry)}",
            hint=_did_you_mean(scheme, registry),
        )
    for target in registry.values():
        cls = _load(target)
        if cls.accepts(spec):
            return cls
    raise ConfigError(f"{spec}: no such folder or locator file")


def reads_locator(locator: str) -> bool:
    """Whether some installed source reads this locator (a URI of its scheme)."""
    return urlsplit(locator).scheme in _registry(SOURCES_GROUP)


def _known_name(name: str, known: dict[str, str]) -> str:
    """The registered name `name` stands for: itself, else the one name equal to it but for case
    (`--backend CLIP`: names are lower case, a user's shift key is not; URI schemes are
    case-insensitive too). An exact match wins, so a plug-in may still register `Clip`."""
    if name in known:
        return name
    same = [k for k in known if k.casefold() == name.casefold()]
    return same[0] if len(same) == 1 else name


def _did_you_mean(name: str, known: dict[str, str]) -> str | None:
    # (compared in lower case: `CLIPP` is as close to clip as `clipp` is)
    by_folded = {k.casefold(): k for k in known}
    close = difflib.get_close_matches(name.casefold(), list(by_folded), n=1, cutoff=0.6)
    return f"did you mean {by_folded[close[0]]!r}?" if close else None
