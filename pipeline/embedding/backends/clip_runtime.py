"""What runs a CLIP model: eager PyTorch (open_clip as it is: on CUDA, or where no compiled runtime
is installed) or the towers exported to ONNX (`clip_export`) on OpenVINO or ONNX Runtime, which
load in a second without torch and, on many CPUs, do the same fp32 arithmetic faster.

Both give the backend one interface: `prepare(image)` (in reader threads), `encode_images`,
`encode_texts` (unit float32 vectors), `device`, `dimension` and `concurrency` (batches worth
running at once)."""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import queue
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.embedding.backends import clip_models
from pipeline.embedding.backends.clip_export import IMAGE_FILE, TEXT_FILE
from pipeline.embedding.backends.clip_preprocess import ImageTransform
from pipeline.errors import ConfigError, UsageError, first_line
from pipeline.progress import step

COMPILED = {"openvino": "openvino", "onnx": "onnxruntime"}  # runtime -> the module it needs
INSTALL_HINT = "pip install 'imgvec[clip]' (it includes openvino and onnxruntime)"


def resolve_runtime(runtime: str, device: str, precision: str) -> str:
    """The runtime that runs. auto: torch on CUDA; on the CPU OpenVINO when it is installed,
    else ONNX Runtime, else torch. bf16 is OpenVINO's (the space is its vectors)."""
    installed = [name for name, module in COMPILED.items() if _installed(module)]
    if runtime == "auto":
        if device == "cuda" or (device == "auto" and _nvidia_gpu_present()):
            runtime = "torch" if precision == "fp32" else "openvino"
        elif precision == "bf16":
            runtime = "openvino"
        else:
            runtime = installed[0] if installed else "torch"
    if runtime in COMPILED:
        if device == "cuda":
            raise UsageError(
                f"--runtime {runtime} runs on the CPU", hint="--device cpu, or --runtime torch"
            )
        if runtime not in installed:
            raise ConfigError(f"--runtime {runtime} needs {COMPILED[runtime]}", hint=INSTALL_HINT)
    if precision == "bf16" and runtime != "openvino":
        raise UsageError(
            f"--precision bf16 runs on OpenVINO, not --runtime {runtime}",
            hint="--runtime openvino (or auto) --device cpu, or --precision fp32",
        )
    return runtime


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _nvidia_gpu_present() -> bool:
    # Asking torch (torch.cuda.is_available) would import it: seconds, for every CPU-only run.
    gpus = Path("/proc/driver/nvidia/gpus")
    return gpus.is_dir() and any(gpus.iterdir())


def cpu_threads() -> int:
    """The cores this process may use (a container's CPU set, not the host's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


Tower = Callable[[np.ndarray], np.ndarray]


class CompiledClip:
    """The exported towers on a compiled runtime. Images go through in batches of one fixed
    size (the last one padded): CPU kernels may round differently for another batch shape, and
    an image's vector must not depend on which batch it landed in (sharded runs compare bytes)."""

    device = "cpu"

    def __init__(
        self, folder: Path, meta: dict, runtime: str, precision: str, batch: int, label: str
    ) -> None:
        self.folder, self.runtime, self.precision, self.batch = folder, runtime, precision, batch
        self.label = label  # e.g. "CLIP ViT-B-32 (laion2b_s34b_b79k)", for the step lines
        self.dimension = int(meta["dimension"])
        self.transform = ImageTransform.from_config(meta["image_transform"])
        self._uses_open_clip_tokenizer = meta["tokenizer"] != "numpy"
        self.model_name = meta["model"]
        self._towers: dict[str, tuple[Tower, int]] = {}
        self._towers_lock = threading.Lock()
        self._tokenize: Callable[[list[str]], np.ndarray] | None = None

    @property
    def concurrency(self) -> int:
        """Batches worth running at once (OpenVINO's streams): the image tower's, loaded to tell."""
        return self._tower(IMAGE_FILE, self.batch)[1]

    def prepare(self, image) -> np.ndarray:
        return self.transform(image)

    def encode_images(self, sources: list[np.ndarray]) -> np.ndarray:
        tower, _ = self._tower(IMAGE_FILE, self.batch)
        pixels = np.stack(sources).astype(np.float32, copy=False)
        return np.concatenate(
            [
                tower(_padded(pixels[start : start + self.batch], self.batch))
                for start in range(0, len(pixels), self.batch)
            ]
        )[: len(pixels)]

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        tower, _ = self._tower(TEXT_FILE, None)
        if self._tokenize is None:
            self._tokenize = self._tokenizer()
        return tower(self._tokenize(texts))

    def _tower(self, file: str, batch: int | None) -> tuple[Tower, int]:
        # Each tower loaded when first used (~0.6 s each): an embed run never needs the text
        # tower, a text search never the image tower.
        with self._towers_lock:
            if file not in self._towers:
                tower = "image tower" if file == IMAGE_FILE else "text tower"
                with step(f"loading {self.label} {tower} on {self.runtime} ({self.precision})"):
                    self._towers[file] = self._load_tower(file, batch)
            return self._towers[file]

    def _tokenizer(self) -> Callable[[list[str]], np.ndarray]:
        if not self._uses_open_clip_tokenizer:
            from pipeline.embedding.backends.clip_tokenizer import numpy_tokenizer

            numpy_tokens = numpy_tokenizer(self.model_name)
            if numpy_tokens is not None:
                return numpy_tokens
        import open_clip  # a tokenizer the numpy port does not reproduce: torch's is needed

        tokenizer = open_clip.get_tokenizer(self.model_name)
        return lambda texts: tokenizer(texts).numpy()

    def _load_tower(self, file: str, batch: int | None) -> tuple[Tower, int]:
        path = self.folder / file
        if self.runtime == "openvino":
            return _openvino_tower(path, batch, self.precision)
        return _onnx_tower(path), 1


