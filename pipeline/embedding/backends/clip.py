"""Local CLIP through open_clip (the `clip` extra), run by eager PyTorch or, on a CPU, by the
towers exported once to OpenVINO / ONNX Runtime (`clip_runtime`, `clip_export`). Nothing heavy
(torch, a runtime) is imported by `import pipeline` nor by building the backend: only when a
vector must be made."""

from __future__ import annotations

import hashlib
import itertools
import logging
import re
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from pipeline.core.space import EmbeddingSpace
from pipeline.embedding.backends import clip_export, clip_models, clip_runtime
from pipeline.embedding.backends.base import EmbeddingBackend, ImageItem, ItemFailure, Result
from pipeline.errors import ConfigError, UsageError
from pipeline.progress import step

log = logging.getLogger(__name__)

DEFAULT_MODEL = "ViT-B-32"
DEFAULT_PRETRAINED = "laion2b_s34b_b79k"


class ClipOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(DEFAULT_MODEL, description="open_clip model name.")
    pretrained: str = Field(
        DEFAULT_PRETRAINED,
        description="Weights: an open_clip tag, a checkpoint PATH, or none (random, fixed seed).",
    )
    device: str = Field("auto", description="cpu, cuda, or auto.")
    batch_size: int = Field(32, ge=1, description="Images per forward pass.")
    seed: int = Field(0, description="Seed for --pretrained none.")
    runtime: Literal["auto", "torch", "openvino", "onnx"] = Field(
        "auto",
        description="What runs the model: auto (OpenVINO on a CPU when installed, else ONNX "
        "Runtime, else torch; torch on CUDA), torch, openvino, onnx. fp32 runtimes make the same "
        "space: switching re-embeds nothing.",
    )
    precision: Literal["fp32", "bf16"] = Field(
        "fp32",
        description="bf16: OpenVINO at ~2x the speed, vectors ~0.995 cosine to fp32: a space "
        "of its own (weights tag ...-bf16).",
    )
    model_cache: str | None = Field(
        None,
        description="Folder of the exported models (default $IMGVEC_MODEL_CACHE, else the "
        "user's cache dir).",
    )


