"""Test images made on the spot: ordinary photos-alike, and every odd or hostile input."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def photo(seed: int, size=(64, 48)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray((rng.random((size[1], size[0], 3)) * 255).astype("uint8"))


def encode(image: Image.Image, fmt: str, **kw) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **kw)
    return out.getvalue()


def png_bomb(width: int = 20000, height: int = 20000) -> bytes:
    """A small PNG that claims width x height 1-bit pixels (written by hand: no 50 MB in memory)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    row = b"\0" + b"\0" * ((width + 7) // 8)
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


def odd_but_valid() -> dict[str, bytes]:
    """Inputs that are real images in unusual shapes: each must end embedded."""
    base = photo(1)
    rgba = base.convert("RGBA")
    rgba.putalpha(128)
    palette = base.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    palette.info["transparency"] = 0
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90 degrees
    frames = [photo(i) for i in range(3)]
    gif = io.BytesIO()
    frames[0].save(gif, format="GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    sixteen = Image.fromarray((np.random.default_rng(3).random((40, 40)) * 65535).astype(np.uint16))
    return {
        "cmyk.jpg": encode(base.convert("CMYK"), "JPEG"),
        "sixteen-bit.png": encode(sixteen, "PNG"),
        "animated.gif": gif.getvalue(),
        "exif-rotated.jpg": encode(base, "JPEG", exif=exif.tobytes()),
        "palette-transparent.png": encode(palette, "PNG", transparency=0),
        "rgba.png": encode(rgba, "PNG"),
        "photo.webp": encode(base, "WEBP"),
        "photo.tiff": encode(base, "TIFF"),
        "one-pixel.png": encode(Image.new("RGB", (1, 1), (255, 0, 0)), "PNG"),
    }


def hostile() -> dict[str, tuple[bytes, str]]:
    """Inputs that are not usable images: name -> (bytes, a word the recorded reason contains)."""
    jpeg = encode(photo(2, (320, 240)), "JPEG")
    png = encode(photo(2, (320, 240)), "PNG")
    return {
        "truncated.jpg": (jpeg[: len(jpeg) // 2], "corrupt"),
        "truncated.png": (png[: len(png) // 2], "corrupt"),
        "zero-bytes.jpg": (b"", "empty"),
        "page.jpg": (b"<!DOCTYPE html><html><body>404 Not Found</body></html>", "HTML"),
        "bomb.png": (png_bomb(), "bomb"),
    }


def write_images(folder: Path, images: dict[str, bytes]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in images.items():
        (folder / name).write_bytes(data)