def _padded(pixels: np.ndarray, batch: int) -> np.ndarray:
    if len(pixels) == batch:
        return pixels
    padding = np.zeros((batch - len(pixels), *pixels.shape[1:]), dtype=pixels.dtype)
    return np.concatenate([pixels, padding])


# OpenVINO's Python binding deadlocked two threads that first reached its numpy conversion at
# once (a C++ static initialised by one thread while the other held the GIL: a sharded run hung
# for good). Every call into the binding takes this lock; only the wait for a result runs freely.
_OPENVINO_BINDING = threading.Lock()


def _openvino_tower(path: Path, batch: int | None, precision: str) -> tuple[Tower, int]:
    """(the tower, how many batches it runs at once). A fixed batch compiles for throughput:
    one stream per group of cores, each with its own request, fed by concurrent batches."""
    import openvino as ov

    core = ov.Core()
    model = core.read_model(str(path))
    if batch is not None:
        shape = model.input(0).get_partial_shape()
        shape[0] = batch
        model.reshape(shape)
    config = {
        "PERFORMANCE_HINT": "THROUGHPUT" if batch is not None else "LATENCY",
        # OpenVINO runs bf16 by default on CPUs that have it: fp32 must be asked for, or its
        # vectors would not be eager torch's space.
        "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
    }
    compiled = core.compile_model(model, "CPU", config)
    requests = int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
    idle: queue.Queue = queue.Queue()
    for _ in range(requests):
        idle.put(compiled.create_infer_request())

    def run(inputs: np.ndarray) -> np.ndarray:
        request = idle.get()  # one request per concurrent batch: a request is not thread-safe
        try:
            with _OPENVINO_BINDING:
                request.start_async({0: inputs})  # copies the inputs into the request
            request.wait()  # the inference, without the GIL: the batches run in parallel
            with _OPENVINO_BINDING:
                return request.get_output_tensor(0).data.copy()
        finally:
            idle.put(request)

    return run, requests


def _onnx_tower(path: Path) -> Tower:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = cpu_threads()
    options.log_severity_level = 3  # errors only: its warnings about unused initialisers are noise
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def run(inputs: np.ndarray) -> np.ndarray:
        return session.run(None, {name: inputs})[0]

    return run


class EagerClip:
    """open_clip in eager PyTorch, as open_clip runs it (fp16 on CUDA)."""

    concurrency = 1

    def __init__(self, model: str, weights: str | None, device: str, seed: int) -> None:
        if weights is not None and not Path(weights).is_file():
            clip_models.check_weights_available(model, weights)  # offline: fail before torch
        try:
            import open_clip
            import torch
        except ImportError:
            raise ConfigError(
                "the clip backend needs open_clip and torch", hint="pip install 'imgvec[clip]'"
            ) from None
        self.torch = torch
        self.device = device
        if device == "auto":
            self.device = "cuda" if torch.cuda.is_available() else "cpu"
        elif device.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError(f"--device {device}: no CUDA GPU here", hint="--device cpu (or auto)")
        if weights is None:
            torch.manual_seed(seed)  # random weights, the same on every run and machine
        precision = "fp16" if self.device.startswith("cuda") else "fp32"
        try:
            with _quiet_random_weights():
                self.model, _, self.preprocess = open_clip.create_model_and_transforms(
                    model, pretrained=weights, device=self.device, precision=precision
                )
        except Exception as err:  # hub download failures come as many kinds
            # A local file that is no checkpoint of the model: torch's message is a bare KeyError
            # or advises weights_only=False, which runs whatever code the file holds.
            if weights and os.path.isfile(weights) and not isinstance(err, OSError):
                problem = f"{model} from {weights}: not a checkpoint of it torch can read"
                problem += f" ({type(err).__name__})"
            else:
                problem = f"{model}/{weights or 'none'}: {first_line(err)}"
            raise ConfigError(
                f"cannot load CLIP weights {problem}",
                hint="use " + clip_models.WAYS_ON,
            ) from None
        self.model.eval()
        self.tokenizer = open_clip.get_tokenizer(model)
        self.dimension = int(self.encode_texts(["x"]).shape[-1])

    def prepare(self, image):
        return self.preprocess(image)  # the model's own resize, centre crop, normalise

    def encode_images(self, sources: list) -> np.ndarray:
        batch = self.torch.stack(sources).to(self.device)
        if self.device.startswith("cuda"):
            batch = batch.half()
        with self.torch.no_grad():
            return self._unit(self.model.encode_image(batch))

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        with self.torch.no_grad():
            return self._unit(self.model.encode_text(self.tokenizer(texts).to(self.device)))

    def _unit(self, features: Any) -> np.ndarray:
        return self.torch.nn.functional.normalize(features.float(), dim=-1).cpu().numpy()


@contextlib.contextmanager
def _quiet_random_weights():
    """open_clip warns on the root logger that random weights are random: asked for with
    --pretrained none, that is no news, and it broke the step line on a terminal."""

    def drop(record: logging.LogRecord) -> bool:
        return "No pretrained weights loaded" not in record.getMessage()

    root = logging.getLogger()
    root.addFilter(drop)
    try:
        yield
    finally:
        root.removeFilter(drop)