class ClipBackend(EmbeddingBackend):
    """open_clip, loaded on first use: building the backend (and knowing its space) costs
    milliseconds; the model (eager torch, or its export on a compiled runtime) is loaded only when
    an image or a text must be embedded, so a rerun with nothing new never pays for it."""

    name = "clip"
    help_panel = "CLIP (--backend clip)"
    Options = ClipOptions
    input_kind = "image"

    def __init__(self, options: ClipOptions) -> None:
        super().__init__(options)
        self.model_name = options.model
        self.batch_size = options.batch_size
        self.seed = options.seed
        self.precision = options.precision
        if not re.fullmatch(r"auto|cpu|cuda(:[0-9]+)?", options.device):
            raise UsageError(
                f"--device {options.device!r} is not a device", hint="--device auto, cpu or cuda"
            )
        self._requested_device = options.device
        # also: an unknown model is an error now
        self._dimension = clip_models.embedding_dimension(options.model)
        self._weights, self._weights_tag = _resolve_pretrained(options.pretrained, options.seed)
        if self._weights is not None and not Path(self._weights).is_file():
            clip_models.weights_config(options.model, self._weights)  # a mistyped tag: exit 2
        self.runtime = clip_runtime.resolve_runtime(
            options.runtime, options.device, options.precision
        )
        # Chosen by auto, an fp32 compiled runtime may give way to eager torch: the same space.
        self._may_fall_back = options.runtime == "auto" and options.precision == "fp32"
        self._loaded: clip_runtime.EagerClip | clip_runtime.CompiledClip | None = None
        self._load_lock = threading.Lock()

    @classmethod
    def options_for_space(cls, space: EmbeddingSpace) -> str:
        model = "" if space.model == DEFAULT_MODEL else f"--model {space.model} "
        weights, precision = _split_precision(space.weights)
        bf16 = " --precision bf16" if precision == "bf16" else ""
        if weights.startswith("none-seed"):
            seed = weights.removeprefix("none-seed")
            return f"{model}--pretrained none" + ("" if seed == "0" else f" --seed {seed}") + bf16
        if weights.startswith("file-"):
            return (
                f"{model}--pretrained PATH (the checkpoint file whose SHA-256 starts "
                f"{weights[5:]}){bf16}"
            )
        return f"{model}--pretrained {weights}{bf16}"

    @classmethod
    def for_space(cls, space: EmbeddingSpace) -> EmbeddingBackend:
        """Random weights (`none-seedN`) and open_clip tags are found again from the name; a
        checkpoint file (`file-<sha>`) is not: its path must be given."""
        weights, precision = _split_precision(space.weights)
        options: dict[str, Any] = {"model": space.model, "pretrained": weights}
        options.update(precision=precision)
        if weights.startswith("none-seed") and weights.removeprefix("none-seed").isdigit():
            options.update(pretrained="none", seed=int(weights.removeprefix("none-seed")))
        reason = "its weights are a checkpoint file, known here only by its SHA-256"
        if not weights.startswith("file-"):
            try:
                backend = cls.from_options(**options)
                if backend.space == space:
                    return backend
                reason = f"the weights {weights} make another space ({backend.space.name})"
            except ConfigError as err:
                reason = str(err)
        from pipeline.embedding.backends.unavailable import UnavailableBackend

        return UnavailableBackend(space, reason, cls.options_for_space(space))

    @classmethod
    def models(cls, all_models: bool = False) -> list[tuple[str, str, str]]:
        rows = []
        weights = clip_models.pretrained_tags()
        for name in clip_models.model_names():
            tags = weights.get(name, [])
            if not (tags or all_models):
                continue
            marked = [
                tag
                + ("*" if (name, tag) == (DEFAULT_MODEL, DEFAULT_PRETRAINED) else "")
                + ("+" if clip_models.is_cached(name, tag) else "")
                for tag in tags
            ]
            default = "*" if name == DEFAULT_MODEL else ""
            dimension = str(clip_models.embedding_dimension(name))
            rows.append((name + default, dimension, ", ".join(marked) or "(no weights)"))
        return rows

    @classmethod
    def check_other_options(cls, space: EmbeddingSpace, given: dict[str, Any]) -> None:
        # Vertex AI's --dimension chooses a size; CLIP's is fixed by the model, and a script that
        # asks for another one must not get vectors of a size it does not expect.
        dimension = given.get("dimension")
        if dimension is not None and dimension != space.dimension:
            raise UsageError(
                f"--dimension {dimension}: CLIP {space.model} makes "
                f"{space.dimension}-dimensional vectors, whatever is asked",
                hint="--dimension chooses Vertex AI's size (--backend vertex); for another CLIP "
                "size choose another --model (`imgvec models`)",
            )

    @property
    def space(self) -> EmbeddingSpace:
        if self._dimension is None:  # a model open_clip finds outside its configs: ask it
            self._dimension = self._model().dimension
        return EmbeddingSpace(
            self.name,
            self.model_name,
            # fp32 on any runtime is one space; bf16's vectors differ: a space of their own
            self._weights_tag + ("" if self.precision == "fp32" else f"-{self.precision}"),
            self._dimension,
            metric="cosine",
            normalized=True,
        )

    @property
    def loaded(self) -> bool:
        return self._loaded is not None

    @property
    def device(self) -> str:
        return self._model().device

    @property
    def model(self):
        """The open_clip torch module (--runtime torch only: a compiled runtime has none)."""
        loaded = self._model()
        if not isinstance(loaded, clip_runtime.EagerClip):
            raise UsageError(f"CLIP runs on {self.runtime} here: no torch model (--runtime torch)")
        return loaded.model

    def check(self) -> None:
        """Ready to embed images (the embed stage asks, before its progress bar): the model, and
        on a compiled runtime its image tower, loaded."""
        self.concurrency = self._model().concurrency

    def prepare(self, image):
        # The model's own preprocessing (resize, centre crop, normalise), in a reader thread.
        return self._model().prepare(image)

    def embed_stream(self, items: Iterable[ImageItem]) -> Iterator[tuple[ImageItem, Result]]:
        # OpenVINO's throughput streams each run a batch: keep that many in flight. Asked at the
        # first image: it loads the image tower, which neither a text search nor a rerun with
        # nothing new (an empty stream) should pay for.
        items = iter(items)
        first = next(items, None)
        if first is None:
            return
        self.concurrency = self._model().concurrency
        yield from super().embed_stream(itertools.chain([first], items))

    def embed_image_batch(self, items: list[ImageItem]) -> list[Result]:
        return list(self._model().encode_images([item.source for item in items]))

    def embed_text_batch(self, texts: list[str]) -> np.ndarray:
        return self._model().encode_texts(texts)

    def _model(self) -> clip_runtime.EagerClip | clip_runtime.CompiledClip:
        if self._loaded is None:
            with self._load_lock:  # reader threads and the model thread may all ask at once
                if self._loaded is None:
                    self._loaded = self._load()
        return self._loaded

    def _load(self) -> clip_runtime.EagerClip | clip_runtime.CompiledClip:
        label = f"CLIP {self.model_name} ({self._weights_tag})"
        model, weights, seed = self.model_name, self._weights, self.seed
        if self.runtime == "torch":
            with step(f"loading {label}"):
                return clip_runtime.EagerClip(model, weights, self._requested_device, seed)
        root = clip_export.cache_root(self.options.model_cache)
        folder = clip_export.export_folder(root, model, self._weights_tag, weights)
        meta = clip_export.read_meta(folder)
        if meta is None:  # the first run with these weights (the export needs torch)
            eager: list[clip_runtime.EagerClip] = []

            def load_eager() -> Any:
                eager.append(clip_runtime.EagerClip(model, weights, "cpu", seed))
                return eager[0].model

            try:
                with step(f"exporting {label} to ONNX for {self.runtime}, once"):
                    folder, meta = clip_export.export(
                        root, model, self._weights_tag, weights, load_eager
                    )
            except clip_export.ExportFailed as err:  # an unwritable cache, an untraceable model
                if not self._may_fall_back:
                    raise
                log.warning(
                    "imgvec: %s; CLIP runs in eager PyTorch instead (the same vectors, slower)",
                    err,
                )
                self.runtime = "torch"
                if eager:
                    return eager[0]
                with step(f"loading {label} on torch"):
                    return clip_runtime.EagerClip(model, weights, "cpu", seed)
        clip_export.mark_used(folder)
        # Its towers load when first used, each a step of its own: a search loads only the text one.
        return clip_runtime.CompiledClip(
            folder, meta, self.runtime, self.precision, self.batch_size, label
        )


def _split_precision(weights: str) -> tuple[str, str]:
    """A space's weights tag -> (the weights, the precision): `<tag>-bf16` is bf16."""
    if weights.endswith("-bf16"):
        return weights.removesuffix("-bf16"), "bf16"
    return weights, "fp32"


def _resolve_pretrained(pretrained: str, seed: int) -> tuple[str | None, str]:
    """(what open_clip loads, the weights tag naming the space)."""
    if pretrained.lower() == "none":
        return None, f"none-seed{seed}"
    path = Path(pretrained).expanduser()
    if path.is_file():
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
        # The file's content names the space: two different checkpoints never share vectors.
        return str(path), f"file-{digest.hexdigest()[:16]}"
    if "/" in pretrained or pretrained.endswith((".pt", ".pth", ".bin", ".safetensors")):
        raise ConfigError(f"checkpoint file {pretrained} does not exist")
    return pretrained, pretrained


__all__ = ["ClipBackend", "ItemFailure"]
