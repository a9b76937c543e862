"""What open_clip offers, read without importing it: model architectures, their dimension, and
whether a weights tag can be had (cached, or a hub that answers) before torch is paid for.

open_clip keeps one JSON config per architecture in its `model_configs/` folder; reading those
takes milliseconds, where `import open_clip` (which imports torch) takes seconds. That is what
lets a scheduled rerun with nothing to embed register its space and stop without loading a model.
"""

from __future__ import annotations

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

from pipeline.errors import ConfigError

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


def model_names() -> list[str]:
    folder = _config_folder()
    if folder is None:
        raise ConfigError(
            "the clip backend needs open_clip and torch", hint="pip install 'imgvec[clip]'"
        )
    return sorted(p.stem for p in folder.glob("*.json"))


def embedding_dimension(model: str) -> int | None:
    """The architecture's output dimension from open_clip's config; None for a model open_clip
    resolves elsewhere (hf-hub:, local-dir:), which must then be loaded to be known."""
    if ":" in model:
        return None
    names = model_names()
    if model not in names:
        close = difflib.get_close_matches(model, names, n=3, cutoff=0.5)
        raise ConfigError(
            f"unknown CLIP model {model!r}"
            + (f"; did you mean {', '.join(close)}?" if close else ""),
            hint="`imgvec models` lists the models and their pretrained weights",
        )
    config = json.loads((_config_folder() / f"{model}.json").read_text(encoding="utf-8"))
    return int(config["embed_dim"])


def check_weights_available(model: str, tag: str) -> None:
    """Fail fast, with the ways on, when the weights are neither cached nor downloadable.

    Offline, huggingface_hub retries each file for about a minute and open_clip asks for two
    files: a new user saw 52 s of retries and ~45 repeated log lines before one error. This asks
    the host once, with a short timeout, and looks in the cache itself. With no network but a warm
    cache it switches huggingface_hub to offline mode for this process, so nothing is retried.
    """
    from open_clip import pretrained  # imports torch: called only when the model is needed

    config = pretrained.get_pretrained_cfg(model, tag)
    if not config:
        known = pretrained.list_pretrained_tags_by_model(model)
        close = difflib.get_close_matches(tag, known, n=3, cutoff=0.5)
        raise ConfigError(
            f"no pretrained weights {tag!r} for CLIP model {model}"
            + (f"; did you mean {', '.join(close)}?" if close else "")
            + (
                f" (known: {', '.join(known[:6])}{', ...' if len(known) > 6 else ''})"
                if known and not close
                else ""
            ),
            hint="`imgvec models` lists the weights of each model; or " + WAYS_ON,
        )
    if config.get("hf_hub") and pretrained.has_hf_hub():
        cached, where, url = _hf_cached(config["hf_hub"])
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


def _hf_cached(hf_hub: str) -> tuple[bool, str, str]:
    """(cached?, the cache folder, the hub's URL) for an open_clip `hf_hub` entry."""
    from huggingface_hub import constants, try_to_load_from_cache
    from open_clip import pretrained
    from open_clip.constants import HF_WEIGHTS_NAME

    # open_clip's own reading: 'org/name/file', or 'org/name/' for its default file, and it
    # prefers a .safetensors twin when there is one.
    repo_id, filename = os.path.split(hf_hub)
    filename = filename or HF_WEIGHTS_NAME
    names = [*pretrained._get_safe_alternatives(filename), filename]
    cached = any(isinstance(try_to_load_from_cache(repo_id, name), str) for name in names)
    return cached, constants.HF_HUB_CACHE, constants.ENDPOINT


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
