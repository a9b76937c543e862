"""CLIP weights and model names as a new user meets them: offline with nothing cached (one clear
line within seconds, not a minute of hub retries), offline with a warm cache (loads, no network),
a mistyped model or tag (exit 2, the close names), and `imgvec models`. No network is used: the
hub endpoint is a closed port on 127.0.0.1, and the warm cache is written by the test."""

from __future__ import annotations

import time

import pytest

from pipeline.embedding.backends import clip_models
from tests.conftest import free_port, run_imgvec
from tests.images import encode, photo, write_images

open_clip = pytest.importorskip("open_clip")
torch = pytest.importorskip("torch")

TAG = "laion2b_s34b_b79k"  # the default weights


@pytest.fixture
def listed(tmp_path, fresh_url) -> tuple[str, dict]:
    write_images(tmp_path / "images", {"a.png": encode(photo(1), "PNG")})
    work = str(tmp_path / "work")
    env = {
        "DATABASE_URL": fresh_url,
        "HF_HOME": str(tmp_path / "hf"),  # an empty cache
        "HF_ENDPOINT": f"http://127.0.0.1:{free_port()}",  # a hub that does not answer
    }
    run_imgvec("list", str(tmp_path / "images"), "--work-dir", work, env=env)
    return work, env


def test_offline_without_the_weights_fails_fast_with_the_ways_on(listed):
    work, env = listed
    started = time.monotonic()
    result = run_imgvec("embed", "--work-dir", work, env=env, check=False)
    took = time.monotonic() - started
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    error = next(line for line in lines if line.startswith("imgvec: error:"))
    assert f"ViT-B-32/{TAG}" in error and "not cached" in error and "cannot be reached" in error
    assert str(env["HF_HOME"]) in error  # where it looked
    hint = next(line for line in lines if line.startswith("imgvec: hint:"))
    assert "--pretrained none" in hint and "--pretrained PATH" in hint and "HF_HUB_OFFLINE" in hint
    assert len(lines) == len(set(lines))  # no line repeated (there were ~45)
    assert "Traceback" not in result.stderr
    # Not a failed export: eager PyTorch would need the same weights (no "falls back" line).
    assert "eager PyTorch instead" not in result.stderr
    # Measured here: 1.4 s (52 s before). A generous bound: this is no benchmark.
    assert took < 15, f"{took:.1f} s"


def test_offline_with_a_warm_cache_loads_the_cached_weights(listed, tmp_path):
    work, env = listed
    # A hub cache as huggingface_hub lays it out, holding weights this test made (random, seeded).
    torch.manual_seed(7)
    model = open_clip.create_model("ViT-B-32", pretrained=None)
    config = clip_models._pretrained_table()["ViT-B-32"][TAG]
    repo_id = config["hf_hub"].rstrip("/")
    repo = tmp_path / "hf" / "hub" / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    torch.save(model.state_dict(), snapshot / "open_clip_pytorch_model.bin")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)

    for offline in ({}, {"HF_HUB_OFFLINE": "1"}):  # the hub unreachable, or offline declared
        result = run_imgvec(
            "embed", "--work-dir", work, "--force", env=env | offline, check=False, timeout=300
        )
        assert result.returncode == 0, result.stderr
        assert "1 embedded" in result.stdout and f"clip/ViT-B-32/{TAG}/512" in result.stdout


def test_mistyped_model_and_weights_are_usage_errors_with_close_names(listed):
    work, env = listed
    model = run_imgvec("embed", "--work-dir", work, "--model", "ViT-B-3", env=env, check=False)
    assert model.returncode == 2
    assert "unknown CLIP model 'ViT-B-3'" in model.stderr and "ViT-B-32" in model.stderr
    assert "imgvec models" in model.stderr
    assert len(model.stderr) < 600  # one line and a hint, not 4,000 characters
    tag = run_imgvec(
        "embed", "--work-dir", work, "--pretrained", "laion2b_s34b", env=env, check=False
    )
    assert tag.returncode == 2 and TAG in tag.stderr and "imgvec models" in tag.stderr


def test_models_lists_models_dimensions_and_weights():
    result = run_imgvec("models")
    lines = result.stdout.splitlines()
    vit = next(line for line in lines if line.split()[:2] == ["clip", "ViT-B-32*"])  # the default
    assert " 512 " in vit and f"{TAG}*" in vit and "openai" in vit
    assert any(line.startswith("vertex") and "1408" in line for line in lines)


def test_weights_table_read_without_torch_is_open_clips_own():
    from open_clip import pretrained

    table = clip_models._pretrained_table()
    for model, tag in pretrained.list_pretrained():
        ours, theirs = table[model][tag], pretrained.get_pretrained_cfg(model, tag)
        assert (ours.get("hf_hub", ""), ours.get("url", "")) == (
            theirs.get("hf_hub", ""),
            theirs.get("url", ""),
        ), (model, tag)
    assert sum(map(len, table.values())) == len(pretrained.list_pretrained())
    for name in ("ViT-B-32", "ViT-L-14", "RN50"):
        assert (
            clip_models.embedding_dimension(name) == open_clip.get_model_config(name)["embed_dim"]
        )


def test_no_op_rerun_and_help_import_no_model(tmp_path, fresh_url):
    """A scheduled rerun with nothing new, `imgvec --help` and a usage error never import torch,
    open_clip, the Vertex SDK or pandas' heavier peers (checked with python -X importtime)."""
    write_images(tmp_path / "images", {f"{i}.png": encode(photo(i), "PNG") for i in range(3)})
    env = {"DATABASE_URL": fresh_url, "PYTHONPROFILEIMPORTTIME": "1"}
    args = [
        "run",
        str(tmp_path / "images"),
        "--work-dir",
        str(tmp_path / "w"),
        "--pretrained",
        "none",
    ]
    first = run_imgvec(*args, env=env)
    # The first run needs the model (the check works): torch to export it, or the runtime alone
    # when the session's model cache holds its export already.
    assert {"torch", "openvino"} & _imported(first.stderr)
    heavy = {"torch", "open_clip", "openvino", "onnxruntime", "google.cloud.aiplatform_v1"}
    heavy |= {"fastapi", "uvicorn", "sklearn"}
    for call in (args, ["--help"], ["search"], ["embed", "--help"]):
        result = run_imgvec(*call, env=env, check=False)
        assert result.returncode in (0, 2), result.stderr
        assert not heavy & _imported(result.stderr), call
    assert "pandas" not in _imported(run_imgvec("--help", env=env).stderr)


def _imported(importtime: str) -> set[str]:
    """Top-level names of the modules a `-X importtime` log shows."""
    return {
        line.rsplit("|", 1)[-1].strip()
        for line in importtime.splitlines()
        if line.startswith("import time:") and "|" in line
    } | {
        line.rsplit("|", 1)[-1].strip().split(".")[0]
        for line in importtime.splitlines()
        if line.startswith("import time:") and "|" in line
    }


@pytest.mark.parametrize("content", [b"hello\n", bytes(range(256)) * 8])
def test_a_file_that_is_no_checkpoint_says_so(listed, tmp_path, content):
    """torch's own words were a bare KeyError, or advice to load with weights_only=False (which
    runs whatever code the file holds)."""
    work, env = listed
    fake = tmp_path / "fake.pt"
    fake.write_bytes(content)
    result = run_imgvec(
        "embed", "--work-dir", work, "--pretrained", str(fake), env=env, check=False
    )
    assert result.returncode == 1, result.stderr
    assert f"from {fake}: not a checkpoint of it torch can read" in result.stderr
    assert "weights_only" not in result.stderr and "Traceback" not in result.stderr
