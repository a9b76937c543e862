"""Attributes of listed objects beyond what the store reports: from the source itself (a dataset's
columns), from the folder layout (`--attribute-from-path 'class={1}'`) and from a sidecar table
(`--attributes labels.csv`). Merged in that order, the later winning for a key. Attributes are not
content: a new value never makes an object changed (the store counts it relabeled instead)."""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.core.objects import ObjectInfo
from pipeline.errors import ConfigError, UsageError

# The columns taken for the sidecar's key when --attributes-key does not name one, in this order.
KEY_COLUMNS = ("name", "locator", "file", "filename", "path", "image")

_PLACEHOLDER = re.compile(r"\{(\d+)\}")
_PATH_FORMS = "NAME=TEMPLATE, {N} the Nth folder of the name from 0: 'class={1}', 'split={0}'"


@dataclass(frozen=True)
class PathAttribute:
    """One attribute made of an object's folders: `train/n01443537/x.JPEG` with `class={1}` has
    class = n01443537."""

    name: str
    template: str

    @classmethod
    def parse(cls, spec: str) -> PathAttribute:
        name, equals, template = spec.partition("=")
        if not equals or not name.strip() or not _PLACEHOLDER.search(template):
            raise UsageError(
                f"--attribute-from-path {spec!r} is not NAME=TEMPLATE", hint=f"forms: {_PATH_FORMS}"
            )
        return cls(name.strip(), template)

    def value(self, object_name: str) -> str | None:
        """The attribute's value, or None when the name has not that many folders."""
        folders = object_name.split("/")[:-1]
        if any(int(n) >= len(folders) for n in _PLACEHOLDER.findall(self.template)):
            return None
        return _PLACEHOLDER.sub(lambda match: folders[int(match.group(1))], self.template)


@dataclass
class ObjectAttributes:
    """What attributes each listed object gets; remembers which sidecar keys matched an object."""

    from_path: tuple[PathAttribute, ...] = ()
    sidecar: dict[str, dict[str, Any]] = field(default_factory=dict)
    _matched: set[str] = field(default_factory=set, init=False)
    _used: set[PathAttribute] = field(default_factory=set, init=False)  # gave some object a value
    _deepest: int = field(default=0, init=False)  # the most folders a labelled name had

    @classmethod
    def build(
        cls, sidecar_file: str | None, key_column: str | None, from_path: Iterable[str]
    ) -> ObjectAttributes:
        if key_column and not sidecar_file:
            raise UsageError("--attributes-key names a column of --attributes FILE, given none")
        sidecar = read_sidecar(sidecar_file, key_column) if sidecar_file else {}
        return cls(tuple(PathAttribute.parse(spec) for spec in from_path), sidecar)

    def label(self, obj: ObjectInfo) -> ObjectInfo:
        """The object with its merged attributes: the source's, the path's, the sidecar's."""
        if not self.from_path and not self.sidecar:
            return obj
        merged = dict(obj.attributes or {})
        self._deepest = max(self._deepest, obj.name.count("/"))
        for attribute in self.from_path:
            if (value := attribute.value(obj.name)) is not None:
                merged[attribute.name] = value
                self._used.add(attribute)
        for key in (obj.name, obj.locator):
            if key in self.sidecar:
                self._matched.add(key)
                merged.update(self.sidecar[key])
                break
        return replace(obj, attributes=merged or obj.attributes)

    def unmatched(self) -> list[str]:
        """The sidecar's keys that matched no object labelled so far, sorted."""
        return sorted(self.sidecar.keys() - self._matched)

    def unused_path_note(self) -> str | None:
        """One line naming the --attribute-from-path rules that gave no object labelled so far a
        value (`class={5}` over names of one folder: every image's attribute cleared, silently)."""
        unused = [a for a in self.from_path if a not in self._used]
        if not unused:
            return None
        rules = ", ".join(f"'{a.name}={a.template}'" for a in unused)
        return (
            f"note: --attribute-from-path {rules} gave no listed object a value: the names have "
            f"at most {self._deepest} folder(s), counted from {{0}}"
        )


def read_sidecar(path: str, key_column: str | None) -> dict[str, dict[str, Any]]:
    """key -> attributes from a CSV or Parquet table; an empty or missing value is no attribute."""
    if not Path(path).is_file():
        raise ConfigError(f"--attributes {path}: no such file")
    is_parquet = Path(path).suffix.lower() in (".parquet", ".pq")
    if is_parquet and importlib.util.find_spec("pyarrow") is None:
        raise ConfigError(
            f"--attributes {path}: reading Parquet needs pyarrow",
            hint="pip install 'imgvec[parquet]'",
        )
    if is_parquet:
        table = pd.read_parquet(path)
        key = _key_column([str(c) for c in table.columns], key_column, path)
    else:
        header = pd.read_csv(path, nrows=0).columns
        key = _key_column([str(c) for c in header], key_column, path)
        # The key is read as text: a name "007.jpg" or "42" must stay as written.
        table = pd.read_csv(path, dtype={key: "string"})
    table = table.convert_dtypes()  # integers with gaps stay integers
    attribute_columns = [c for c in table.columns if c != key]
    sidecar: dict[str, dict[str, Any]] = {}
    for row in table.itertuples(index=False, name=None):
        record = dict(zip(table.columns, row, strict=True))
        if _is_missing(record[key]):
            continue
        sidecar[str(record[key])] = {
            str(column): _scalar(record[column])
            for column in attribute_columns
            if not _is_missing(record[column])
        }
    return sidecar


def _key_column(columns: list[str], wanted: str | None, path: str) -> str:
    if wanted is not None:
        if wanted not in columns:
            raise ConfigError(
                f"--attributes-key {wanted!r}: {path} has no such column",
                hint=f"its columns: {', '.join(columns)}",
            )
        return wanted
    by_lower = {c.lower(): c for c in columns}
    for candidate in KEY_COLUMNS:
        if candidate in by_lower:
            return by_lower[candidate]
    raise ConfigError(
        f"--attributes {path}: no key column (one named {', '.join(KEY_COLUMNS)})",
        hint=f"name it with --attributes-key; its columns: {', '.join(columns)}",
    )


def _is_missing(value: Any) -> bool:
    return value is None or value is pd.NA or value == "" or (value != value)  # NaN != NaN


def _scalar(value: Any) -> Any:
    """A JSON scalar: numpy's and pandas' numbers as Python's, a date or time (Parquet) as ISO text."""
    if isinstance(value, date):
        return value.isoformat()
    return value.item() if hasattr(value, "item") else value
