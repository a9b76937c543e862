"""Google Vertex AI `multimodalembedding@001` through the gapic PredictionServiceClient (the
`vertex` extra; the `vertexai.vision_models` wrapper is deprecated). One image per request, as the
API requires; a client-side rate limit fills the quota of each region (a run's N tasks take 1/N of
it each: `share_quota`), requests spread over the regions, and quota errors are retried with backoff.

Vertex gets only what it documents: JPEG or PNG (`mimeType` image/jpeg or image/png), at most 20 MB
(base64 images: once transcoded to PNG; Cloud Storage images: as stored). What it is sent is the
image the CLIP backend sees (imgvec's decode policy: upright by EXIF, 16-bit scaled, alpha over
white): the original bytes when they are exactly that, else the decoded image re-encoded. A
`gs://` object goes as `gcsUri` only when its listed type and size are accepted and a look at its
first and last bytes shows a plain, complete JPEG or PNG; the others are read, decoded and sent as
bytes, so an object that is not an image never costs a request."""

from __future__ import annotations

import importlib.util
import re
import threading
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator
from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_random_exponential

from pipeline.core.space import EmbeddingSpace
from pipeline.embedding.backends.base import EmbeddingBackend, ImageItem, ItemFailure, Result
from pipeline.embedding.backends.vertex_requests import (
    MIME_TYPES,
    VertexImage,
    as_gcs_uri,
    default_credentials,
    dropped_connection_errors,
    never_connected,
    prediction_clients,
    refusal_reason,
    request_image,
    takes_as_stored,
)
from pipeline.embedding.images import Decoded, decode, to_rgb
from pipeline.embedding.ratelimit import RateLimiter
from pipeline.errors import ConfigError

MODEL = "multimodalembedding@001"
DIMENSIONS = (128, 256, 512, 1408)
_REGION = re.compile(r"[a-z][a-z0-9-]*[a-z0-9]")


class VertexOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dimension: int = Field(
        1408, description="128, 256, 512 or 1408 (the model's full size). CLIP's is its model's."
    )
    project: str | None = Field(
        None, description="Google Cloud project. Default: from credentials."
    )
    location: str = Field(
        "us-central1",
        description="Vertex AI region, or several, comma-separated (each has its own quota).",
    )
    api_endpoint: str | None = Field(
        None, description="Override the API endpoint (http:// for a local stand-in)."
    )
    transport: Literal["rest", "grpc"] = Field("rest", description="rest or grpc.")
    rate_limit: float = Field(
        120,  # the documented default quota
        gt=0,
        description="Requests per minute per region: the project's quota (default: the documented "
        "default), shared by all tasks of a run (each paces at rate/tasks).",
    )
    concurrency: int = Field(16, ge=1, description="Requests in flight.")

    @field_validator("dimension")
    @classmethod
    def _a_size_the_model_makes(cls, dimension: int) -> int:
        if dimension not in DIMENSIONS:
            raise ValueError(f"must be one of {', '.join(map(str, DIMENSIONS))}, not {dimension}")
        return dimension

    @field_validator("location")
    @classmethod
    def _regions(cls, location: str) -> str:
        regions = [region.strip() for region in location.split(",")]
        # A region names a host (`{region}-aiplatform.googleapis.com`): nothing else gets in.
        if not all(_REGION.fullmatch(region) for region in regions):
            raise ValueError(f"not a region or comma-separated regions: {location!r}")
        if len(set(regions)) < len(regions):
            raise ValueError(f"a region is named twice: {location!r}")
        return ",".join(regions)


