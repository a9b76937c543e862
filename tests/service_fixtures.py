"""A loaded gallery and a real `imgvec serve` over it, for the service's tests (API and browser).

Use as fixtures: `from tests.service_fixtures import gallery, gallery_server  # noqa: F401`.
Both are session-scoped and built once per session, however many test modules import them:
the database (~50 generated images in 5 colour classes, embedded with CLIP ViT-B-32 and random
weights, loaded) and one server on 127.0.0.1 without a token. Other servers over the same
database (a token, another role) come from `ServiceProcess(gallery, ...)`.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image, ImageDraw

from tests.conftest import IMGVEC, create_database, drop_database, free_port

#: class -> the colour family of its images (RGB centre, varied per image)
CLASSES = {
    "red": (200, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 70, 210),
    "yellow": (230, 210, 40),
    "purple": (140, 50, 170),
}
PER_CLASS = 10
HOSTILE_NAME = "<img src=x onerror=alert(1)>.png"
#: the backend flags of the gallery's space (CLIP ViT-B-32, random weights with a fixed seed)
BACKEND_FLAGS = ("--pretrained", "none")


@dataclass(frozen=True)
class Gallery:
    database_url: str
    home: Path
    images: Path  # the listed folder: <class>/<nn>.png and the hostile name at its top
    work_dir: Path

    @property
    def env(self) -> dict[str, str]:
        """The environment a command (or a server) over this database runs with."""
        return {"DATABASE_URL": self.database_url, "IMGVEC_HOME": str(self.home)}

    def names(self) -> list[str]:
        return sorted(
            str(p.relative_to(self.images)) for p in self.images.rglob("*.png") if p.is_file()
        )


def gallery_image(colour: tuple[int, int, int], seed: int, size: int = 96) -> Image.Image:
    """A shape in a shade of `colour` on a pale background: distinct classes, varied members."""
    rng = np.random.default_rng(seed)
    shade = tuple(int(np.clip(c + rng.integers(-25, 26), 0, 255)) for c in colour)
    background = tuple(int(v) for v in rng.integers(215, 250, size=3))
    image = Image.new("RGB", (size, size), background)
    draw = ImageDraw.Draw(image)
    left, top = (int(v) for v in rng.integers(4, 24, size=2))
    right, bottom = (int(v) for v in rng.integers(size - 24, size - 4, size=2))
    shape = seed % 3
    if shape == 0:
        draw.ellipse((left, top, right, bottom), fill=shade)
    elif shape == 1:
        draw.rectangle((left, top, right, bottom), fill=shade)
    else:
        draw.polygon([((left + right) // 2, top), (right, bottom), (left, bottom)], fill=shade)
    return image


def write_gallery(folder: Path) -> Path:
    for number, (name, colour) in enumerate(CLASSES.items()):
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(PER_CLASS):
            gallery_image(colour, seed=number * 100 + i).save(folder / name / f"{i:02d}.png")
    gallery_image((90, 90, 90), seed=999).save(folder / HOSTILE_NAME)
    return folder


def imgvec(gallery: Gallery, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """The CLI over the gallery's database, as a user runs it."""
    result = subprocess.run(
        [*IMGVEC, *args],
        capture_output=True,
        text=True,
        env=dict(os.environ) | gallery.env,
        timeout=600,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"imgvec {' '.join(args)} exited {result.returncode}:\n{result.stderr}"
        )
    return result


async def build_gallery(root: Path, server_url: str, home: Path) -> tuple[Gallery, str]:
    """(the loaded gallery, its database's name): listed with `class` from the folders,
    embedded (thumbnails written to the work dir by the embed stage), loaded."""
    name, url = await create_database(server_url, prefix="gallery")
    gallery = Gallery(url, home, write_gallery(root / "images"), root / "work")
    imgvec(
        gallery,
        "run",
        str(gallery.images),
        "--work-dir",
        str(gallery.work_dir),
        "--attribute-from-path",
        "class={0}",
        *BACKEND_FLAGS,
    )
    return gallery, name


class ServiceProcess:
    """`imgvec serve` in a subprocess on 127.0.0.1 and a free port; `stop()` ends it."""

    def __init__(
        self,
        gallery: Gallery,
        *args: str,
        env: dict[str, str] | None = None,
        backend_flags: tuple[str, ...] = BACKEND_FLAGS,
        timeout: float = 60,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [*IMGVEC, "serve", "--port", str(self.port), "--work-dir", str(gallery.work_dir)]
        self.log = gallery.work_dir.parent / f"serve-{self.port}.log"
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [*command, *backend_flags, *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(os.environ) | gallery.env | (env or {}),
            )
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"imgvec serve exited {self.process.returncode}:\n{self.output}"
                )
            try:
                # Any answer will do (a 401 too): the server is up and its lifespan ran.
                httpx.get(f"{self.url}/api/health", timeout=2)
                return
            except httpx.TransportError:
                time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"imgvec serve did not answer within {timeout} s:\n{self.output}")

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def client(self, **kwargs) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=120, **kwargs)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# One of each per session, whichever test module asks first (a fixture imported into several
# modules is a separate fixture in each: the cache makes them share the build).
_SHARED: dict[str, object] = {}


@pytest.fixture(scope="session")
async def gallery(tmp_path_factory, server_url, imgvec_home) -> Gallery:
    pytest.importorskip("open_clip")
    pytest.importorskip("fastapi")
    if "gallery" in _SHARED:
        yield _SHARED["gallery"]
        return
    built, name = await build_gallery(tmp_path_factory.mktemp("gallery"), server_url, imgvec_home)
    _SHARED["gallery"] = built
    yield built
    _SHARED.pop("gallery", None)
    await drop_database(server_url, name)


@pytest.fixture(scope="session")
def gallery_server(gallery) -> ServiceProcess:
    if "server" in _SHARED:
        yield _SHARED["server"]
        return
    server = ServiceProcess(gallery)
    _SHARED["server"] = server
    yield server
    _SHARED.pop("server", None)
    server.stop()
