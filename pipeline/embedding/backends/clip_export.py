"""The export cache of CLIP towers: each (model, weights) exported once to ONNX, image and text
towers, which both ONNX Runtime and OpenVINO read (OpenVINO reads ONNX as fast as its own IR and
computes the same numbers: one export, not one per runtime). Later runs load the folder without
importing torch.

Layout: `<cache>/<model>--<weights>-<key>/` holding `image.onnx`, `text.onnx` (and their
`.data` weights) and `meta.json`. The key hashes what changes the exported graph: the model,
the weights (a checkpoint's content is in its tag; a published tag adds its cached file's path,
size and time), open_clip's, torch's and the exporter's versions. An export is written to a
temporary folder and renamed into place, under a lock: N shard processes starting at once export
once, and a killed export leaves no half folder that a later run would load."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.metadata
import io
import json
import os
import re
import shutil
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pipeline.embedding.backends import clip_models
from pipeline.errors import ConfigError, first_line

LAYOUT = 1  # bump when the files or meta.json change meaning: old folders are then not read
CACHE_VARIABLE = "IMGVEC_MODEL_CACHE"
META = "meta.json"
IMAGE_FILE, TEXT_FILE = "image.onnx", "text.onnx"
_VERSIONED = ("open_clip_torch", "torch", "onnx", "onnxscript")
# An export of the same model and weights made for other versions, unused this long, is removed
# when a new one is made (~600 MB for ViT-B-32 that nothing else would ever free). Not at once:
# another install sharing the cache may still load it, and would otherwise re-export each run.
STALE_AFTER_DAYS = 30


class ExportFailed(ConfigError):
    """The export could not be made (the cache cannot be written, the exporter cannot trace the
    model); not raised for the weights themselves, which eager PyTorch would need as well."""


def cache_root(model_cache: str | None) -> Path:
    """--model-cache, else $IMGVEC_MODEL_CACHE, else the platform's cache dir."""
    chosen = model_cache or os.environ.get(CACHE_VARIABLE)
    if chosen:
        return Path(chosen).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("imgvec", appauthor=False)) / "models"


def export_folder(root: Path, model: str, weights_tag: str, weights: str | None) -> Path:
    """Where the export of these weights lives (whether it exists yet or not)."""
    material = {
        "layout": LAYOUT,
        "model": model,
        "weights": weights_tag,
        "weights_file": _weights_fingerprint(model, weights),
        "versions": {name: _version(name) for name in _VERSIONED},
    }
    key = hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:16]
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{model}--{weights_tag}")
    return root / f"{readable}-{key}"


