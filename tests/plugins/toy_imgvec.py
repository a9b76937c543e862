"""A third party's imgvec plug-ins, as a package outside `pipeline/` would ship them: a source of
generated colour swatches (`toy://palette/`) and a backend that embeds an image as its mean colour.
tests/test_plugins.py installs this file with entry points and runs list → embed → load → search.

It uses only imgvec's public plug-in contracts: `Source` and `EmbeddingBackend`, their `Options`,
`ObjectInfo` and `EmbeddingSpace`."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator

import numpy as np
from PIL import Image
from pydantic import BaseModel, Field

from pipeline.core.objects import ObjectInfo, md5_hash
from pipeline.core.space import EmbeddingSpace
from pipeline.embedding.backends.base import EmbeddingBackend, ImageItem
from pipeline.sources.base import Source

COLOURS = {
    "red": (230, 20, 20),
    "darkred": (150, 10, 10),
    "green": (20, 200, 40),
    "blue": (20, 40, 220),
    "yellow": (240, 230, 30),
}


def swatch(colour: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), COLOURS[colour]).save(buffer, format="PNG")
    return buffer.getvalue()


class PaletteSource(Source):
    """toy://palette/ lists one PNG swatch per colour; toy://palette/red.png reads it back."""

    scheme = "toy"

    def root(self) -> str:
        return "toy://palette/"

    def list(self) -> Iterator[ObjectInfo]:
        for colour in COLOURS:
            data = swatch(colour)
            yield ObjectInfo(
                locator=f"toy://palette/{colour}.png",
                scheme=self.scheme,
                bucket=None,
                key=f"{colour}.png",
                name=f"{colour}.png",
                size=len(data),
                content_hash=md5_hash(hashlib.md5(data).hexdigest()),
                content_type="image/png",
            )

    def read(self, locator: str, *, max_bytes: int, size: int | None = None) -> bytes:
        colour = locator.removeprefix("toy://palette/").removesuffix(".png")
        if colour not in COLOURS:
            raise FileNotFoundError(locator)
        return swatch(colour)[: max_bytes + 1]


class MeanColourOptions(BaseModel):
    toy_brightness: float = Field(0.5, description="Weight of the brightness component.")


class MeanColourBackend(EmbeddingBackend):
    """An image's vector is its mean colour and brightness; a text's, that of the colour it names."""

    name = "toy"
    help_panel = "Toy (--backend toy)"
    Options = MeanColourOptions
    input_kind = "image"

    def __init__(self, options: MeanColourOptions) -> None:
        super().__init__(options)
        self.brightness = options.toy_brightness

    @classmethod
    def options_for_space(cls, space: EmbeddingSpace) -> str:
        return "--backend toy"

    @property
    def space(self) -> EmbeddingSpace:
        return EmbeddingSpace("toy", "mean-colour", f"b{self.brightness:g}", 4)

    def _vector(self, rgb) -> np.ndarray:
        r, g, b = (c / 255 for c in rgb)
        return np.array([r, g, b, self.brightness * (r + g + b) / 3], np.float32)

    def embed_image_batch(self, items: list[ImageItem]) -> list:
        return [self._vector(np.asarray(item.source).reshape(-1, 3).mean(0)) for item in items]

    def embed_text_batch(self, texts: list[str]) -> np.ndarray:
        return np.stack(
            [self._vector(COLOURS.get(t.strip().lower(), (128, 128, 128))) for t in texts]
        )
