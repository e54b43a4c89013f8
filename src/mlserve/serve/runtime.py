"""ONNX Runtime sessions: load a model, describe its inputs and outputs, run it, warm it up.

The execution providers follow the same capability checks as ``mlserve optimize`` and ``benchmark``:
a provider is used only when ``onnxruntime.get_available_providers()`` lists it; asking for one that is
not there is a :class:`~mlserve.errors.CapabilityUnavailableError` (exit 7), never a silent CPU run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from mlserve._deps import require
from mlserve.errors import CapabilityUnavailableError, UsageError
from mlserve.serve.tensors import ONNX_TO_OIP, TensorSpec

PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}
DEVICE_CHOICES = ("auto", "cpu", "cuda", "tensorrt")


def choose_providers(device: str) -> list[str]:
    """Providers for ``device``; ``auto`` takes CUDA where onnxruntime has it, else the CPU."""
    ort = require("onnxruntime", purpose="serving ONNX models")
    available = set(ort.get_available_providers())
    if device == "auto":
        return PROVIDERS["cuda"] if "CUDAExecutionProvider" in available else PROVIDERS["cpu"]
    wanted = PROVIDERS[device]
    if wanted[0] not in available:
        raise CapabilityUnavailableError(
            f"--device {device}: onnxruntime has no {wanted[0]} here (available: {', '.join(sorted(available))})",
            hint="it needs an NVIDIA GPU and onnxruntime-gpu (pip install 'mlserve[tensorrt]'); or use --device cpu")
    return wanted


def _dims(shape: Sequence[object]) -> tuple[int, ...]:
    return tuple(d if isinstance(d, int) and d >= 0 else -1 for d in shape)


class OnnxModel:
    """One ONNX Runtime session. ``run`` is thread-safe (ONNX Runtime allows concurrent runs)."""

    def __init__(self, path: Path, *, threads: int = 1, providers: list[str] | None = None) -> None:
        ort = require("onnxruntime", purpose="serving ONNX models")
        opts = ort.SessionOptions()
        if threads > 0:
            opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = 3
        if threads > 1:  # idle intra-op threads would otherwise spin and burn CPU between requests
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(path), sess_options=opts, providers=providers or PROVIDERS["cpu"])
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own untyped errors for a bad file
            raise UsageError(f"{path}: ONNX Runtime cannot load it: {str(exc).splitlines()[0][:300]}") from exc
        self.path = path
        self.providers = list(self.session.get_providers())
        self.inputs = [self._spec(i, "input") for i in self.session.get_inputs()]
        self.outputs = [self._spec(o, "output") for o in self.session.get_outputs()]
        self.input_by_name = {s.name: s for s in self.inputs}
        self.output_names = [s.name for s in self.outputs]
        # Requests can share a run only when every input and output has a dynamic first dimension.
        self.batchable = all(s.batch_dynamic for s in self.inputs) and all(s.batch_dynamic for s in self.outputs)

    def _spec(self, arg: object, what: str) -> TensorSpec:
        kind = getattr(arg, "type")
        if kind not in ONNX_TO_OIP:
            raise UsageError(f"{self_name(arg)}: {what} type {kind} is not servable over the Open Inference Protocol")
        return TensorSpec(name=getattr(arg, "name"), datatype=ONNX_TO_OIP[kind], shape=_dims(getattr(arg, "shape")))

    def run(self, feeds: dict[str, np.ndarray], output_names: list[str] | None = None) -> list[np.ndarray]:
        return self.session.run(output_names or self.output_names, feeds)

    def example_feeds(self, batch: int = 1) -> dict[str, np.ndarray]:
        """Zeros of the right dtype, dynamic dimensions set to ``batch`` (first) or 1 (others)."""
        feeds = {}
        for spec in self.inputs:
            shape = tuple((batch if i == 0 else 1) if d == -1 else d for i, d in enumerate(spec.shape))
            if spec.datatype == "BYTES":
                feeds[spec.name] = np.full(shape, "", dtype=np.object_)
            else:
                feeds[spec.name] = np.zeros(shape, dtype=spec.dtype)
        return feeds

    def warm_up(self) -> None:
        """One inference on example inputs; its outputs must have the promised batch dimension."""
        outs = self.run(self.example_feeds(1))
        if len(outs) != len(self.outputs):
            raise UsageError(f"{self.path}: warm-up returned {len(outs)} outputs, the graph declares {len(self.outputs)}")

    def close(self) -> None:
        self.session = None  # type: ignore[assignment]


def self_name(arg: object) -> str:
    return str(getattr(arg, "name", "?"))
