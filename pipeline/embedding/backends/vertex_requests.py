"""What a Vertex AI request carries for an image: its bytes (base64) or, for a Cloud Storage object
the service can read as stored, its `gcsUri`; and which of the two an object gets (a look at its
first and last bytes decides, so a gs:// object that is not a plain JPEG or PNG is read, checked
and re-encoded instead of costing a refused request). Also where requests go (a client per
region), with whose credentials, and what a refusal says."""

from __future__ import annotations

import base64
import io
import math
import re
from dataclasses import dataclass
from typing import Any

from pipeline.embedding.backends.base import ImageItem
from pipeline.embedding.images import MAX_PIXELS, Decoded
from pipeline.errors import ConfigError

MAX_IMAGE_BYTES = 20 * 1024 * 1024  # the service's limit; it resizes to 512x512 anyway
#: the file formats sent as they are, and their `mimeType` (the only two the REST API names)
MIME_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png"}
#: how much of a gs:// object is read to see whether it can go as a gcsUri
PROBE_BYTES = 128 * 1024


@dataclass(frozen=True)
class VertexImage:
    """What one request carries for an image: bytes, or a Cloud Storage URI; and its mimeType."""

    mime_type: str
    data: bytes | None = None
    gcs_uri: str | None = None

    def instance(self) -> dict:
        if self.gcs_uri is not None:
            return {"gcsUri": self.gcs_uri, "mimeType": self.mime_type}
        encoded = base64.b64encode(self.data or b"").decode("ascii")
        return {"bytesBase64Encoded": encoded, "mimeType": self.mime_type}


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


def as_gcs_uri(item: ImageItem, reader) -> VertexImage | None:
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


def takes_as_stored(item: ImageItem, decoded: Decoded, data: bytes) -> bool:
    """A gs:// object read and decoded: Vertex may read it itself (as its listed type)."""
    content_type = (item.content_type or "").split(";")[0].strip().lower()
    return (
        decoded.format in MIME_TYPES
        and MIME_TYPES[decoded.format] == content_type
        and _plain(decoded, data)
        and len(data) <= MAX_IMAGE_BYTES
    )


def refusal_reason(err) -> str:
    """The service's message, without the request's URL (it names the project)."""
    message = str(getattr(err, "message", "") or err)
    message = re.sub(r"^(POST|GET) \S+: ", "", message)
    return re.sub(r"\S*projects/[^\s:]+(:\w+)?", "…", message)


def prediction_clients(
    locations: list[str], api_endpoint: str | None, credentials, transport: str, connections: int
) -> list[Any]:
    """A gapic PredictionServiceClient per region, each to its regional endpoint (or all to
    `api_endpoint`, e.g. a local stand-in, which takes no credentials), each keeping
    `connections` connections open (the requests in flight)."""
    from google.cloud.aiplatform_v1.services.prediction_service import PredictionServiceClient

    if (api_endpoint or "").startswith("http://"):
        from google.auth.credentials import AnonymousCredentials

        credentials = credentials or AnonymousCredentials()
    clients = [
        PredictionServiceClient(
            credentials=credentials,
            transport=transport,
            client_options={
                "api_endpoint": api_endpoint or f"{location}-aiplatform.googleapis.com"
            },
        )
        for location in locations
    ]
    for client in clients:
        _keep_connections(client.transport, connections)
    return clients


def _keep_connections(transport, connections: int) -> None:
    """requests keeps 10 connections a host: with more requests in flight, each of the others
    opens a new connection (a TLS handshake) and drops it after ("Connection pool is full,
    discarding connection"). gRPC needs nothing: one channel carries every request."""
    from requests.adapters import HTTPAdapter

    session = getattr(transport, "_session", None)  # the REST transport's AuthorizedSession
    if session is None:
        return
    for prefix, adapter in list(session.adapters.items()):
        if type(adapter) is HTTPAdapter:  # (google-auth's mutual-TLS adapter is left as it is)
            session.mount(
                prefix, HTTPAdapter(pool_maxsize=connections, max_retries=adapter.max_retries)
            )


def dropped_connection_errors() -> tuple[type[Exception], ...]:
    """What a connection closed or stalled mid-request raises on the REST transport: `requests`'
    own classes, which are not the builtin ConnectionError (on gRPC the same arrives as
    ServiceUnavailable). Unlisted, one connection a proxy closed stopped the whole embed run."""
    try:
        from requests import exceptions as http
    except ImportError:  # (gRPC only: requests is google-auth's optional transport)
        return ()
    return (http.ConnectionError, http.Timeout, http.ChunkedEncodingError)


def never_connected(err: BaseException) -> bool:
    """A request that found no server at all (connection refused, a name that does not resolve,
    a connect timeout): the endpoint is wrong or down, not a connection dropped on the way. Not
    retried for the deadline: the command fails at once as temporarily unavailable (exit 75)."""
    try:
        from requests import exceptions as http
        from urllib3.exceptions import MaxRetryError, NewConnectionError
    except ImportError:
        return False
    if isinstance(err, http.ConnectTimeout):
        return True
    cause = err.args[0] if isinstance(err, http.ConnectionError) and err.args else None
    return isinstance(cause, MaxRetryError) and isinstance(cause.reason, NewConnectionError)


CREDENTIALS_HINT = (
    "run `gcloud auth application-default login`, or set GOOGLE_APPLICATION_CREDENTIALS to a "
    "service account key file; name the project with --project (or GOOGLE_CLOUD_PROJECT)"
)


def default_credentials():
    """Application Default Credentials and their project, or one clear line saying how."""
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError

    try:
        # Scoped as the client would scope its own: credentials passed in are used as they are.
        return google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
    except DefaultCredentialsError:
        raise ConfigError("no Google credentials for Vertex AI", hint=CREDENTIALS_HINT) from None