def read_meta(folder: Path) -> dict[str, Any] | None:
    """The export's description, or None when there is no complete export there."""
    try:
        meta = json.loads((folder / META).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return meta if meta.get("layout") == LAYOUT else None


def export(
    root: Path, model: str, weights_tag: str, weights: str | None, load_eager: Callable[[], Any]
) -> tuple[Path, dict[str, Any]]:
    """Export the model `load_eager()` returns (an eval-mode open_clip model on the CPU, fp32),
    unless another process did meanwhile: (its folder, its meta)."""
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise _unwritable(root, err) from None
    planned = export_folder(root, model, weights_tag, weights)
    with _locked(planned.with_name(planned.name + ".lock")):
        meta = read_meta(planned)
        if meta is not None:  # another process exported it while this one waited
            return planned, meta
        eager = load_eager()
        # Weights downloaded just now have a cached file that was not there to be keyed on.
        folder = export_folder(root, model, weights_tag, weights)
        for stale in root.glob(f".{folder.name}.tmp-*"):  # killed exports' leftovers
            shutil.rmtree(stale, ignore_errors=True)
        temporary = root / f".{folder.name}.tmp-{os.getpid()}"
        try:
            temporary.mkdir()
            started = time.monotonic()
            try:
                meta = _write_export(temporary, eager, model)
            except Exception as err:  # an architecture the exporter cannot trace
                raise ExportFailed(
                    f"cannot export CLIP {model} to ONNX: {first_line(err)}",
                    hint="--runtime torch runs it in eager PyTorch",
                ) from err
            meta["export_seconds"] = round(time.monotonic() - started, 1)
            (temporary / META).write_text(json.dumps(meta, indent=1), encoding="utf-8")
            if folder.exists():  # an incomplete folder (no meta): not loadable, replaced
                shutil.rmtree(folder)
            temporary.rename(folder)
        except OSError as err:  # (the export's own errors are ExportFailed already)
            shutil.rmtree(temporary, ignore_errors=True)
            raise _unwritable(root, err) from None
        except BaseException:
            shutil.rmtree(temporary, ignore_errors=True)
            raise
    remove_stale_exports(folder)
    return folder, meta


def _unwritable(root: Path, err: OSError) -> ExportFailed:
    return ExportFailed(
        f"cannot write the model cache {root}: {first_line(err)}",
        hint=f"--model-cache DIR (or ${CACHE_VARIABLE}), or --runtime torch",
    )


def mark_used(folder: Path) -> None:
    """Note that the export was loaded now (its meta.json's time; see STALE_AFTER_DAYS). A
    read-only cache (one baked into an image) is left as it is."""
    with contextlib.suppress(OSError):
        os.utime(folder / META)


def remove_stale_exports(kept: Path, now: float | None = None) -> list[Path]:
    """Remove the exports of `kept`'s model and weights made for other versions and unused for
    STALE_AFTER_DAYS; return them. Folders without a meta.json (an export under way) are left."""
    prefix = kept.name.rsplit("-", 1)[0]
    cutoff = (time.time() if now is None else now) - STALE_AFTER_DAYS * 86_400
    removed = []
    for folder in kept.parent.iterdir():
        if folder == kept or not re.fullmatch(re.escape(prefix) + r"-[0-9a-f]{16}", folder.name):
            continue
        try:
            if (folder / META).stat().st_mtime >= cutoff:
                continue
        except OSError:
            continue
        shutil.rmtree(folder, ignore_errors=True)
        with contextlib.suppress(OSError):
            folder.with_name(folder.name + ".lock").unlink()
        removed.append(folder)
    return removed


def _write_export(target: Path, model: Any, model_name: str) -> dict[str, Any]:
    import torch

    from pipeline.embedding.backends.clip_preprocess import ImageTransform
    from pipeline.embedding.backends.clip_tokenizer import numpy_tokenizer

    transform = ImageTransform.from_open_clip(model)
    tokens = _open_clip_tokens(model_name)
    pixels = torch.randn((2, 3, *transform.size), generator=torch.Generator().manual_seed(0))
    _export_tower(model, "encode_image", pixels, target / IMAGE_FILE)
    _export_tower(model, "encode_text", tokens, target / TEXT_FILE)
    with torch.no_grad():
        dimension = int(model.encode_text(tokens[:1]).shape[-1])
    own_tokenizer = numpy_tokenizer(model_name)
    numpy_tokens_match = (
        own_tokenizer is not None and (own_tokenizer(_PROBES) == tokens.numpy()).all()
    )
    return {
        "layout": LAYOUT,
        "model": model_name,
        "dimension": dimension,
        "image_transform": transform.to_config(),
        "context_length": int(tokens.shape[1]),
        # "numpy": clip_tokenizer's port gives open_clip's tokens for this model (checked here);
        # "open_clip": its own tokenizer is needed (and torch with it) to encode texts
        "tokenizer": "numpy" if numpy_tokens_match else "open_clip",
        "versions": {name: _version(name) for name in _VERSIONED},
    }


_PROBES = ["a photo of a red car", "Ünïcode, punctuation!! and   spaces", ""]


def _open_clip_tokens(model_name: str) -> Any:
    import open_clip

    return open_clip.get_tokenizer(model_name)(_PROBES)


def _export_tower(model: Any, method: str, example: Any, path: Path) -> None:
    """One tower as an ONNX graph with a dynamic batch, its output L2-normalised in the graph."""
    import torch

    class Tower(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.clip = model

        def forward(self, inputs: torch.Tensor) -> torch.Tensor:
            features = getattr(self.clip, method)(inputs)
            return torch.nn.functional.normalize(features.float(), dim=-1)

    batch = {0: torch.export.Dim("batch", min=1)}
    # The exporter prints its progress on stdout and warns about tracing details: a user sees
    # one "exporting" step line instead.
    with torch.no_grad(), warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Tower().eval(),
            (example,),
            str(path),
            input_names=["inputs"],
            output_names=["vectors"],
            dynamo=True,  # torch.export: the TorchScript exporter fails on fused attention
            dynamic_shapes=(batch,),
            external_data=True,
            verbose=False,
        )


@contextlib.contextmanager
def _locked(lock_file: Path) -> Iterator[None]:
    """An exclusive lock held while exporting; the kernel releases it if the process dies."""
    try:
        handle = open(lock_file, "a")
    except OSError as err:  # (a cache folder this user may read but not write)
        raise _unwritable(lock_file.parent, err) from None
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _weights_fingerprint(model: str, weights: str | None) -> list | None:
    """What tells one weights file from another beyond its tag: a checkpoint PATH's content is in
    its tag already (file-<sha>); a published tag's cached file can be replaced under the same tag
    (a new hub revision), so its path, size and modification time count."""
    if weights is None or Path(weights).is_file():
        return None
    cached = clip_models.cached_weights_file(model, weights)
    if cached is None:
        return None
    stat = cached.stat()
    return [str(cached.resolve()), stat.st_size, stat.st_mtime_ns]


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None
