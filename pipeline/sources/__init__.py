"""Sources of images, one plug-in module each (the contract: `base.Source`), found through the
registry in `pipeline.plugins`."""

from __future__ import annotations

from pipeline import plugins
from pipeline.sources.base import Source, SourceOptions


def open_source(spec: str, options: SourceOptions) -> Source:
    """The source that lists `spec`: a URI of an installed source's scheme, a folder, or a file of
    locators."""
    return plugins.source_class_for(spec)(spec, options)


__all__ = ["Source", "SourceOptions", "open_source"]
