"""What open_clip offers, read without importing it: model architectures, their dimension, and
whether a weights tag can be had (cached, or a hub that answers) before torch is paid for.

open_clip keeps one JSON config per architecture in its `model_configs/` folder; reading those
takes milliseconds, where `import open_clip` (which imports torch) takes seconds. That is what
lets a scheduled rerun with nothing to embed register its space and stop without loading a model.
"""

from __future__ import annotations

import ast
import difflib
import importlib.util
import json
import os
import socket
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from functools import cache
from pathlib import Path
from urllib.parse import urlsplit

from pipeline.errors import ConfigError, UsageError

REACHABLE_TIMEOUT = 3.0  # seconds to decide whether a weights host answers at all
WAYS_ON = (
    "--pretrained none (random weights, fixed seed), --pretrained PATH (a checkpoint file), "
    "or HF_HUB_OFFLINE=1 with a cache that holds the weights"
)


@cache
def _config_folder() -> Path | None:
    spec = importlib.util.find_spec("open_clip")  # finds the package without running it
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "model_configs"


@cache
def _pretrained_table() -> dict[str, dict[str, dict]] | None:
    """open_clip's table of published weights ({model: {tag: {"url"|"hf_hub": ...}}}), read from
    the source of `open_clip/pretrained.py` without running it (running it imports torch: seconds).
    None when the file is not laid out as expected: callers then import open_clip instead."""
    folder = _config_folder()

    def tags(call: ast.expr) -> dict[str, dict]:  # dict(tag=_pcfg(hf_hub="...", ...), ...)
        if not (isinstance(call, ast.Call) and getattr(call.func, "id", "") == "dict"):
            raise TypeError("not a dict(...) of weights")
        return {
            kw.arg: {
                k.arg: k.value.value for k in kw.value.keywords if isinstance(k.value, ast.Constant)
            }
            for kw in call.keywords
            if kw.arg is not None and isinstance(kw.value, ast.Call)
        }

    if folder is None:
        return None
    try:
        tree = ast.parse((folder.parent / "pretrained.py").read_text(encoding="utf-8"))
        named: dict[str, dict] = {}
        table: dict[str, dict[str, dict]] | None = None
        for node in tree.body:
            if not (isinstance(node, ast.Assign) and len(node.targets) == 1):
                continue
            target = node.targets[0]
            if not isinstance(target, ast.Name):
                continue
            if target.id == "_PRETRAINED" and isinstance(node.value, ast.Dict):
                table = {
                    str(key.value): named[value.id] if isinstance(value, ast.Name) else tags(value)
                    for key, value in zip(node.value.keys, node.value.values, strict=True)
                    if isinstance(key, ast.Constant)
                }
            elif isinstance(node.value, ast.Call) and getattr(node.value.func, "id", "") == "dict":
                named[target.id] = tags(node.value)
    except (OSError, SyntaxError, AttributeError, KeyError, TypeError):
        return None
    if not table:
        return None
    # As open_clip does after its table: "<model>-quickgelu" offers the tags trained with QuickGELU.
    for model, weights in list(table.items()):
        quick = {tag: config for tag, config in weights.items() if config.get("quick_gelu")}
        if quick:
            table[f"{model}-quickgelu"] = quick
    return table


def _pretrained_config(model: str, tag: str) -> tuple[dict, list[str]]:
    """(the weights' config, the model's known tags), torch-free when the table can be read."""
    clean = tag.lower().replace("-", "_")  # open_clip's own normalisation of tags
    table = _pretrained_table()
    if table is not None and model in table:
        known = table.get(model, {})
        return known.get(clean, {}), list(known)
    from open_clip import pretrained

    return pretrained.get_pretrained_cfg(model, tag), pretrained.list_pretrained_tags_by_model(
        model
    )


def model_names() -> list[str]:
    return sorted(p.stem for p in _installed_config_folder().glob("*.json"))


def _installed_config_folder() -> Path:
    folder = _config_folder()
    if folder is None:
        raise ConfigError(
            "the clip backend needs open_clip and torch", hint="pip install 'imgvec[clip]'"
        )
    return folder


def embedding_dimension(model: str) -> int | None:
    """The architecture's output dimension from open_clip's config; None for a model open_clip
    resolves elsewhere (hf-hub:, local-dir:), which must then be loaded to be known."""
    if ":" in model:
        return None
    names = model_names()
    if model not in names:
        close = difflib.get_close_matches(model, names, n=3, cutoff=0.5)
        raise UsageError(
            f"unknown CLIP model {model!r}"
            + (f"; did you mean {', '.join(close)}?" if close else ""),
            hint="`imgvec models` lists the models and their pretrained weights",
        )
    config = json.loads((_installed_config_folder() / f"{model}.json").read_text(encoding="utf-8"))
    return int(config["embed_dim"])


