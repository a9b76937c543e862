"""CLIP on compiled CPU runtimes (OpenVINO, ONNX Runtime) against eager PyTorch, with real open_clip
models (random weights, fixed seed): the same space in fp32 (image and text towers), bf16 close
and a space of its own, the export cache (loaded without torch, re-exported for new weights,
exported once by processes racing), and the command line switching runtimes without re-embedding.

ViT-B-32 is exported once per session into the session's model cache (tests/conftest.py), which
the other CLIP tests share; the cache's own tests export the small ViT-S-32-alt."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from pipeline import embed_images, embed_texts
from pipeline.embedding.backends import clip_export
from pipeline.plugins import get_backend
from tests.conftest import IMGVEC, run_imgvec
from tests.images import encode, photo, write_images

open_clip = pytest.importorskip("open_clip")
torch = pytest.importorskip("torch")
pytest.importorskip("openvino")
pytest.importorskip("onnxruntime")

IMAGES = [photo(i, size) for i, size in enumerate([(320, 240), (240, 320), (64, 48), (224, 224)])]
IMAGES += [photo(10 + i) for i in range(3)]  # 7 images in batches of 3: the last one padded
TEXTS = ["a red car", "a photo of a dog on a beach", "Ünïcode and punctuation!!", ""]
SMALL_MODEL = "ViT-S-32-alt"  # exports in about half ViT-B-32's time


def vectors(runtime: str, precision: str = "fp32", **options) -> tuple[np.ndarray, np.ndarray]:
    backend = get_backend(
        "clip", pretrained="none", runtime=runtime, precision=precision, device="cpu", **options
    )
    pairs = ((str(i), image) for i, image in enumerate(IMAGES))
    images = np.stack([v for _, v in embed_images(pairs, backend=backend, batch_size=3)])
    return images, np.stack(list(embed_texts(TEXTS, backend=backend)))


@pytest.fixture(scope="module")
def eager() -> tuple[np.ndarray, np.ndarray]:
    return vectors("torch")


@pytest.mark.parametrize(
    ("runtime", "precision", "least_cosine"),
    [("openvino", "fp32", 0.9999), ("onnx", "fp32", 0.9999), ("openvino", "bf16", 0.995)],
)
def test_runtime_matches_eager_torch(runtime, precision, least_cosine, eager) -> None:
    images, texts = vectors(runtime, precision)
    assert np.sum(images * eager[0], axis=1).min() >= least_cosine
    assert np.sum(texts * eager[1], axis=1).min() >= least_cosine
    # An image's vector does not depend on the batch it lands in (sharded runs compare bytes).
    again = _backend(runtime, precision)
    alone = next(embed_images([("x", IMAGES[-1])], backend=again, batch_size=3))[1]
    assert alone.tobytes() == images[-1].tobytes()


def _backend(runtime: str, precision: str, **options):
    return get_backend("clip", pretrained="none", runtime=runtime, precision=precision, **options)


def test_bf16_is_a_space_of_its_own_found_again_from_its_name() -> None:
    fp32 = {_backend(r, "fp32").space for r in ("torch", "openvino", "onnx", "auto")}
    assert [space.name for space in fp32] == ["clip/ViT-B-32/none-seed0/512"]
    bf16 = _backend("auto", "bf16")
    assert bf16.space.name == "clip/ViT-B-32/none-seed0-bf16/512" and bf16.runtime == "openvino"
    found = type(bf16).for_space(bf16.space)
    assert found.space == bf16.space and found.precision == "bf16"
    assert type(bf16).options_for_space(bf16.space) == "--pretrained none --precision bf16"


LOAD_WITHOUT_TORCH = """
import json, sys, time
started = time.monotonic()
from pipeline import embed_images, embed_texts
from pipeline.plugins import get_backend
from PIL import Image
backend = get_backend("clip", pretrained="none")
backend.check()
load_seconds = time.monotonic() - started
next(embed_images([("a", Image.new("RGB", (64, 48), (200, 30, 30)))], backend=backend))
next(embed_texts(["a red square"], backend=backend))
heavy = sorted({"torch", "open_clip", "torchvision"} & set(sys.modules))
print(json.dumps({"runtime": backend.runtime, "load_seconds": load_seconds, "heavy": heavy}))
"""


def test_a_cached_export_loads_in_seconds_without_torch(eager) -> None:
    _backend("auto", "fp32").check()  # exported (once per session)

    def load() -> dict:
        result = subprocess.run(
            [sys.executable, "-c", LOAD_WITHOUT_TORCH], capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout.splitlines()[-1])

    report = load()
    assert report["runtime"] == "openvino" and report["heavy"] == []
    # Measured here: 0.7-1.3 s on a quiet machine, 1.9-2.1 s with its 2 cores busy with other
    # work (torch's import alone takes 3-5 s): the best of three tries is the load time.
    tries = [report["load_seconds"]]
    while min(tries) >= 2 and len(tries) < 3:
        tries.append(load()["load_seconds"])
    assert min(tries) < 2, tries


EXPORT = """
import json, sys
from pipeline import embed_images
from pipeline.plugins import get_backend
from PIL import Image
backend = get_backend("clip", model=sys.argv[1], pretrained=sys.argv[2], model_cache=sys.argv[3])
_, vector = next(embed_images([("a", Image.new("RGB", (50, 40), (9, 99, 199)))], backend=backend))
print(json.dumps(vector.tolist()))
"""


def test_processes_racing_export_once_and_new_weights_re_export(tmp_path) -> None:
    checkpoint, cache = tmp_path / "finetune.pt", tmp_path / "cache"
    torch.manual_seed(1)
    torch.save(open_clip.create_model(SMALL_MODEL, pretrained=None).state_dict(), checkpoint)
    racing = [
        subprocess.Popen(
            [sys.executable, "-c", EXPORT, SMALL_MODEL, str(checkpoint), str(cache)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [process.communicate(timeout=300) for process in racing]
    assert [process.returncode for process in racing] == [0, 0], [err for _, err in outputs]
    first, second = (json.loads(out.splitlines()[-1]) for out, _ in outputs)
    assert first == second
    exports = [path for path in cache.iterdir() if path.is_dir()]
    assert len(exports) == 1 and not list(cache.glob(".*tmp-*"))

    state = torch.load(checkpoint)
    state["logit_scale"] += 1
    state["visual.proj"] *= -1  # other weights: other vectors
    torch.save(state, checkpoint)
    backend = get_backend(
        "clip", model=SMALL_MODEL, pretrained=str(checkpoint), model_cache=str(cache)
    )
    _, changed = next(embed_images([("a", photo(3))], backend=backend))
    assert len([path for path in cache.iterdir() if path.is_dir()]) == 2
    eager = get_backend("clip", model=SMALL_MODEL, pretrained=str(checkpoint), runtime="torch")
    _, expected = next(embed_images([("a", photo(3))], backend=eager))
    assert float(np.dot(changed, expected)) >= 0.9999


def test_a_published_tags_new_cached_file_changes_the_export_key(tmp_path) -> None:
    """A hub cache holding the tag's file, rewritten: another key (no export needed to tell)."""
    from pipeline.embedding.backends import clip_models

    repo_id = clip_models._pretrained_table()["ViT-B-32"]["laion2b_s34b_b79k"]["hf_hub"]
    repo = tmp_path / "hf" / "hub" / f"models--{repo_id.rstrip('/').replace('/', '--')}"
    weights = repo / "snapshots" / ("0" * 40) / "open_clip_pytorch_model.bin"
    weights.parent.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    key = (
        "from pipeline.embedding.backends import clip_export\n"
        "print(clip_export.export_folder(clip_export.cache_root(None),"
        " 'ViT-B-32', 'laion2b_s34b_b79k', 'laion2b_s34b_b79k').name)"
    )
    env = dict(os.environ) | {"HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}

    def folder_name() -> str:
        return subprocess.run(
            [sys.executable, "-c", key], env=env, capture_output=True, text=True, check=True
        ).stdout.strip()

    weights.write_bytes(b"first weights")
    first = folder_name()
    weights.write_bytes(b"other weights, another size")
    assert folder_name() != first
    assert first.startswith("ViT-B-32--laion2b_s34b_b79k-")
    assert clip_export.read_meta(tmp_path / first) is None  # nothing exported, nothing read


def test_old_exports_of_the_same_weights_go_once_unused_for_a_month(tmp_path) -> None:
    """A new open_clip or torch re-exports under a new key; the old export (~600 MB) is removed
    when the new one is made, unless it was loaded within STALE_AFTER_DAYS (another install may
    share the cache). Other models and weights, and exports under way, are never touched."""
    now = time.time()

    def export(name: str, days_unused: float | None) -> Path:
        folder = tmp_path / name
        folder.mkdir()
        (folder / clip_export.IMAGE_FILE).write_bytes(b"graph")
        if days_unused is not None:  # (None: no meta.json yet, an export under way)
            (folder / clip_export.META).write_text("{}")
            unused_since = now - days_unused * 86_400
            os.utime(folder / clip_export.META, (unused_since, unused_since))
        return folder

    month = clip_export.STALE_AFTER_DAYS
    kept = export("ViT-B-32--none-seed0-" + "a" * 16, 0)
    old = export("ViT-B-32--none-seed0-" + "b" * 16, month + 1)
    (tmp_path / f"{old.name}.lock").write_text("")
    loaded_again = export("ViT-B-32--none-seed0-" + "c" * 16, month + 1)
    clip_export.mark_used(loaded_again)
    left = [
        kept,
        loaded_again,
        export("ViT-B-32--none-seed0-" + "d" * 16, month - 1),
        export("ViT-B-32--none-seed0-" + "e" * 16, None),
        export("ViT-B-32--none-seed1-" + "f" * 16, month * 3),
        export("ViT-B-16--none-seed0-" + "0" * 16, month * 3),
    ]
    assert clip_export.remove_stale_exports(kept, now) == [old]
    assert sorted(tmp_path.iterdir()) == sorted(left)


def test_switching_runtime_on_the_command_line_re_embeds_nothing(tmp_path, fresh_url) -> None:
    images = tmp_path / "images"
    write_images(images, {f"{i}.png": encode(photo(i, (120, 90)), "PNG") for i in range(4)})
    run = ["run", str(images), "--work-dir", str(tmp_path / "work"), "--pretrained", "none"]
    env = {"DATABASE_URL": fresh_url}
    torch_run = run_imgvec(*run, "--runtime", "torch", env=env, timeout=300)
    assert "clip/ViT-B-32/none-seed0/512: 4 embedded" in torch_run.stdout
    default_run = run_imgvec(*run, env=env, timeout=300)
    assert "clip/ViT-B-32/none-seed0/512: 0 embedded" in default_run.stdout
    assert "4 already embedded" in default_run.stdout
    # The default runtime's vector of an image finds the one eager torch stored for it (a copy:
    # the listed file's own path would use its stored vector and leave it out).
    query = tmp_path / "query.png"
    query.write_bytes((images / "2.png").read_bytes())
    search = [*IMGVEC, "search", "--pretrained", "none", "--k", "1", "--json"]
    found = subprocess.run(
        [*search, "--image", str(query)],
        env=dict(os.environ) | env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert found.returncode == 0, found.stderr
    match = json.loads(found.stdout.splitlines()[-1])
    assert match["name"] == "2.png" and match["score"] >= 0.9999


def test_bad_runtime_choices_are_usage_errors() -> None:
    from pipeline.errors import UsageError

    with pytest.raises(UsageError, match="bf16 runs on OpenVINO"):
        _backend("onnx", "bf16")
    with pytest.raises(UsageError, match="runs on the CPU"):
        get_backend("clip", pretrained="none", runtime="openvino", device="cuda")
    with pytest.raises(UsageError, match="'cdua' is not a device"):  # not silently the CPU
        get_backend("clip", pretrained="none", device="cdua")


@pytest.mark.skipif(torch.cuda.is_available(), reason="a machine without a CUDA GPU")
def test_cuda_without_a_gpu_says_so() -> None:
    from pipeline.errors import ConfigError

    backend = get_backend("clip", pretrained="none", device="cuda")
    with pytest.raises(ConfigError, match="no CUDA GPU") as refused:
        backend.check()
    assert refused.value.hint == "--device cpu (or auto)"  # (it said: use --pretrained none)


def test_auto_falls_back_to_eager_torch_when_it_cannot_export(tmp_path, eager, caplog) -> None:
    """The default runtime with a model cache it cannot write (here: below a file, as a
    read-only image would be): one warning, then eager PyTorch, the same vectors. A compiled
    runtime asked for by name fails instead, saying what to do."""
    from pipeline.errors import ConfigError

    blocked = tmp_path / "a-file"
    blocked.write_text("")
    backend = _backend("auto", "fp32", model_cache=str(blocked / "models"))
    pairs = ((str(i), image) for i, image in enumerate(IMAGES))
    images = np.stack([v for _, v in embed_images(pairs, backend=backend, batch_size=3)])
    assert backend.runtime == "torch"
    assert "cannot write the model cache" in caplog.text and "eager PyTorch instead" in caplog.text
    assert np.allclose(images, eager[0], atol=1e-6)
    assert np.allclose(np.stack(list(embed_texts(TEXTS, backend=backend))), eager[1], atol=1e-6)
    with pytest.raises(ConfigError, match="cannot write the model cache") as refused:
        _backend("openvino", "fp32", model_cache=str(blocked / "models")).check()
    assert "--runtime torch" in (refused.value.hint or "")
