"""Google Vertex AI `multimodalembedding@001` through the gapic PredictionServiceClient (the
`vertex` extra; the `vertexai.vision_models` wrapper is deprecated). One image per request, as the
API requires; a client-side rate limit fills the quota, and quota errors are retried with backoff.

Vertex gets only what it documents: JPEG or PNG (`mimeType` image/jpeg or image/png), at most 20 MB
(base64 images: once transcoded to PNG; Cloud Storage images: as stored). What it is sent is the
image the CLIP backend sees (imgvec's decode policy: upright by EXIF, 16-bit scaled, alpha over
white): the original bytes when they are exactly that, else the decoded image re-encoded. A
`gs://` object goes as `gcsUri` only when its listed type and size are accepted and a look at its
first and last bytes shows a plain, complete JPEG or PNG; the others are read, decoded and sent as
bytes, so an object that is not an image never costs a request."""

from __future__ import annotations

import base64
import importlib.util
import io
import math
import re
import threading
from dataclasses import dataclass

import numpy as np
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_random_exponential

from pipeline.core.space import EmbeddingSpace
from pipeline.embedding.backends.base import EmbeddingBackend, ImageItem, ItemFailure, Result
from pipeline.embedding.images import MAX_PIXELS, Decoded, decode, to_rgb
from pipeline.embedding.ratelimit import RateLimiter
from pipeline.errors import ConfigError, UsageError

MODEL = "multimodalembedding@001"
DIMENSIONS = (128, 256, 512, 1408)
MAX_IMAGE_BYTES = 20 * 1024 * 1024  # the service's limit; it resizes to 512x512 anyway
DEFAULT_REQUESTS_PER_MINUTE = 120  # the documented default quota
#: the file formats sent as they are, and their `mimeType` (the only two the REST API names)
MIME_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png"}
#: how much of a gs:// object is read to see whether it can go as a gcsUri
PROBE_BYTES = 128 * 1024
CREDENTIALS_HINT = (
    "run `gcloud auth application-default login`, or set GOOGLE_APPLICATION_CREDENTIALS to a "
    "service account key file; name the project with --project (or GOOGLE_CLOUD_PROJECT)"
)


@dataclass(frozen=True)
class VertexImage:
    """What one request carries for an image: bytes, or a Cloud Storage URI; and its mimeType."""

    mime_type: str
    data: bytes | None = None
    gcs_uri: str | None = None

    def instance(self) -> dict:
        if self.gcs_uri is not None:
            return {"gcsUri": self.gcs_uri, "mimeType": self.mime_type}
        encoded = base64.b64encode(self.data).decode("ascii")
        return {"bytesBase64Encoded": encoded, "mimeType": self.mime_type}


class VertexBackend(EmbeddingBackend):
    name = "vertex"
    input_kind = "bytes"  # as a VertexImage: see load_source
    batch_size = 1  # one image per request
    max_batch_size = 1

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
        if credentials is None and not (api_endpoint or "").startswith("http://"):
            # Found now, in one clear line if missing, not at the first request in a worker.
            credentials, found_project = _default_credentials()
            project = project or found_project
        if not project:
            raise ConfigError(
                "no Google Cloud project for Vertex AI",
                hint="pass --project or set GOOGLE_CLOUD_PROJECT",
            )
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

    def load_source(self, item: ImageItem, reader) -> VertexImage:
        """What to send for a listed object (in a reader thread): its gcsUri when Vertex takes
        the object as stored, else the checked image's bytes. Raises BadImage or ItemFailure
        (unreadable) for an object that must not cost a request."""
        if item.locator.startswith("gs://"):
            as_uri = _as_gcs_uri(item, reader)
            if as_uri is not None:
                return as_uri
        data = reader.read(item.locator, size=item.size)
        decoded = decode(data)
        if item.locator.startswith("gs://") and _takes_as_stored(item, decoded, data):
            return VertexImage(MIME_TYPES[decoded.format], gcs_uri=item.locator)
        return request_image(decoded, data)

    def source_from_bytes(self, data: bytes) -> VertexImage:
        """What to send for an image's bytes (a query image): checked, and sent as the CLIP
        backend would see them."""
        return request_image(decode(data), data)

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
            return ItemFailure(f"Vertex AI refused the image: {_reason(err)}", permanent=True)
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