def weights_config(model: str, tag: str) -> dict:
    """open_clip's config of a weights tag, or a usage error naming the close tags. Cheap (no
    torch) for every model in open_clip's table: a mistyped tag stops a run before its listing."""
    config, known = _pretrained_config(model, tag)
    if not config:
        close = difflib.get_close_matches(tag, known, n=3, cutoff=0.5)
        raise UsageError(
            f"no pretrained weights {tag!r} for CLIP model {model}"
            + (f"; did you mean {', '.join(close)}?" if close else "")
            + (
                f" (known: {', '.join(known[:6])}{', ...' if len(known) > 6 else ''})"
                if known and not close
                else ""
            ),
            hint="`imgvec models` lists the weights of each model; or " + WAYS_ON,
        )
    return config


def check_weights_available(model: str, tag: str) -> None:
    """Fail fast, with the ways on, when the weights are neither cached nor downloadable.

    Offline, huggingface_hub retries each file for about a minute and open_clip asks for two
    files: a new user saw 52 s of retries and ~45 repeated log lines before one error. This asks
    the host once, with a short timeout, and looks in the cache itself. With no network but a warm
    cache it switches huggingface_hub to offline mode for this process, so nothing is retried.
    """
    config = weights_config(model, tag)
    if config.get("hf_hub") and importlib.util.find_spec("huggingface_hub") is not None:
        cached_file, where, url = _hf_cached(config["hf_hub"])
        cached = cached_file is not None
    else:
        url = config.get("url", "")
        target = Path(os.path.expanduser("~/.cache/clip")) / os.path.basename(url)
        cached, where = target.is_file(), str(target.parent)
    if _offline() and cached:
        return
    if not _offline() and _reachable(url):
        return  # open_clip downloads them (or finds them cached) as usual
    if cached:
        _go_offline()
        return
    why = "HF_HUB_OFFLINE is set" if _offline() else f"{urlsplit(url).netloc} cannot be reached"
    raise ConfigError(
        f"CLIP weights {model}/{tag} are not cached (looked in {where}) and {why}",
        hint="use " + WAYS_ON,
    )


def _hf_cached(hf_hub: str) -> tuple[Path | None, str, str]:
    """(the cached file or None, the cache folder, the hub's URL) for an open_clip `hf_hub`
    entry."""
    from huggingface_hub import constants, try_to_load_from_cache

    # open_clip's own reading: 'org/name/file', or 'org/name/' for its default file, and it
    # prefers a .safetensors twin when there is one.
    repo_id, filename = os.path.split(hf_hub)
    filename = filename or "open_clip_pytorch_model.bin"
    names = [filename]
    if filename.endswith((".bin", ".pth")):
        names.insert(0, filename[:-4] + ".safetensors")
    if filename == "open_clip_pytorch_model.bin":
        names.insert(0, "open_clip_model.safetensors")
    found = [try_to_load_from_cache(repo_id, name) for name in names]
    files = [Path(path) for path in found if isinstance(path, str)]
    return (files[0] if files else None), constants.HF_HUB_CACHE, constants.ENDPOINT


def _offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _go_offline() -> None:
    # huggingface_hub reads HF_HUB_OFFLINE once, at import; it consults the constant per call.
    from huggingface_hub import constants

    os.environ["HF_HUB_OFFLINE"] = "1"
    constants.HF_HUB_OFFLINE = True


def _reachable(url: str) -> bool:
    """Whether a TCP connection to the URL's host opens within REACHABLE_TIMEOUT (DNS included)."""
    parts = urlsplit(url)
    if not parts.hostname:
        return False
    address = (parts.hostname, parts.port or (80 if parts.scheme == "http" else 443))

    def connect() -> None:
        socket.create_connection(address, timeout=REACHABLE_TIMEOUT).close()

    pool = ThreadPoolExecutor(max_workers=1)
    try:
        pool.submit(connect).result(timeout=REACHABLE_TIMEOUT + 0.5)
        return True
    except (OSError, FutureTimeout):
        return False
    finally:
        pool.shutdown(wait=False)


def pretrained_tags() -> dict[str, list[str]]:
    """Published weights per architecture, from open_clip's table (read without torch when it can
    be; else open_clip is imported)."""
    table = _pretrained_table()
    if table is not None:
        return {model: list(weights) for model, weights in table.items()}
    from open_clip import pretrained

    tags: dict[str, list[str]] = {}
    for model, tag in pretrained.list_pretrained():
        tags.setdefault(model, []).append(tag)
    return tags


def is_cached(model: str, tag: str) -> bool:
    """Whether the weights are in the local cache already (no network asked)."""
    return cached_weights_file(model, tag) is not None


def cached_weights_file(model: str, tag: str) -> Path | None:
    """The weights file of a published tag in the local cache, or None (no network asked)."""
    config, _ = _pretrained_config(model, tag)
    if config.get("hf_hub") and importlib.util.find_spec("huggingface_hub") is not None:
        return _hf_cached(config["hf_hub"])[0]
    url = config.get("url", "")
    target = Path(os.path.expanduser("~/.cache/clip")) / os.path.basename(url)
    return target if url and target.is_file() else None
