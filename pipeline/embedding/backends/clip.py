"""Local CLIP through open_clip (the `clip` extra). torch is imported only when a ClipBackend is
built, never by `import pipeline`."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from pipeline.db.spaces import EmbeddingSpace
from pipeline.embedding.backends.base import EmbeddingBackend, ImageItem, ItemFailure, Result
from pipeline.errors import ConfigError

DEFAULT_MODEL = "ViT-B-32"
DEFAULT_PRETRAINED = "laion2b_s34b_b79k"


class ClipBackend(EmbeddingBackend):
    name = "clip"
    input_kind = "image"

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        pretrained: str = DEFAULT_PRETRAINED,
        *,
        device: str = "auto",
        batch_size: int = 32,
        seed: int = 0,
    ) -> None:
        try:
            import open_clip
            import torch
        except ImportError:
            raise ConfigError(
                "the clip backend needs open_clip and torch", hint="pip install 'imgvec[clip]'"
            ) from None
        self.torch = torch
        self.batch_size = batch_size
        self.device = (
            ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        )
        weights, self._weights_tag = _resolve_pretrained(pretrained, seed)
        if weights is None:
            torch.manual_seed(seed)  # random weights, the same on every run and machine
        precision = "fp16" if self.device.startswith("cuda") else "fp32"
        try:
            self.model, _, self.preprocess = open_clip.create_model_and_transforms(
                model, pretrained=weights, device=self.device, precision=precision
            )
        except Exception as err:  # hub download failures come as many kinds
            if "Unknown model" in str(err):
                raise ConfigError(
                    f"unknown CLIP model {model!r}", hint="see open_clip.list_models()"
                ) from None
            raise _weights_error(model, pretrained, err) from None
        self.model.eval()
        self.tokenizer = open_clip.get_tokenizer(model)
        self.model_name = model
        with torch.no_grad():
            self._dimension = int(
                self.model.encode_text(self.tokenizer(["x"]).to(self.device)).shape[-1]
            )

    @property
    def space(self) -> EmbeddingSpace:
        return EmbeddingSpace(
            "clip",
            self.model_name,
            self._weights_tag,
            self._dimension,
            metric="cosine",
            normalized=True,
        )

    def prepare(self, image):
        # The model's own preprocessing (resize, centre crop, normalise), in a reader thread.
        return self.preprocess(image)

    def embed_image_batch(self, items: list[ImageItem]) -> list[Result]:
        torch = self.torch
        batch = torch.stack([item.source for item in items]).to(self.device)
        if self.device.startswith("cuda"):
            batch = batch.half()
        with torch.no_grad():
            features = self.model.encode_image(batch)
            features = torch.nn.functional.normalize(features.float(), dim=-1)
        return list(features.cpu().numpy())

    def embed_text_batch(self, texts: list[str]) -> np.ndarray:
        torch = self.torch
        with torch.no_grad():
            features = self.model.encode_text(self.tokenizer(texts).to(self.device))
            return torch.nn.functional.normalize(features.float(), dim=-1).cpu().numpy()


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


def _weights_error(model: str, pretrained: str, err: Exception) -> ConfigError:
    return ConfigError(
        f"cannot load CLIP weights {model}/{pretrained}: {str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__}",
        hint="with no network, pass --pretrained PATH (a checkpoint file) or --pretrained none (random weights)",
    )


__all__ = ["ClipBackend", "ItemFailure"]
