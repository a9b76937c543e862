"""open_clip's CLIP tokenizer (`SimpleTokenizer`: text cleaning, byte-level BPE, start/end tokens,
truncation), ported without torch: open_clip's `tokenizer.py` imports torch at its top, and a
search that loads a compiled text tower must not pay seconds for it.

The port gives exactly `open_clip.get_tokenizer(model)(texts).numpy()` (tests/test_clip_inputs.py
compares them), with open_clip's own BPE vocabulary file, found without importing open_clip. Any
model whose tokenizer is something else (Hugging Face tokenizers, SigLIP's, a random reduction
mask, options this port does not know) gets None: the caller then uses open_clip's tokenizer."""

from __future__ import annotations

import gzip
import html
import importlib.util
import json
import string
from collections.abc import Callable
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_CONTEXT_LENGTH = 77  # open_clip's, for a config that sets none
CLEAN_KINDS = ("lower", "whitespace", "canonicalize")
SPECIAL_TOKENS = ("<start_of_text>", "<end_of_text>")
# The merges open_clip reads from the file (its `merges[1:49152-256-2+1]`): line 0 is a header,
# and the merges it keeps plus 2 x 256 byte tokens and 2 special ones make the 49408 token ids.
MERGES_LINES = slice(1, 49152 - 256 - 2 + 1)
# The words and pieces BPE runs on, as open_clip splits them (the `regex` module: \p{L}, \p{N}).
WORD_PATTERN = (
    "|".join(SPECIAL_TOKENS) + r"""|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
)

Tokenizer = Callable[[list[str]], np.ndarray]


def tokenizer_config(model_name: str) -> dict[str, Any] | None:
    """{"context_length": int, "clean": str} for a model whose tokenizer this module reproduces,
    read from open_clip's model config without importing open_clip; None otherwise."""
    if ":" in model_name:  # hf-hub: and local-dir: configs live elsewhere: open_clip decides
        return None
    folder = _open_clip_folder()
    path = folder / "model_configs" / f"{model_name}.json" if folder else None
    if path is None or not path.is_file():
        return None
    config = json.loads(path.read_text(encoding="utf-8"))
    if not all(key in config for key in ("embed_dim", "vision_cfg", "text_cfg")):
        return None  # open_clip ignores such a file, and then falls back to its defaults
    text = config["text_cfg"]
    options = dict(text.get("tokenizer_kwargs", {}))
    clean = options.pop("clean", "lower")
    if text.get("hf_tokenizer_name") or "siglip" in model_name.lower():
        return None  # open_clip picks another tokenizer class for these
    if options or clean not in CLEAN_KINDS:
        # e.g. reduction_mask (random token dropping), extra special tokens: not ported
        return None
    return {
        "context_length": int(text.get("context_length", DEFAULT_CONTEXT_LENGTH)),
        "clean": clean,
    }


def numpy_tokenizer(model_name: str) -> Tokenizer | None:
    """texts -> int64 (len(texts), context_length), as open_clip's tokenizer for the model; None
    when this port does not reproduce that model's tokenizer (or open_clip is not installed)."""
    config = tokenizer_config(model_name)
    if config is None:
        return None
    return _tokenizer(config["context_length"], config["clean"])


@cache
def _tokenizer(context_length: int, clean: str) -> _ClipTokenizer:
    """One per (context length, cleaning): reading the vocabulary takes a few tenths of a second."""
    folder = _open_clip_folder()
    assert folder is not None  # tokenizer_config found the model's config in it
    with gzip.open(folder / "bpe_simple_vocab_16e6.txt.gz") as vocab_file:
        lines = vocab_file.read().decode("utf-8").split("\n")[MERGES_LINES]
    merges = [(first, second) for first, second in (line.split() for line in lines)]
    return _ClipTokenizer(merges, context_length, clean)


@cache
def _open_clip_folder() -> Path | None:
    spec = importlib.util.find_spec("open_clip")  # finds the package without running it
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


class _ClipTokenizer:
    def __init__(self, merges: list[tuple[str, str]], context_length: int, clean: str) -> None:
        import regex  # open_clip's own dependency: `re` has no \p{L}

        byte_symbols = list(_byte_to_symbol().values())
        vocabulary = [
            *byte_symbols,
            *(symbol + "</w>" for symbol in byte_symbols),
            *("".join(merge) for merge in merges),
            *SPECIAL_TOKENS,
        ]
        self.token_ids = {token: index for index, token in enumerate(vocabulary)}
        self.merge_ranks = {merge: rank for rank, merge in enumerate(merges)}
        self.start_id, self.end_id = (self.token_ids[token] for token in SPECIAL_TOKENS)
        self.context_length = context_length
        self.clean = {"lower": _clean_lower, "whitespace": _clean_whitespace}.get(
            clean, _clean_canonicalize
        )
        self.words = regex.compile(WORD_PATTERN, regex.IGNORECASE)
        # open_clip memoises every word it has seen, without bound; a long-lived search service
        # tokenises what users type, so the memo is bounded here.
        self.word_pieces = lru_cache(maxsize=65536)(self._word_pieces)

    def __call__(self, texts: list[str]) -> np.ndarray:
        tokens = np.zeros((len(texts), self.context_length), dtype=np.int64)
        for row, text in enumerate(texts):
            ids = [self.start_id, *self.encode(text), self.end_id]
            if len(ids) > self.context_length:  # truncated, but still ended by the end token
                ids = ids[: self.context_length]
                ids[-1] = self.end_id
            tokens[row, : len(ids)] = ids
        return tokens

    def encode(self, text: str) -> list[int]:
        ids: list[int] = []
        byte_symbol = _byte_to_symbol()
        for word in self.words.findall(self.clean(text)):
            symbols = "".join(byte_symbol[byte] for byte in word.encode("utf-8"))
            ids.extend(self.token_ids[piece] for piece in self.word_pieces(symbols))
        return ids

    def _word_pieces(self, word: str) -> tuple[str, ...]:
        """Byte-pair merges, lowest rank first, until none applies (open_clip's `bpe`)."""
        if word in SPECIAL_TOKENS:  # open_clip seeds its memo with them: never split
            return (word,)
        pieces = (*word[:-1], word[-1] + "</w>")
        while len(pieces) > 1:
            pairs = set(zip(pieces, pieces[1:], strict=False))
            best = min(pairs, key=lambda pair: self.merge_ranks.get(pair, float("inf")))
            if best not in self.merge_ranks:
                break
            pieces = _merged(pieces, best)
        return pieces


def _merged(pieces: tuple[str, ...], pair: tuple[str, str]) -> tuple[str, ...]:
    """Every non-overlapping occurrence of `pair`, left to right, joined into one piece."""
    first, second = pair
    merged: list[str] = []
    index = 0
    while index < len(pieces):
        if pieces[index] == first and index + 1 < len(pieces) and pieces[index + 1] == second:
            merged.append(first + second)
            index += 2
        else:
            merged.append(pieces[index])
            index += 1
    return tuple(merged)


@cache
def _byte_to_symbol() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map (BPE never sees spaces or controls):
    printable Latin-1 bytes stand for themselves, the others for characters from U+0100 on. The
    order matters: the vocabulary lists the symbols in it, so it gives the token ids."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    printable += range(ord("®"), ord("ÿ") + 1)
    symbols = {byte: chr(byte) for byte in printable}
    others = [byte for byte in range(256) if byte not in symbols]
    symbols.update({byte: chr(256 + n) for n, byte in enumerate(others)})
    return symbols


def _basic_clean(text: str) -> str:
    import ftfy  # open_clip's own dependency (mojibake repair), imported when first needed

    return html.unescape(html.unescape(ftfy.fix_text(text))).strip()


def _clean_whitespace(text: str) -> str:
    return " ".join(_basic_clean(text).split())


def _clean_lower(text: str) -> str:
    return _clean_whitespace(text).lower()


_NO_PUNCTUATION = str.maketrans("", "", string.punctuation)


def _clean_canonicalize(text: str) -> str:
    text = _basic_clean(text).replace("_", " ").translate(_NO_PUNCTUATION).lower()
    return " ".join(text.split())