class VertexBackend(EmbeddingBackend):
    name = "vertex"
    help_panel = "Vertex AI (--backend vertex)"
    Options = VertexOptions
    input_kind = "bytes"  # as a VertexImage: see load_source
    batch_size = 1  # one image per request
    max_batch_size = 1

    def __init__(
        self,
        options: VertexOptions,
        *,
        credentials=None,
        retry_deadline: float = 600.0,
        request_timeout: float = 60.0,
        backoff: float = 0.5,
    ) -> None:
        super().__init__(options)
        project, api_endpoint = options.project, options.api_endpoint
        needs = ConfigError(
            "the vertex backend needs google-cloud-aiplatform", hint="pip install 'imgvec[vertex]'"
        )
        try:
            from google.api_core import exceptions
        except ImportError:
            raise needs from None
        if importlib.util.find_spec("google.cloud.aiplatform_v1") is None:
            raise needs

        if credentials is None and not (api_endpoint or "").startswith("http://"):
            # Found now, in one clear line if missing, not at the first request in a worker.
            credentials, found_project = default_credentials()
            project = project or found_project
        if not project:
            raise ConfigError(
                "no Google Cloud project for Vertex AI",
                hint="pass --project or set GOOGLE_CLOUD_PROJECT",
            )
        self.exceptions = exceptions
        self.dimension = options.dimension
        self.concurrency = options.concurrency
        # One quota per region; where a request goes is where its rate-limit slot is free.
        self.locations = options.location.split(",")
        self.limiter = RateLimiter(options.rate_limit, quotas=len(self.locations))
        self.request_timeout = request_timeout
        self.retry_deadline = retry_deadline
        self.backoff = backoff
        self._api_endpoint = api_endpoint
        self._transport = options.transport
        self._credentials = credentials
        self._clients: list[Any] = []  # the regions' gapic clients, made on first use
        self._client_lock = threading.Lock()
        self.model_paths = [
            f"projects/{project}/locations/{location}/publishers/google/models/{MODEL}"
            for location in self.locations
        ]
        # Retried: quota (HTTP 429 / gRPC RESOURCE_EXHAUSTED) and passing server trouble.
        self._retryable: tuple[type[Exception], ...] = (
            exceptions.TooManyRequests, exceptions.ResourceExhausted, exceptions.ServiceUnavailable,
            exceptions.InternalServerError, exceptions.DeadlineExceeded, exceptions.GatewayTimeout,
            ConnectionError, *dropped_connection_errors(),
        )  # fmt: skip

    def share_quota(self, tasks: float) -> None:
        """`tasks` processes share the project's quota in each region: pace at rate/tasks."""
        self.limiter.share(tasks)

    def clients(self) -> list[Any]:
        """Each region's gapic client, made on first use: importing them takes a second or two,
        which a rerun with nothing to embed should not pay."""
        with self._client_lock:
            if not self._clients:
                self._clients = prediction_clients(
                    self.locations,
                    self._api_endpoint,
                    self._credentials,
                    self._transport,
                    connections=self.concurrency,
                )
            return self._clients

    @property
    def space(self) -> EmbeddingSpace:
        return self._space(self.dimension)

    @classmethod
    def space_from_options(cls, **values: Any) -> EmbeddingSpace:
        """The dimension alone says the space: no credentials or project needed to read it."""
        return cls._space(cls.options_from(**values).dimension)

    @classmethod
    def _space(cls, dimension: int) -> EmbeddingSpace:
        # Vectors are L2-normalised here, so <-> in SQL ranks exactly as cosine distance.
        return EmbeddingSpace(cls.name, MODEL, "v1", dimension, metric="cosine", normalized=True)

    @classmethod
    def options_for_space(cls, space: EmbeddingSpace) -> str:
        return f"--backend {cls.name} --dimension {space.dimension}"

    @classmethod
    def for_space(cls, space: EmbeddingSpace) -> EmbeddingBackend:
        """The dimension comes from the space; the project and credentials from the environment
        (GOOGLE_CLOUD_PROJECT, Application Default Credentials), as for `--backend vertex`."""
        from pipeline.embedding.backends.unavailable import UnavailableBackend

        try:
            backend = cls.from_options(dimension=space.dimension)
        except ConfigError as err:
            return UnavailableBackend(space, str(err), cls.options_for_space(space))
        return backend if backend.space == space else super().for_space(space)

    @classmethod
    def models(cls, all_models: bool = False) -> list[tuple[str, str, str]]:
        return [(MODEL, "|".join(map(str, DIMENSIONS)), "(the service's)")]

    def embed_image_batch(self, items: list[ImageItem]) -> list[Result]:
        return [self._embed_image(item) for item in items]

    def embed_text_batch(self, texts: list[str]) -> np.ndarray:
        return np.array(
            [self._predict({"text": text}, "textEmbedding") for text in texts], dtype=np.float32
        )

    def load_source(self, item: ImageItem, reader) -> VertexImage:
        """What to send for a listed object (in a reader thread): its gcsUri when Vertex takes
        the object as stored, else the checked image's bytes. Raises BadImage or ItemFailure
        (unreadable) for an object that must not cost a request."""
        if item.locator.startswith("gs://"):
            as_uri = as_gcs_uri(item, reader)
            if as_uri is not None:
                return as_uri
        data = reader.read(item.locator, size=item.size)
        decoded = decode(data)
        if item.on_image is not None:
            item.on_image(decoded.image)
        if item.locator.startswith("gs://") and takes_as_stored(item, decoded, data):
            return VertexImage(MIME_TYPES[str(decoded.format)], gcs_uri=item.locator)
        return request_image(decoded, data)

    def source_from_bytes(
        self, data: bytes, on_image: Callable[[Any], None] | None = None
    ) -> VertexImage:
        """What to send for an image's bytes (a query image): checked, and sent as the CLIP
        backend would see them."""
        decoded = decode(data)
        if on_image is not None:
            on_image(decoded.image)
        return request_image(decoded, data)

    def source_from_image(self, image) -> VertexImage:
        """What to send for a PIL image (the notebook API)."""
        rgb = to_rgb(image)
        return request_image(Decoded(rgb, None, rgb.mode, 1, False), None)

    def _embed_image(self, item: ImageItem) -> Result:
        image: VertexImage = item.source
        try:
            vector = self._predict({"image": image.instance()}, "imageEmbedding")
            return np.array(vector, dtype=np.float32)
        except (self.exceptions.BadRequest, self.exceptions.NotFound) as err:
            reason = f"Vertex AI refused the image: {refusal_reason(err)}"
            return ItemFailure(reason, permanent=True)
        except self._retryable as err:
            if never_connected(err):
                raise  # (exit 75: nothing answers there; each image would wait out the deadline)
            return ItemFailure(
                f"Vertex AI kept failing for {self.retry_deadline:.0f}s: {type(err).__name__}",
                permanent=False,
            )

    def _worth_retrying(self, err: BaseException) -> bool:
        return isinstance(err, self._retryable) and not never_connected(err)

    def _predict(self, instance: dict, field: str) -> list[float]:
        from google.protobuf import json_format, struct_pb2

        request_instance = json_format.ParseDict(instance, struct_pb2.Value())
        parameters = json_format.ParseDict({"dimension": self.dimension}, struct_pb2.Value())
        # Made before a rate-limit slot is taken: slots taken while the first client is made
        # would all go at once when it is ready, a burst the quota's next minute pays for.
        clients = self.clients()
        for attempt in Retrying(
            retry=retry_if_exception(self._worth_retrying),
            # Exponential backoff with full jitter, capped at 10 s: a longer cap idles every worker long
            # after a burst of 429s has passed (measured in tests/reliability/test_quota_storm.py).
            wait=wait_random_exponential(multiplier=self.backoff, max=10),
            stop=stop_after_delay(self.retry_deadline),
            reraise=True,
        ):
            with attempt:
                # Every attempt counts against the quota of the region it goes to.
                region = self.limiter.acquire()
                response = clients[region].predict(
                    endpoint=self.model_paths[region],
                    instances=[request_instance],
                    parameters=parameters,
                    timeout=self.request_timeout,
                )
        return list(response.predictions[0][field])
