"""`make demo`: a small generated image set (coloured shapes and rendered words, nothing
downloaded), run through `imgvec run` with CLIP on the embedded server's own demo database
(imgvec_demo: the demo's images never mix with yours), then the classic image-to-image query in psql.

    python -m pipeline.demo [--pretrained TAG|PATH|none] [--folder DIR]
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from pathlib import Path

from PIL import Image, ImageDraw

COLOURS = {
    "red": (220, 30, 30),
    "green": (30, 170, 60),
    "blue": (40, 70, 220),
    "yellow": (240, 210, 20),
}
SHAPES = ("circle", "square", "triangle")
WORDS = ("CAT", "DOG", "SALE", "DAMAGED")


def make_images(folder: Path) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for colour, rgb in COLOURS.items():
        for shape in SHAPES:
            image = Image.new("RGB", (224, 224), "white")
            draw = ImageDraw.Draw(image)
            box = (40, 40, 184, 184)
            if shape == "circle":
                draw.ellipse(box, fill=rgb)
            elif shape == "square":
                draw.rectangle(box, fill=rgb)
            else:
                draw.polygon([(112, 30), (194, 190), (30, 190)], fill=rgb)
            name = f"{colour}-{shape}.png"
            image.save(folder / name)
            names.append(name)
    for word in WORDS:
        image = Image.new("RGB", (224, 224), "white")
        ImageDraw.Draw(image).text((30, 90), word, fill="black", font_size=40)
        name = f"word-{word.lower()}.png"
        image.save(folder / name)
        names.append(name)
    return names


DEMO_DATABASE = "imgvec_demo"
DEMO_ENV = {"IMGVEC_DATABASE_NAME": DEMO_DATABASE}


def imgvec(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    print("$ " + command_line(*args), flush=True)
    return subprocess.run([sys.executable, "-m", "pipeline", *args], check=check)


def command_line(*args: str) -> str:
    """The command as a user pastes it into a shell: quoted, with the demo's database setting."""
    settings = " ".join(f"{name}={shlex.quote(value)}" for name, value in DEMO_ENV.items())
    return f"{settings} {shlex.join([*_imgvec_executable(), *args])}"


def _imgvec_executable() -> list[str]:
    script = Path(sys.executable).parent / "imgvec"
    if not script.exists():
        return [sys.executable, "-m", "pipeline"]
    try:
        return [str(script.relative_to(Path.cwd()))]  # .venv/bin/imgvec from the checkout
    except ValueError:
        return [str(script)]


def use_demo_database() -> None:
    """The embedded server's own demo database, whatever DATABASE_URL says: the demo's 16 images
    must not join (and clash by name with) a user's images."""
    for name in ("DATABASE_URL", "IMGVEC_DATABASE_URL"):
        if os.environ.pop(name, None) is not None:
            print(f"(the demo ignores {name}: it uses the embedded server's {DEMO_DATABASE})")
    os.environ.update(DEMO_ENV)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pretrained", default="laion2b_s34b_b79k")
    parser.add_argument("--folder", default="demo-images")
    parser.add_argument("--work-dir", default="demo-work")
    args = parser.parse_args()

    use_demo_database()
    names = make_images(Path(args.folder))
    print(f"made {len(names)} images in {args.folder}/")
    pretrained = args.pretrained
    run = imgvec(
        "run", args.folder, "--work-dir", args.work_dir, "--pretrained", pretrained, check=False
    )
    if run.returncode == 1 and pretrained != "none":
        print(
            f"\nthe {pretrained} weights could not be loaded (no network?): going on with random weights;"
            " the answers below are then meaningless, but every step runs.\n",
            flush=True,
        )
        pretrained = "none"
        run = imgvec("run", args.folder, "--work-dir", args.work_dir, "--pretrained", pretrained)
    query = (
        "SELECT image_id, round((embedding <-> (SELECT embedding FROM image_embeddings "
        "WHERE image_id = 'red-circle.png'))::numeric, 4) AS distance FROM image_embeddings "
        "WHERE image_id != 'red-circle.png' ORDER BY distance LIMIT 5"
    )
    print(
        "\nthe 5 images nearest to red-circle.png (the classic pgvector query, in psql):",
        flush=True,
    )
    imgvec("psql", "-c", query)
    if pretrained == "none":
        print(
            "(random weights: expect no meaningful order. With real weights, red shapes and circles come first.)"
        )
    sys.exit(0 if run.returncode in (0, 3) else run.returncode)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
