"""Google Vertex AI `multimodalembedding@001` through the gapic PredictionServiceClient (the
`vertex` extra; the `vertexai.vision_models` wrapper is deprecated). One image per request, as the
API requires; a client-side rate limit fills the quota, and quota errors are retried with backoff."""

from __future__ import annotations

import base64
import importlib.util
import io
import threading

import numpy as np
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_random_exponential

from pipeline.db.spaces import EmbeddingSpace
from pipeline.embedding.backends.base import EmbeddingBackend, ImageItem, ItemFailure, Result
from pipeline.embedding.images import BadImage, decode_image
from pipeline.embedding.ratelimit import RateLimiter
from pipeline.errors import ConfigError, UsageError

MODEL = "multimodalembedding@001"
DIMENSIONS = (128, 256, 512, 1408)
MAX_IMAGE_BYTES = 20 * 1024 * 1024  # the service's limit; it resizes to 512x512 anyway
DEFAULT_REQUESTS_PER_MINUTE = 120  # the documented default quota


class VertexBackend(EmbeddingBackend):
    name = "vertex"
    input_kind = "locator_or_bytes"
    batch_size = 1  # one image per request

    def __init__(
        self,
        *,
        project: str | None = None,
        location: str = "us-central1",
        dimension: int = 1408,
        api_endpoint: str | None = None,
        transport: str = "rest",
        credentials=None,
        requests_per_minute: float = DEFAULT_REQUESTS_PER_MINUTE,
        concurrency: int = 16,
        retry_deadline: float = 600.0,
        request_timeout: float = 60.0,
        backoff: float = 0.5,
    ) -> None:
        if dimension not in DIMENSIONS:
            raise UsageError(
                f"--dimension must be one of {', '.join(map(str, DIMENSIONS))}, not {dimension}"
            )
        if transport not in ("rest", "grpc"):
            raise UsageError(f"--transport must be rest or grpc, not {transport!r}")
        try:
            from google.api_core import exceptions
        except ImportError:
            exceptions = None
        if exceptions is None or importlib.util.find_spec("google.cloud.aiplatform_v1") is None:
            raise ConfigError(
                "the vertex backend needs google-cloud-aiplatform",
                hint="pip install 'imgvec[vertex]'",
            )
        if project is None:
            project = _default_project()
        self.exceptions = exceptions
        self.dimension = dimension
        self.concurrency = concurrency
        self.limiter = RateLimiter(requests_per_minute)
        self.request_timeout = request_timeout
        self.retry_deadline = retry_deadline
        self.backoff = backoff
        self._endpoint = api_endpoint or f"{location}-aiplatform.googleapis.com"
        self._transport = transport
        self._credentials = credentials
        self._client = None
        self._client_lock = threading.Lock()
        self.model_path = (
            f"projects/{project}/locations/{location}/publishers/google/models/{MODEL}"
        )
        # Retried: quota (HTTP 429 / gRPC RESOURCE_EXHAUSTED) and passing server trouble.
        self._retryable = (
            exceptions.TooManyRequests,
            exceptions.ResourceExhausted,
            exceptions.ServiceUnavailable,
            exceptions.InternalServerError,
            exceptions.DeadlineExceeded,
            exceptions.GatewayTimeout,
            ConnectionError,
        )

    @property
    def client(self):
        """The gapic client, made on first use: importing it takes a second or two, which a
        rerun with nothing to embed should not pay."""
        with self._client_lock:
            if self._client is None:
                from google.cloud.aiplatform_v1.services.prediction_service import (
                    PredictionServiceClient,
                )

                credentials = self._credentials
                if self._endpoint.startswith("http://"):
                    # A local stand-in (tests, emulators) takes no credentials.
                    from google.auth.credentials import AnonymousCredentials

                    credentials = credentials or AnonymousCredentials()
                self._client = PredictionServiceClient(
                    credentials=credentials,
                    transport=self._transport,
                    client_options={"api_endpoint": self._endpoint},
                )
            return self._client

    @property
    def space(self) -> EmbeddingSpace:
        # Vectors are L2-normalised here, so <-> in SQL ranks exactly as cosine distance.
        return EmbeddingSpace(
            "vertex", MODEL, "v1", self.dimension, metric="cosine", normalized=True
        )

    def embed_image_batch(self, items: list[ImageItem]) -> list[Result]:
        return [self._embed_image(item) for item in items]

    def embed_text_batch(self, texts: list[str]) -> np.ndarray:
        return np.array(
            [self._predict({"text": text}, "textEmbedding") for text in texts], dtype=np.float32
        )

    def _embed_image(self, item: ImageItem) -> Result:
        source = item.source
        if isinstance(source, str) and source.startswith("gs://"):
            image = {"gcsUri": source}  # the service reads the object itself: nothing downloaded
        else:
            try:
                image = {
                    "bytesBase64Encoded": base64.b64encode(_within_limit(source)).decode("ascii")
                }
            except BadImage as err:
                return ItemFailure(str(err))
        try:
            return np.array(self._predict({"image": image}, "imageEmbedding"), dtype=np.float32)
        except (self.exceptions.BadRequest, self.exceptions.NotFound) as err:
            return ItemFailure(f"Vertex AI refused the image: {err.message}", permanent=True)
        except self._retryable as err:
            return ItemFailure(
                f"Vertex AI kept failing for {self.retry_deadline:.0f}s: {type(err).__name__}",
                permanent=False,
            )

    def _predict(self, instance: dict, field: str) -> list[float]:
        from google.protobuf import json_format, struct_pb2

        request_instance = json_format.ParseDict(instance, struct_pb2.Value())
        parameters = json_format.ParseDict({"dimension": self.dimension}, struct_pb2.Value())
        for attempt in Retrying(
            retry=retry_if_exception_type(self._retryable),
            # Exponential backoff with full jitter, capped at 10 s: a longer cap idles every worker long
            # after a burst of 429s has passed (measured in tests/reliability/test_quota_storm.py).
            wait=wait_random_exponential(multiplier=self.backoff, max=10),
            stop=stop_after_delay(self.retry_deadline),
            reraise=True,
        ):
            with attempt:
                self.limiter.acquire()  # every attempt counts against the quota
                response = self.client.predict(
                    endpoint=self.model_path,
                    instances=[request_instance],
                    parameters=parameters,
                    timeout=self.request_timeout,
                )
        return list(response.predictions[0][field])


def _within_limit(data: bytes) -> bytes:
    """Bytes under the service's 20 MB limit: larger images are downscaled client-side."""
    if len(data) <= MAX_IMAGE_BYTES:
        return data
    image = decode_image(data)
    image.thumbnail((2048, 2048))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=90)
    return out.getvalue()


def _default_project() -> str:
    import google.auth

    try:
        _, project = google.auth.default()
    except Exception:
        project = None
    if not project:
        raise ConfigError(
            "no Google Cloud project for Vertex AI",
            hint="pass --project or set GOOGLE_CLOUD_PROJECT",
        )
    return project
