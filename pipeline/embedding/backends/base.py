"""The backend protocol, what a plug-in implements (found through `pipeline.plugins`):

- `name`: the registry name (`--backend NAME`); `help_panel`: the heading of its flags in `--help`;
- `Options`: a pydantic model of what a user may choose; the CLI makes one flag per field (its
  description is the help, its default the default) and `from_options` validates through it;
- `options_for_space(space)`: the flags that select a space again (told to analysts);
- `input_kind`, `embed_image_batch`, `embed_text_batch` and `space`: the work itself.

The base class does the batching, the concurrency and the validation of vectors."""

from __future__ import annotations

import abc
import collections
import contextlib
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import batched
from typing import Any, ClassVar, Self

import numpy as np
from pydantic import BaseModel, ValidationError

from pipeline import interrupt
from pipeline.core.space import EmbeddingSpace
from pipeline.errors import ItemFailure, UsageError


@dataclass
class ImageItem:
    """One image to embed. `source` is what the backend asked for (see `input_kind`), or the
    ItemFailure that stopped it from being read."""

    locator: str
    source: Any = None
    content_hash: str | None = None
    size: int | None = None  # as listed: an object over the cap fails before it is fetched
    content_type: str | None = None  # as listed (a backend may take some types as they are)
    #: called with the decoded RGB image in the reader thread, if the object is decoded there
    #: (the embed stage makes its thumbnail from it); a backend that sends the object unread
    #: (Vertex AI's gcsUri) does not call it
    on_image: Callable[[Any], None] | None = None


Result = np.ndarray | ItemFailure


