"""A local stand-in for Vertex AI's `multimodalembedding@001` predict endpoint (REST), reached by
the real PredictionServiceClient. Deterministic vectors; injectable latency, per-minute quota,
429/503 rates, 429 bursts and fixed per-image failures.

It refuses (HTTP 400) what the service's documentation excludes: a `mimeType` other than
image/jpeg or image/png; bytes that are not a complete image of that type (JPEG or PNG), or over
20 MB once transcoded to PNG; a `gcsUri` object (read from the GCS emulator named by
STORAGE_EMULATOR_HOST) over 20 MB as stored, of a type other than BMP, GIF, JPEG or PNG, or that is
not a complete image. Every image it accepts is kept in `received`, decoded, for the tests."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import random
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

MAX_BYTES = 20 * 1024 * 1024
MIME_TYPES = {"image/jpeg": "JPEG", "image/png": "PNG"}
DROPPED = 0  # handle()'s status for a request whose connection is closed unanswered
GCS_FORMATS = {"JPEG", "PNG", "GIF", "BMP"}

_PATH = re.compile(
    r"^/v1/projects/[^/]+/locations/[^/]+/publishers/google/models/multimodalembedding(@|%40)001:predict$"
)


def expected_vector(kind: str, payload: bytes | str, dimension: int) -> np.ndarray:
    """The vector the fake returns (before the client's normalisation)."""
    data = payload.encode() if isinstance(payload, str) else payload
    seed = int.from_bytes(hashlib.sha256(kind.encode() + b"\0" + data).digest()[:8], "little")
    return np.random.default_rng(seed).standard_normal(dimension).astype(np.float32)


@dataclass
class FakeVertexConfig:
    latency: tuple[float, float] = (0.0, 0.0)  # seconds, uniform in [lo, hi]
    quota_per_minute: int | None = None
    rate_429: float = 0.0
    rate_503: float = 0.0
    rate_reset: float = 0.0  # the connection closed with no answer (a proxy or NAT dropping it)
    burst_429_until: float = 0.0  # time.monotonic() before which every request gets 429
    failures: dict[str, tuple[int, str]] = field(
        default_factory=dict
    )  # gcsUri -> (status, message)
    seed: int = 1234


class FakeVertex:
    def __init__(self, config: FakeVertexConfig | None = None) -> None:
        self.config = config or FakeVertexConfig()
        self.stats: Counter = Counter()
        self.seen_uris: list[str] = []
        self.received: list[Received] = []  # each image accepted
        self.success_times: list[float] = []
        self._window: deque[float] = deque()
        self._lock = threading.Lock()
        self._random = random.Random(self.config.seed)
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # else every call pays ~40 ms of delayed ACK

            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                status, payload = fake.handle(self.path, body)
                if status == DROPPED:
                    self.close_connection = True  # closed, nothing answered
                    return
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        class Server(ThreadingHTTPServer):
            def handle_error(self, request, client_address):
                pass  # a client SIGKILLed mid-request (the crash trials) is not the fake's problem

        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # -- the service ------------------------------------------------------------------------------

    def handle(self, path: str, body: bytes) -> tuple[int, dict]:
        if not _PATH.match(path.split("?", 1)[0]):
            return 404, _error(404, f"no such method {path}", "NOT_FOUND")
        cfg = self.config
        with self._lock:
            self.stats["requests"] += 1
            now = time.monotonic()
            while self._window and now - self._window[0] > 60:
                self._window.popleft()
            if now < cfg.burst_429_until:
                return self._refuse(429)
            if cfg.quota_per_minute is not None and len(self._window) >= cfg.quota_per_minute:
                return self._refuse(429)
            roll = self._random.random()
            if roll < cfg.rate_429:
                return self._refuse(429)
            if roll < cfg.rate_429 + cfg.rate_503:
                return self._refuse(503)
            if roll < cfg.rate_429 + cfg.rate_503 + cfg.rate_reset:
                self.stats["reset"] += 1
                return DROPPED, {}
            self._window.append(now)
            latency = self._random.uniform(*cfg.latency)
        if latency:
            time.sleep(latency)
        request = json.loads(body)
        dimension = int(request.get("parameters", {}).get("dimension", 1408))  # arrives as a float
        predictions = []
        for instance in request["instances"]:
            if "text" in instance:
                predictions.append(
                    {"textEmbedding": expected_vector("text", instance["text"], dimension).tolist()}
                )
                continue
            image = instance["image"]
            mime = image.get("mimeType")
            if mime is not None and mime not in MIME_TYPES:
                return _invalid(f"Unsupported mimeType {mime}: use image/jpeg or image/png.")
            if "gcsUri" in image:
                uri = image["gcsUri"]
                with self._lock:
                    self.seen_uris.append(uri)
                if uri in cfg.failures:
                    code, message = cfg.failures[uri]
                    return code, _error(
                        code, message, "INVALID_ARGUMENT" if code == 400 else "NOT_FOUND"
                    )
                refused, decoded = _check_gcs_object(uri, mime)
                if refused:
                    return refused
                vector = expected_vector("gcs", uri, dimension)
                received = Received("gcs", uri, mime, decoded)
            else:
                data = base64.b64decode(image["bytesBase64Encoded"])
                decoded = _decode(data, {MIME_TYPES[mime]} if mime else set(MIME_TYPES.values()))
                if decoded is None:
                    return _invalid("Unable to decode image: not a valid image of its mimeType.")
                if (
                    decoded.width * decoded.height * 3 > MAX_BYTES
                    and len(_png(decoded)) > MAX_BYTES
                ):
                    return _invalid("Image is larger than 20 MB once transcoded to PNG.")
                vector = expected_vector("bytes", data, dimension)
                received = Received("bytes", data, mime, decoded)
            with self._lock:
                self.received.append(received)
            predictions.append({"imageEmbedding": vector.tolist()})
        with self._lock:
            self.stats["ok"] += 1
            self.success_times.append(time.monotonic())
        return 200, {"predictions": predictions, "deployedModelId": ""}

    def _refuse(self, code: int) -> tuple[int, dict]:
        self.stats[str(code)] += 1
        if code == 429:
            return 429, _error(
                429,
                "Quota exceeded for aiplatform.googleapis.com/online_prediction_requests_per_base_model",
                "RESOURCE_EXHAUSTED",
            )
        return 503, _error(503, "The service is currently unavailable.", "UNAVAILABLE")


@dataclass
class Received:
    """An image the fake accepted: `payload` is the gcsUri or the bytes (`expected_vector`'s)."""

    kind: str  # "bytes" or "gcs"
    payload: bytes | str
    mime_type: str | None
    image: object  # PIL.Image, as decoded (no EXIF rotation applied), RGB

    def vector(self, dimension: int) -> np.ndarray:
        return expected_vector(self.kind, self.payload, dimension)


def _decode(data: bytes, formats: set[str]):
    """The image in full (a cut file fails), RGB, if it is one of `formats`; else None."""
    from PIL import Image, ImageFile

    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        image = Image.open(io.BytesIO(data))
        if image.format not in formats:
            return None
        image.load()
        return image.convert("RGB")
    except Exception:
        return None


def _png(image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def _check_gcs_object(uri: str, mime: str | None):
    """(a refusal or None, the decoded image) for a gcsUri, read from the GCS emulator."""
    emulator = os.environ.get("STORAGE_EMULATOR_HOST")
    if not emulator:
        return None, None  # no store to look in: taken on trust
    bucket, _, name = uri.removeprefix("gs://").partition("/")
    base = f"{emulator.rstrip('/')}/storage/v1/b/{bucket}/o/{urllib.parse.quote(name, safe='')}"
    try:
        with urllib.request.urlopen(base, timeout=10) as response:
            metadata = json.load(response)
        with urllib.request.urlopen(base + "?alt=media", timeout=30) as response:
            data = response.read()
    except urllib.error.HTTPError as err:
        if err.code == 404:
            return (404, _error(404, f"Object {uri} not found.", "NOT_FOUND")), None
        raise
    if int(metadata.get("size", len(data))) > MAX_BYTES:
        return _invalid("The Cloud Storage image is larger than 20 MB."), None
    content_type = (metadata.get("contentType") or "").split(";")[0].strip()
    if content_type not in {"image/jpeg", "image/png", "image/gif", "image/bmp"}:
        return _invalid(f"Unsupported image type {content_type or 'none'}."), None
    decoded = _decode(data, {MIME_TYPES[mime]} if mime else GCS_FORMATS)
    if decoded is None:
        return _invalid("Unable to decode image."), None
    return None, decoded


def _invalid(message: str) -> tuple[int, dict]:
    return 400, _error(400, message, "INVALID_ARGUMENT")


def _error(code: int, message: str, status: str) -> dict:
    return {"error": {"code": code, "message": message, "status": status}}
