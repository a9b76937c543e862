"""A local stand-in for Vertex AI's `multimodalembedding@001` predict endpoint (REST), reached by
the real PredictionServiceClient. Deterministic vectors; injectable latency, per-minute quota,
429/503 rates, 429 bursts and fixed per-image failures."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import random
import re
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

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
            if "gcsUri" in image:
                uri = image["gcsUri"]
                with self._lock:
                    self.seen_uris.append(uri)
                if uri in cfg.failures:
                    code, message = cfg.failures[uri]
                    return code, _error(
                        code, message, "INVALID_ARGUMENT" if code == 400 else "NOT_FOUND"
                    )
                vector = expected_vector("gcs", uri, dimension)
            else:
                data = base64.b64decode(image["bytesBase64Encoded"])
                if not _decodes(data):
                    return 400, _error(400, "Unable to decode image", "INVALID_ARGUMENT")
                vector = expected_vector("bytes", data, dimension)
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


def _decodes(data: bytes) -> bool:
    from PIL import Image

    try:
        Image.open(io.BytesIO(data)).verify()
        return True
    except Exception:
        return False


def _error(code: int, message: str, status: str) -> dict:
    return {"error": {"code": code, "message": message, "status": status}}
