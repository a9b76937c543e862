"""open_clip's evaluation transform (resize, centre crop or pad, normalise) in numpy and PIL, so a
compiled CLIP image tower can be fed without importing torch (torchvision, which open_clip's
transform uses, imports it: seconds at start, and a gigabyte of memory).

The result is bit for bit open_clip's tensor: the resize is the same PIL call torchvision makes on
a PIL image, the crop and pad are integer geometry copied from torchvision and open_clip, and the
normalisation makes the same float32 operations in the same order (`tests/test_clip_inputs.py`
holds it to a difference of 0 on many sizes and configs)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
from PIL import Image

# open_clip's defaults (open_clip/constants.py, transform.py): a config that leaves one unset
# (or None) means these.
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
RESIZE_MODES = ("shortest", "longest", "squash")
_RESAMPLING = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}


@dataclass(frozen=True)
class ImageTransform:
    """What open_clip's `PreprocessCfg` holds, normalised (size as (h, w), three means and stds)."""

    size: tuple[int, int]
    mean: tuple[float, float, float] = OPENAI_MEAN
    std: tuple[float, float, float] = OPENAI_STD
    interpolation: str = "bicubic"
    resize_mode: str = "shortest"
    fill_color: int = 0

    def __post_init__(self) -> None:
        if self.resize_mode not in RESIZE_MODES:
            raise ValueError(f"resize_mode {self.resize_mode!r} is not one of {RESIZE_MODES}")
        if self.interpolation not in _RESAMPLING:
            raise ValueError(f"interpolation {self.interpolation!r} is not one of {_RESAMPLING}")
        if min(self.size) < 1 or 0 in self.std or not 0 <= self.fill_color <= 255:
            raise ValueError(f"not a usable image transform: {self}")

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ImageTransform:
        """From open_clip's preprocess config (`model.visual.preprocess_cfg`, size an int or
        (h, w)) or from `to_config()`'s dict. Unset values take open_clip's defaults, as its
        `image_transform` does; its 'random' interpolation means bicubic at evaluation."""
        size = config.get("size", 224)
        height, width = (size, size) if isinstance(size, int) else size
        interpolation = "bilinear" if config.get("interpolation") == "bilinear" else "bicubic"
        return cls(
            size=(int(height), int(width)),
            mean=_three(config.get("mean") or OPENAI_MEAN),
            std=_three(config.get("std") or OPENAI_STD),
            interpolation=interpolation,
            resize_mode=config.get("resize_mode") or "shortest",
            fill_color=int(config.get("fill_color") or 0),
        )

    @classmethod
    def from_open_clip(cls, model: Any) -> ImageTransform:
        """The transform of a loaded open_clip model (export time: torch is there anyway)."""
        return cls.from_config(model.visual.preprocess_cfg)

    def to_config(self) -> dict[str, Any]:
        """JSON-safe, and `from_config` gives this transform back exactly (floats round-trip)."""
        return {
            "size": list(self.size),
            "mean": list(self.mean),
            "std": list(self.std),
            "interpolation": self.interpolation,
            "resize_mode": self.resize_mode,
            "fill_color": self.fill_color,
        }

    def __call__(self, image: Image.Image) -> np.ndarray:
        """float32 (3, H, W), the model's input for one RGB image."""
        if image.mode != "RGB":
            # open_clip converts *after* resizing, so another mode would resize differently;
            # the embed stage's `to_rgb` always runs first, and anything else is a caller's bug.
            raise ValueError(f"expected an RGB image, got mode {image.mode}")
        pixels = np.asarray(self._resized(image))
        if self.resize_mode != "squash":
            pixels = self._centre_crop_or_pad(pixels)
        planes = np.ascontiguousarray(pixels.transpose(2, 0, 1))  # (3, H, W), as torch lays it
        return _normalisation_table(self.mean, self.std)[_CHANNEL_OFFSETS + planes]

    def _resized(self, image: Image.Image) -> Image.Image:
        width, height = image.size
        target_h, target_w = self.size
        resample = _RESAMPLING[self.interpolation]
        if self.resize_mode == "squash":
            new_h, new_w = target_h, target_w
        elif self.resize_mode == "shortest" and target_h == target_w:
            # torchvision's Resize(int): the short side becomes the size, the long side is
            # truncated (not rounded) from the same float expression.
            short, long = (width, height) if width <= height else (height, width)
            new_short, new_long = target_h, int(target_h * long / short)
            new_w, new_h = (new_short, new_long) if width <= height else (new_long, new_short)
        else:
            # open_clip's ResizeKeepRatio: one ratio for both sides, each rounded. For a
            # non-square 'shortest' target open_clip builds it with its default interpolation
            # (bicubic) whatever the config says: the same here, to give the same tensors.
            ratio_h, ratio_w = height / target_h, width / target_w
            longest = self.resize_mode == "longest"
            ratio = max(ratio_h, ratio_w) if longest else min(ratio_h, ratio_w)
            new_h, new_w = round(height / ratio), round(width / ratio)
            if not longest:
                resample = Image.Resampling.BICUBIC
        if (new_h, new_w) == (height, width):  # torchvision returns the image itself
            return image
        if min(new_h, new_w) < 1:
            raise ValueError(
                f"a {width}x{height} image resizes to {new_w}x{new_h} for {self.resize_mode}"
            )
        return image.resize((new_w, new_h), resample)

    def _centre_crop_or_pad(self, pixels: np.ndarray) -> np.ndarray:
        """torchvision's CenterCrop and open_clip's CenterCropOrPad, on an (H, W, 3) array: pad a
        side shorter than the target with the fill colour (the odd pixel on the right/bottom),
        then crop the centre with Python's round (half to even), as they do."""
        crop_h, crop_w = self.size
        height, width = pixels.shape[:2]
        if crop_h > height or crop_w > width:
            pad_top, pad_left = max(crop_h - height, 0) // 2, max(crop_w - width, 0) // 2
            padded_h, padded_w = max(height, crop_h), max(width, crop_w)
            canvas = np.full((padded_h, padded_w, 3), self.fill_color, dtype=np.uint8)
            canvas[pad_top : pad_top + height, pad_left : pad_left + width] = pixels
            pixels, height, width = canvas, padded_h, padded_w
        top = int(round((height - crop_h) / 2.0))
        left = int(round((width - crop_w) / 2.0))
        return pixels[top : top + crop_h, left : left + crop_w]


# Row offsets into the (3 * 256) table: channel c's byte v is entry c * 256 + v.
_CHANNEL_OFFSETS = (np.arange(3, dtype=np.intp) * 256).reshape(3, 1, 1)


@cache
def _normalisation_table(mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """Every value the normalisation can produce, per channel and byte: torchvision's
    `to_tensor` (float32, / 255) then `normalize` (- mean, / std, in float32), computed with the
    same float32 operations in the same order, so a lookup gives its exact result (and is faster
    than doing the arithmetic on every pixel)."""
    scaled = np.arange(256, dtype=np.float32) / np.float32(255)
    means = np.asarray(mean, dtype=np.float32).reshape(3, 1)
    stds = np.asarray(std, dtype=np.float32).reshape(3, 1)
    return ((scaled - means) / stds).astype(np.float32).reshape(-1)


def _three(values: Any) -> tuple[float, float, float]:
    """open_clip repeats a single mean or std over the three channels."""
    if isinstance(values, int | float):
        return (float(values),) * 3
    first, second, third = (float(v) for v in values)
    return first, second, third