class EmbeddingBackend(abc.ABC):
    #: registry name, as given to --backend
    name: ClassVar[str]
    #: what a user may choose: one CLI flag per field (`--field-name`), checked by pydantic
    Options: ClassVar[type[BaseModel]]
    #: the heading of this backend's flags in `--help`
    help_panel: ClassVar[str]
    #: what `ImageItem.source` holds when a batch reaches the backend, as `load_source` makes it:
    #: "image" a decoded RGB PIL image, passed through `prepare`; "bytes" the object's bytes
    #: (checked to be an image first). A backend that needs more overrides `load_source`.
    input_kind: ClassVar[str] = "image"
    #: images per call of `embed_image_batch`
    batch_size: int = 32
    #: the most images a call can take (a service's limit), None for no limit
    max_batch_size: ClassVar[int | None] = None
    #: how many batches may be in flight at once (I/O-bound remote backends want many)
    concurrency: int = 1

    def __init__(self, options: Any) -> None:
        """Built from a validated `Options` (through `from_options`)."""
        self.options = options

    @classmethod
    def from_options(cls, **values: Any) -> Self:
        """The backend the options describe, checked by `Options` (a bad value is a usage error
        naming its flag). Cheap: models and clients load on first use."""
        return cls(cls.options_from(**values))

    @classmethod
    def options_from(cls, **values: Any) -> Any:
        """`Options` checked: a bad value is a usage error naming its flag."""
        try:
            return cls.Options(**values)
        except ValidationError as err:
            problem = err.errors()[0]
            message = problem["msg"].removeprefix("Value error, ")
            if problem["loc"]:
                message = f"--{str(problem['loc'][0]).replace('_', '-')}: {message}"
            raise UsageError(message) from None

    @classmethod
    def space_from_options(cls, **values: Any) -> EmbeddingSpace:
        """The space the options select, for commands that only read vectors (status, diverse,
        thumbnails). By default the backend's own; one that needs credentials or a service to be
        built overrides this to tell its space without them."""
        return cls.from_options(**values).space

    @classmethod
    @abc.abstractmethod
    def options_for_space(cls, space: EmbeddingSpace) -> str:
        """The command-line flags that select `space` (those left at their default omitted)."""

    @classmethod
    def for_space(cls, space: EmbeddingSpace) -> EmbeddingBackend:
        """A backend for a space found in the database (the server serves every space), built
        without loading anything. By default one that cannot embed: a backend that can find its
        weights again from the space's name overrides this."""
        from pipeline.embedding.backends.unavailable import UnavailableBackend

        reason = f"backend {cls.name} cannot be rebuilt from the space's name"
        return UnavailableBackend(space, reason, cls.options_for_space(space))

    @classmethod
    def models(cls, all_models: bool = False) -> list[tuple[str, str, str]]:
        """(model, dimension, weights) rows for `imgvec models`; `all_models` adds those a
        user cannot use as they are (e.g. architectures without published weights)."""
        return []

    @classmethod
    def check_other_options(cls, space: EmbeddingSpace, given: dict[str, Any]) -> None:
        """Flags of other backends given with this one: ignored, unless one contradicts the
        backend's `space` (a backend that can tell overrides this)."""
        return None

    @property
    @abc.abstractmethod
    def space(self) -> EmbeddingSpace:
        """The vector space this backend's output lives in."""

    @abc.abstractmethod
    def embed_image_batch(self, items: list[ImageItem]) -> list[Result]:
        """One vector (or ItemFailure) per item, in order."""

    @abc.abstractmethod
    def embed_text_batch(self, texts: list[str]) -> np.ndarray:
        """One vector per text, in the same space as the images."""

    def share_quota(self, tasks: float) -> None:
        """This process is one of `tasks` (shards of one run) sharing the backend's quota: a
        backend with a service quota (Vertex AI) paces at 1/tasks of it. Local models: nothing.
        `tasks` = the run's objects / this task's gives each task the quota in proportion to its
        share, so that unequal shares (a hash splits them ~2 % unevenly) still end together."""
        return None

    def check(self) -> None:
        """Make sure the backend can work (its weights exist, its settings are valid), loading
        what it must. Called before a space is first registered, so that a typo never creates
        one; a backend that checks everything when it is built needs nothing here."""
        return None

    def prepare(self, image):
        """Per-image work done in reader threads, off the model's thread (e.g. preprocessing)."""
        return image

    # -- what a batch is given: the one place bytes become the backend's input ----------------

    def load_source(self, item: ImageItem, reader) -> Any:
        """The input for a listed object, made in a reader thread: its bytes read (within the
        size cap), checked by imgvec's decode policy and made into `input_kind`. Raises BadImage
        or ItemFailure for an object that must not reach the model."""
        data = reader.read(item.locator, size=item.size)
        return self.source_from_bytes(data, on_image=item.on_image)

    def source_from_bytes(self, data: bytes, on_image: Callable[[Any], None] | None = None) -> Any:
        from pipeline.embedding.images import decode_image  # Pillow: only once images are read

        image = decode_image(data)
        if on_image is not None:
            on_image(image)
        return self.prepare(image) if self.input_kind == "image" else data

    def source_from_image(self, image) -> Any:
        """The input for an image given as a PIL image (the notebook API)."""
        from pipeline.embedding.images import to_rgb

        rgb = to_rgb(image)
        if self.input_kind == "image":
            return self.prepare(rgb)
        import io

        buffer = io.BytesIO()
        rgb.save(buffer, format="PNG")
        return buffer.getvalue()

    # -- done here for every backend --------------------------------------------------------

    def embed_stream(self, items: Iterable[ImageItem]) -> Iterator[tuple[ImageItem, Result]]:
        """Embed a stream of items in order with bounded memory: batches of `batch_size`, up to
        `concurrency` batches in flight."""
        with thread_pool(self.concurrency, f"{self.name}-batch") as pool:
            yield from ordered_bounded(
                self._embed_batch,
                map(list, batched(items, self.batch_size)),
                pool,
                in_flight=self.concurrency * 2,
                flatten=True,
            )

    def _embed_batch(self, batch: list[ImageItem]) -> list[tuple[ImageItem, Result]]:
        # Items that already failed (unreadable, not an image) pass by the model, in their place.
        ready = [item for item in batch if not isinstance(item.source, ItemFailure)]
        results = iter(self._checked(ready, self.embed_image_batch(ready)) if ready else ())
        return [
            (item, item.source if isinstance(item.source, ItemFailure) else next(results))
            for item in batch
        ]

    def embed_texts(self, texts: Iterable[str]) -> Iterator[np.ndarray]:
        for batch in batched(texts, self.batch_size):
            yield from self._checked_texts(list(batch))

    def _checked_texts(self, batch: list[str]) -> list[np.ndarray]:
        vectors = []
        texts_vectors = np.asarray(self.embed_text_batch(batch), np.float32)
        for text, vector in zip(batch, texts_vectors, strict=True):
            checked = self._validate(vector)
            if isinstance(checked, ItemFailure):  # a query cannot go on without its vector
                raise RuntimeError(f"backend {self.name}: {checked.reason} for text {text!r}")
            vectors.append(checked)
        return vectors

    def _checked(self, batch: list[ImageItem], results: list[Result]) -> list[Result]:
        if len(results) != len(batch):
            raise RuntimeError(
                f"backend {self.name} returned {len(results)} results for {len(batch)} images"
            )
        return [r if isinstance(r, ItemFailure) else self._validate(r) for r in results]

    def _validate(self, vector) -> Result:
        vector = np.asarray(vector, dtype=np.float32).reshape(-1)
        if vector.shape[0] != self.space.dimension:
            raise RuntimeError(
                f"backend {self.name} returned {vector.shape[0]} dimensions, not {self.space.dimension}"
            )
        if not np.all(np.isfinite(vector)):
            return ItemFailure("the model returned a non-finite vector", permanent=False)
        if self.space.normalized:
            norm = float(np.linalg.norm(vector))
            if norm == 0:
                return ItemFailure("the model returned a zero vector", permanent=False)
            vector = vector / norm
        return vector


@contextlib.contextmanager
def thread_pool(workers: int, name: str) -> Iterator[ThreadPoolExecutor]:
    """A thread pool that is waited for when the work ends normally, and abandoned (queued work
    cancelled, running work left to finish unseen) when it ends by an error or a stop: a
    Ctrl-C must not wait for the batch in the model."""
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)
    try:
        yield pool
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def ordered_bounded(
    fn: Callable,
    inputs: Iterable,
    pool: ThreadPoolExecutor,
    *,
    in_flight: int,
    flatten: bool = False,
) -> Iterator:
    """`map(fn, inputs)` on a thread pool, results in input order, at most `in_flight` pending:
    the reader never runs ahead of the consumer by more than that. Stops waiting as soon as a
    stop is asked for (`pipeline.interrupt`)."""
    pending: collections.deque = collections.deque()
    for value in inputs:
        pending.append(pool.submit(fn, value))
        if len(pending) >= in_flight:
            result = interrupt.result(pending.popleft())
            yield from (result if flatten else [result])
    while pending:
        result = interrupt.result(pending.popleft())
        yield from (result if flatten else [result])
