"""Turning object bytes into an RGB image, or a clear reason why not.

Every odd input a bucket holds is handled here: truncated files, zero bytes, HTML saved as .jpg,
decompression bombs, CMYK, 16-bit, palettes with transparency, animations, EXIF rotation.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

# Larger images than this are refused before they are decoded: a 20000x20000 PNG of a few KB
# would otherwise take 1.2 GB of memory. (Pillow's own default only warns below 2x its limit.)
MAX_PIXELS = 89_478_485  # Pillow's default limit (~ 9459 x 9459)


class BadImage(ValueError):
    """The object is not a usable image; the message is the reason recorded for it."""


@dataclass(frozen=True)
class Decoded:
    """An image as imgvec uses it (`image`: upright 8-bit RGB), and what the original was."""

    image: Image.Image
    format: str | None  # Pillow's name of the file format: "JPEG", "PNG", "WEBP", ...
    mode: str  # the original's mode: "RGB", "CMYK", "I;16", "P", "RGBA", ...
    frames: int  # more than one: an animation, of which the first frame is used
    rotated: bool  # an EXIF orientation other than upright was applied

    @property
    def plain(self) -> bool:
        """The original's pixels are the image as decoded: one upright frame of 8-bit RGB."""
        return self.mode == "RGB" and self.frames == 1 and not self.rotated


def decode_image(data: bytes, *, max_pixels: int = MAX_PIXELS) -> Image.Image:
    return decode(data, max_pixels=max_pixels).image


def decode(data: bytes, *, max_pixels: int = MAX_PIXELS) -> Decoded:
    """The image of `data` by imgvec's decode policy, or BadImage with the reason."""
    if not data:
        raise BadImage("empty object (0 bytes)")
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > max_pixels:
                raise BadImage(
                    f"too many pixels ({width}x{height} > {max_pixels}): possible decompression bomb"
                )
            image.seek(0)  # animated GIF / WebP: the first frame stands for the whole
            image.load()
    except BadImage:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise BadImage(f"decompression bomb refused: {err}") from None
    except UnidentifiedImageError:
        kind = (
            "HTML" if data.lstrip()[:15].lower().startswith((b"<!doctype", b"<html")) else "unknown"
        )
        raise BadImage(f"not an image ({kind} content, {len(data)} bytes)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        text = str(err) or type(err).__name__
        raise BadImage(f"corrupt image: {text}") from None
    try:
        orientation = image.getexif().get(0x0112, 1)
    except Exception:  # an unreadable EXIF block: exif_transpose ignores it too
        orientation = 1
    return Decoded(
        to_rgb(image),
        image.format,
        image.mode,
        getattr(image, "n_frames", 1),
        orientation not in (None, 1),
    )


def to_rgb(image: Image.Image) -> Image.Image:
    """Upright 8-bit RGB, whatever the mode; transparent areas become white."""
    image = ImageOps.exif_transpose(image)
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16/32-bit greyscale: scale to 8 bits rather than clip
        image = image.point(lambda v: v * (255 / 65535)).convert("L")
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("RGBA", "LA", "PA"):
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(image.convert("RGBA"), mask=image.convert("RGBA").getchannel("A"))
        return background
    return image.convert("RGB")
