"""Running the networks: ONNX Runtime by default, PyTorch when asked (``backend="torch"``).

    net = OnnxNetwork(path, device="auto")          # path: the .onnx shipped beside the .pt
    outputs = net(x)                                 # {output name: float32 numpy array}

Both backends take a numpy input and give the same named numpy outputs, so everything before
and after the network call (normalisation, decoding, measuring) is the same numpy/OpenCV code
whichever runs. Importing this module imports neither onnxruntime nor torch.

Devices: ``auto`` takes ONNX Runtime's CUDA execution provider when it is there (the
``onnxruntime-gpu`` wheel on a machine with a CUDA GPU), else the CPU; ``cuda`` that is not
available is an error with the reason, never a silent fall-back; ``mps`` (Apple GPU) exists only
for the torch backend. CPU threads follow ``device.inference_threads()`` in both backends, so
every front end on a machine gives the same digits.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

BACKENDS = ("onnx", "torch")
DEFAULT_BACKEND = "onnx"
METADATA_KEY = "mskmorph"  # the .onnx file's metadata: JSON with the network's config and its source
TORCH_EXTRA = "pip install 'mskmorphometry[torch]'"


class BackendError(ValueError):
    """A backend or device that cannot run here; the message says what to install or choose."""


def check_backend(backend: Optional[str]) -> str:
    name = (backend or DEFAULT_BACKEND).strip().lower()
    if name not in BACKENDS:
        raise BackendError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    return name


def require_torch(what: str = "this"):
    """``import torch``, or a one-line BackendError saying how to get it."""
    try:
        import torch
    except ImportError:
        raise BackendError(f"{what} needs PyTorch, which is not installed here: {TORCH_EXTRA} "
                           "(measuring needs only ONNX Runtime: --backend onnx)") from None
    return torch


def require_onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        raise BackendError("the onnx backend needs ONNX Runtime, which is not installed here: "
                           "pip install onnxruntime (or onnxruntime-gpu for an NVIDIA GPU)") from None
    return onnxruntime


def onnx_file(weights) -> Path:
    """The .onnx for a weights path: the path itself when it is an .onnx, else the .onnx of the
    same name beside the .pt (that is where ``mskmorph export onnx`` writes it)."""
    p = Path(weights)
    q = p if p.suffix == ".onnx" else p.with_suffix(".onnx")
    if not q.is_file():
        hint = (f"export it from {p.name} with 'mskmorph export onnx --weights {p}' (needs the export environment, "
                "see the README) or use --backend torch") if p.suffix != ".onnx" else "check the path"
        raise FileNotFoundError(f"no ONNX network at {q}: {hint}")
    return q


def onnx_providers(preference: str = "auto") -> tuple[list[str], str]:
    """(execution providers for the session, the device name reported)."""
    ort = require_onnxruntime()
    pref = (preference or "auto").strip().lower()
    from .device import PREFERENCES

    if pref not in PREFERENCES:
        raise BackendError(f"unknown device {preference!r}; choose one of {', '.join(PREFERENCES)}")
    available = ort.get_available_providers()
    has_cuda = "CUDAExecutionProvider" in available
    if pref == "mps":
        raise BackendError("device 'mps' (Apple GPU) runs only with --backend torch; use --device cpu or auto")
    if pref == "cuda" and not has_cuda:
        raise BackendError("device 'cuda' was requested but this ONNX Runtime has no CUDA execution provider "
                           "(install onnxruntime-gpu instead of onnxruntime); use --device cpu or auto")
    if pref in ("cuda", "auto") and has_cuda:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"], "cuda"
    return ["CPUExecutionProvider"], "cpu"


class OnnxNetwork:
    """One ONNX Runtime session; ``metadata`` is the JSON the exporter stored in the file."""

    backend = "onnx"

    def __init__(self, path, device: str = "auto", threads: Optional[int] = None):
        from .device import inference_threads

        ort = require_onnxruntime()
        self.path = Path(path)
        providers, self.device = onnx_providers(device)
        self.threads = int(threads or inference_threads())
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads  # the fixed thread rule: same digits in every front end
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise BackendError(f"could not load the ONNX network {self.path}: {str(exc).splitlines()[0]}") from None
        if self.device == "cuda" and "CUDAExecutionProvider" not in self.session.get_providers():
            # onnxruntime-gpu lists its CUDA provider even where no GPU or driver is there; the
            # session then runs on the CPU, and says so
            if (device or "auto").strip().lower() == "cuda":
                raise BackendError("device 'cuda' was requested but ONNX Runtime's CUDA execution provider could "
                                   "not start here (no NVIDIA GPU, driver or CUDA libraries); use --device cpu or auto")
            self.device = "cpu"
        meta = self.session.get_modelmeta().custom_metadata_map.get(METADATA_KEY, "{}")
        self.metadata = json.loads(meta)
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]

    @property
    def config(self) -> dict:
        return dict(self.metadata.get("config", {}))

    def __call__(self, x: np.ndarray) -> dict[str, np.ndarray]:
        values = self.session.run(None, {self.input_name: np.ascontiguousarray(x, dtype=np.float32)})
        return dict(zip(self.output_names, values))


class TorchNetwork:
    """A torch module called like an ``OnnxNetwork``: numpy in, the named outputs as numpy out."""

    backend = "torch"

    def __init__(self, model, outputs: Sequence[str], device: str = "auto", threads: Optional[int] = None,
                 config: Optional[dict] = None):
        from .device import choose_device, inference_threads

        self.torch = require_torch("the torch backend")
        self.device_obj = choose_device(device)
        self.device = str(self.device_obj)
        self.threads = int(threads or inference_threads())
        self.model = model.to(self.device_obj).eval()
        self.output_names = list(outputs)
        self._config = dict(config or {})

    @property
    def config(self) -> dict:
        return dict(self._config)

    def __call__(self, x: np.ndarray) -> dict[str, np.ndarray]:
        from .device import fixed_threads

        torch = self.torch
        with torch.no_grad(), fixed_threads(self.threads):
            out = self.model(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(self.device_obj))
        return {name: out[name].float().cpu().numpy() for name in self.output_names}


def onnx_network(weights, weights_format: str, device: str, threads) -> "OnnxNetwork":
    """The .onnx beside ``weights`` in ONNX Runtime, refused (``WeightsError``) unless its stored
    config has format ``weights_format``."""
    from .weights import WeightsError

    network = OnnxNetwork(onnx_file(weights), device=device, threads=threads)
    if network.config.get("format") != weights_format:
        raise WeightsError(f"{network.path} has format {network.config.get('format')!r}; expected {weights_format!r}")
    return network


def torch_network(weights, weights_format: str, build, outputs: Sequence[str], device: str, threads,
                  what: str = "network") -> "TorchNetwork":
    """A .pt weights file (``state_dict`` and ``config`` with format ``weights_format``) loaded into
    ``build(config)`` and run by PyTorch; ``what`` names the network in the refusals."""
    from .weights import WeightsError, load_state

    require_torch("the torch backend")
    saved = load_state(weights, map_location="cpu")
    if not isinstance(saved, dict) or "state_dict" not in saved:
        raise WeightsError(f"{weights} is not a {what} weights file (no 'state_dict')")
    config = dict(saved.get("config", {}))
    if config.get("format") != weights_format:
        raise WeightsError(f"{weights} has format {config.get('format')!r}; expected {weights_format!r}")
    model = build(config)
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in saved["state_dict"].items()})
    return TorchNetwork(model, outputs, device=device, threads=threads, config=config)


def load_network(weights, weights_format: str, build, outputs: Sequence[str], device: str, threads, backend: str,
                 what: str = "network"):
    """The network of ``weights`` on ``backend``: the .onnx beside it in ONNX Runtime
    (``onnx_network``), or the .pt itself in PyTorch (``torch_network``, ``build(config)``)."""
    if check_backend(backend) == "torch":
        return torch_network(weights, weights_format, build, outputs, device, threads, what)
    return onnx_network(weights, weights_format, device, threads)


def shipped(weights) -> bool:
    """Whether a network's weights are there: the .pt, or the .onnx beside it."""
    from pathlib import Path

    p = Path(weights)
    return p.is_file() or p.with_suffix(".onnx").is_file()


class PackagedNetwork:
    """A network shipped as a .pt with its .onnx beside it, loaded for one backend: ``network``
    (called on a batch, named outputs), its ``config``, ``weights_path`` and the file in use
    (``path``: the .onnx on ONNX Runtime)."""

    def __init__(self, weights, weights_format: str, build, outputs: Sequence[str], device: str, threads,
                 backend: str, what: str):
        from pathlib import Path

        self.backend = check_backend(backend)
        self.weights_path = Path(weights)
        self.network = load_network(self.weights_path, weights_format, build, outputs, device, threads, self.backend,
                                    what)
        self.config = self.network.config

    @property
    def path(self):
        return getattr(self.network, "path", self.weights_path)


def sha256(path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