def request_image(decoded: Decoded, data: bytes | None) -> VertexImage:
    """The bytes to send for an image decoded by imgvec's policy: the original `data` when it is
    exactly that image in a format Vertex takes, within the limit; else the decoded image
    re-encoded (JPEG for a JPEG original, a photo; PNG otherwise), downscaled past the limit."""
    image = decoded.image
    fits = _png_size_bound(*image.size) <= MAX_IMAGE_BYTES
    if data is not None and decoded.format in MIME_TYPES and _plain(decoded, data) and fits:
        return VertexImage(MIME_TYPES[decoded.format], data=data)
    if not fits:
        # The limit is on the image once transcoded to PNG: keep the raw RGB under it (the
        # service resizes to 512x512 anyway, so nothing it uses is lost).
        width, height = image.size
        scale = math.sqrt((MAX_IMAGE_BYTES - 65536 - height) / _png_size_bound(width, height))
        image = image.resize((max(1, int(width * scale)), max(1, int(height * scale))))
    out = io.BytesIO()
    if decoded.format == "JPEG":
        image.save(out, format="JPEG", quality=95)
        return VertexImage("image/jpeg", data=out.getvalue())
    image.save(out, format="PNG")
    return VertexImage("image/png", data=out.getvalue())


def _plain(decoded: Decoded, data: bytes) -> bool:
    """The original's pixels are the decoded image (a 16-bit RGB PNG opens as RGB in Pillow: its
    header's bit depth tells it apart)."""
    return decoded.plain and (decoded.format != "PNG" or data[24:25] == b"\x08")


def _png_size_bound(width: int, height: int) -> int:
    """An upper bound on the size of an 8-bit RGB image as PNG (no compression at all: the
    filter byte per row, zlib's stored-block and the chunks' overheads)."""
    raw = height * (width * 3 + 1)
    return int(raw * 1.001) + 4096


def _as_gcs_uri(item: ImageItem, reader) -> VertexImage | None:
    """The object as a gcsUri if its listed type and size are accepted and its first and last
    bytes show a complete, plain (upright 8-bit RGB, one frame) JPEG or PNG of that type; None
    when it must be read and checked in full. A look costs one or two small range reads."""
    from PIL import Image

    content_type = (item.content_type or "").split(";")[0].strip().lower()
    size = item.size
    if content_type not in MIME_TYPES.values() or not size or size > MAX_IMAGE_BYTES:
        return None
    if size <= PROBE_BYTES:
        return None  # as cheap to read it all and check it fully (then `_takes_as_stored`)
    try:
        head = reader.read_range(item.locator, 0, PROBE_BYTES - 1)
        tail = reader.read_range(item.locator, size - 16, size - 1)
        image = Image.open(io.BytesIO(head))
        width, height = image.size
        if image.format == "JPEG":
            orientation = image.getexif().get(0x0112, 1)
            complete = tail.rstrip(b"\0").endswith(b"\xff\xd9")
        elif image.format == "PNG":
            # (an eXIf chunk after the pixel data is not seen here)
            exif = Image.Exif()
            if image.info.get("exif"):
                exif.load(image.info["exif"])
            orientation = exif.get(0x0112, 1)
            complete = tail.endswith(b"IEND\xaeB`\x82") and head[24:25] == b"\x08"
        else:
            return None
    except Exception:  # unreadable, not an image, a cut header: the full read says why
        return None
    plain = (
        image.mode == "RGB"
        and getattr(image, "n_frames", 1) == 1
        and orientation in (None, 1)
        and width * height <= MAX_PIXELS
    )
    if not (complete and plain and MIME_TYPES[image.format] == content_type):
        return None
    return VertexImage(content_type, gcs_uri=item.locator)


def _takes_as_stored(item: ImageItem, decoded: Decoded, data: bytes) -> bool:
    """A gs:// object read and decoded: Vertex may read it itself (as its listed type)."""
    content_type = (item.content_type or "").split(";")[0].strip().lower()
    return (
        decoded.format in MIME_TYPES
        and MIME_TYPES[decoded.format] == content_type
        and _plain(decoded, data)
        and len(data) <= MAX_IMAGE_BYTES
    )


def _reason(err) -> str:
    """The service's message, without the request's URL (it names the project)."""
    message = str(getattr(err, "message", "") or err)
    message = re.sub(r"^(POST|GET) \S+: ", "", message)
    return re.sub(r"\S*projects/[^\s:]+(:\w+)?", "…", message)


def _default_credentials():
    """Application Default Credentials and their project, or one clear line saying how."""
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError

    try:
        # Scoped as the client would scope its own: credentials passed in are used as they are.
        return google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
    except DefaultCredentialsError:
        raise ConfigError("no Google credentials for Vertex AI", hint=CREDENTIALS_HINT) from None
