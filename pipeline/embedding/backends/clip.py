"""Local CLIP through open_clip (the `clip` extra). torch is imported only when a vector must be
made, never by `import pipeline` nor by building the backend."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from pipeline.core.space import EmbeddingSpace
from pipeline.embedding.backends import clip_models
from pipeline.embedding.backends.base import EmbeddingBackend, ImageItem, ItemFailure, Result
from pipeline.errors import ConfigError, UsageError, first_line
from pipeline.progress import step

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


class ClipBackend(EmbeddingBackend):
    """open_clip, loaded on first use: building the backend (and knowing its space) costs
    milliseconds; torch and the weights are loaded only when an image or a text must be embedded,
    so a rerun with nothing new never pays for them."""

    name = "clip"
    help_panel = "CLIP (--backend clip)"
    Options = ClipOptions
    input_kind = "image"

    def __init__(self, options: ClipOptions) -> None:
        super().__init__(options)
        self.model_name = options.model
        self.batch_size = options.batch_size
        self.seed = options.seed
        self._requested_device = options.device
        # also: an unknown model is an error now
        self._dimension = clip_models.embedding_dimension(options.model)
        self._weights, self._weights_tag = _resolve_pretrained(options.pretrained, options.seed)
        if self._weights is not None and not Path(self._weights).is_file():
            clip_models.weights_config(options.model, self._weights)  # a mistyped tag: exit 2
        self._loaded: _LoadedModel | None = None
        self._load_lock = threading.Lock()

    @classmethod
    def options_for_space(cls, space: EmbeddingSpace) -> str:
        model = "" if space.model == DEFAULT_MODEL else f"--model {space.model} "
        weights = space.weights
        if weights.startswith("none-seed"):
            seed = weights.removeprefix("none-seed")
            return f"{model}--pretrained none" + ("" if seed == "0" else f" --seed {seed}")
        if weights.startswith("file-"):
            return (
                f"{model}--pretrained PATH (the checkpoint file whose SHA-256 starts {weights[5:]})"
            )
        return f"{model}--pretrained {weights}"

    @classmethod
    def for_space(cls, space: EmbeddingSpace) -> EmbeddingBackend:
        """Random weights (`none-seedN`) and open_clip tags are found again from the name; a
        checkpoint file (`file-<sha>`) is not: its path must be given."""
        weights = space.weights
        options: dict[str, Any] = {"model": space.model, "pretrained": weights}
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

    def check_other_options(self, given: dict[str, Any]) -> None:
        # Vertex AI's --dimension chooses a size; CLIP's is fixed by the model, and a script that
        # asks for another one must not get vectors of a size it does not expect.
        dimension = given.get("dimension")
        if dimension is not None and dimension != self.space.dimension:
            raise UsageError(
                f"--dimension {dimension}: CLIP {self.model_name} makes "
                f"{self.space.dimension}-dimensional vectors, whatever is asked",
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
            self._weights_tag,
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
        return self._model().model

    def check(self) -> None:
        self._model()

    def prepare(self, image):
        # The model's own preprocessing (resize, centre crop, normalise), in a reader thread.
        return self._model().preprocess(image)

    def embed_image_batch(self, items: list[ImageItem]) -> list[Result]:
        loaded = self._model()
        torch = loaded.torch
        batch = torch.stack([item.source for item in items]).to(loaded.device)
        if loaded.device.startswith("cuda"):
            batch = batch.half()
        with torch.no_grad():
            features = loaded.model.encode_image(batch)
            features = torch.nn.functional.normalize(features.float(), dim=-1)
        return list(features.cpu().numpy())

    def embed_text_batch(self, texts: list[str]) -> np.ndarray:
        loaded = self._model()
        torch = loaded.torch
        with torch.no_grad():
            features = loaded.model.encode_text(loaded.tokenizer(texts).to(loaded.device))
            return torch.nn.functional.normalize(features.float(), dim=-1).cpu().numpy()

    def _model(self) -> _LoadedModel:
        if self._loaded is None:
            with self._load_lock:  # reader threads and the model thread may all ask at once
                if self._loaded is None:
                    label = f"CLIP {self.model_name} ({self._weights_tag})"
                    with step(f"loading {label}"):
                        self._loaded = _load(
                            self.model_name, self._weights, self._requested_device, self.seed
                        )
        return self._loaded


@dataclass
class _LoadedModel:
    # (torch and open_clip are imported only when a model is loaded: their types stay Any here)
    torch: Any
    model: Any
    preprocess: Any
    tokenizer: Any
    device: str
    dimension: int


def _load(model: str, weights: str | None, device: str, seed: int) -> _LoadedModel:
    if weights is not None and not Path(weights).is_file():
        clip_models.check_weights_available(model, weights)  # offline: fail before torch loads
    try:
        import open_clip
        import torch
    except ImportError:
        raise ConfigError(
            "the clip backend needs open_clip and torch", hint="pip install 'imgvec[clip]'"
        ) from None
    device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
    if weights is None:
        torch.manual_seed(seed)  # random weights, the same on every run and machine
    precision = "fp16" if device.startswith("cuda") else "fp32"
    try:
        with _quiet_random_weights():
            network, _, preprocess = open_clip.create_model_and_transforms(
                model, pretrained=weights, device=device, precision=precision
            )
    except Exception as err:  # hub download failures come as many kinds
        raise _weights_error(model, weights, err) from None
    network.eval()
    tokenizer = open_clip.get_tokenizer(model)
    with torch.no_grad():
        dimension = int(network.encode_text(tokenizer(["x"]).to(device)).shape[-1])
    return _LoadedModel(torch, network, preprocess, tokenizer, device, dimension)


@contextlib.contextmanager
def _quiet_random_weights():
    """open_clip warns on the root logger that random weights are random: asked for with
    --pretrained none, that is no news, and it broke the step line on a terminal."""

    def drop(record: logging.LogRecord) -> bool:
        return "No pretrained weights loaded" not in record.getMessage()

    root = logging.getLogger()
    root.addFilter(drop)
    try:
        yield
    finally:
        root.removeFilter(drop)


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


def _weights_error(model: str, weights: str | None, err: Exception) -> ConfigError:
    return ConfigError(
        f"cannot load CLIP weights {model}/{weights or 'none'}: " + first_line(err),
        hint="use " + clip_models.WAYS_ON,
    )


__all__ = ["ClipBackend", "ItemFailure"]
