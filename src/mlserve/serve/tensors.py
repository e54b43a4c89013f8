"""Tensors of the Open Inference Protocol: datatypes, the model's input/output specs, decoding and checks.

Shared by the REST (JSON and binary) and gRPC front ends so both check a request the same way and
answer with the same messages. Every message names the field it is about.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlserve.serve.errors import BadRequest

# Open Inference Protocol datatype -> numpy dtype
OIP_TO_NUMPY: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_), "UINT8": np.dtype(np.uint8), "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32), "UINT64": np.dtype(np.uint64), "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16), "INT32": np.dtype(np.int32), "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16), "FP32": np.dtype(np.float32), "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(np.object_),
}

# ONNX Runtime's type strings -> Open Inference Protocol datatype
ONNX_TO_OIP: dict[str, str] = {
    "tensor(bool)": "BOOL", "tensor(uint8)": "UINT8", "tensor(uint16)": "UINT16", "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64", "tensor(int8)": "INT8", "tensor(int16)": "INT16", "tensor(int32)": "INT32",
    "tensor(int64)": "INT64", "tensor(float16)": "FP16", "tensor(float)": "FP32", "tensor(double)": "FP64",
    "tensor(string)": "BYTES",
}


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of a model: ``shape`` has -1 for every dynamic dimension."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    @property
    def dtype(self) -> np.dtype:
        return OIP_TO_NUMPY[self.datatype]

    @property
    def batch_dynamic(self) -> bool:
        return len(self.shape) > 0 and self.shape[0] == -1

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


def check_shape(spec: TensorSpec, shape: Any, field: str) -> tuple[int, ...]:
    """``shape`` as a tuple of ints, matching the model's rank and fixed dimensions."""
    if not isinstance(shape, (list, tuple)) or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
        raise BadRequest(f"{field}.shape must be a list of integers, got {shape!r:.80}")
    if any(d < 0 for d in shape):
        raise BadRequest(f"{field}.shape {list(shape)} has a negative dimension")
    if len(shape) != len(spec.shape):
        raise BadRequest(f"{field}.shape {list(shape)} has rank {len(shape)}; the model's input {spec.name!r} "
                         f"is {list(spec.shape)} (rank {len(spec.shape)})")
    for got, want in zip(shape, spec.shape):
        if want != -1 and got != want:
            raise BadRequest(f"{field}.shape {list(shape)} does not match the model's {list(spec.shape)} "
                             f"for input {spec.name!r} (-1 is any size)")
    return tuple(shape)


def check_datatype(spec: TensorSpec, datatype: Any, field: str) -> None:
    if datatype != spec.datatype:
        known = "" if datatype in OIP_TO_NUMPY else " (not an Open Inference Protocol datatype)"
        raise BadRequest(f"{field}.datatype is {datatype!r}{known}; the model's input {spec.name!r} is {spec.datatype}")


def element_count(shape: tuple[int, ...]) -> int:
    return math.prod(shape)


def from_json_data(spec: TensorSpec, shape: tuple[int, ...], data: Any, field: str) -> np.ndarray:
    """The JSON ``data`` (flat or nested, row-major) as an array of ``shape``."""
    if not isinstance(data, list):
        raise BadRequest(f"{field}.data must be a list, got {type(data).__name__}")
    count = element_count(shape)
    if spec.datatype == "BYTES":
        flat = _flatten(data, field)
        if len(flat) != count:
            raise BadRequest(f"{field}.data has {len(flat)} elements; shape {list(shape)} needs {count}")
        if not all(isinstance(x, str) for x in flat):
            raise BadRequest(f"{field}.data must hold strings for datatype BYTES")
        return np.array(flat, dtype=np.object_).reshape(shape)
    try:
        arr = np.array(data, dtype=spec.dtype)
    except (ValueError, TypeError, OverflowError) as exc:
        raise BadRequest(f"{field}.data cannot be read as {spec.datatype}: {_short(exc)}") from None
    if arr.size != count:
        raise BadRequest(f"{field}.data has {arr.size} elements; shape {list(shape)} needs {count}")
    if spec.datatype == "BOOL" and not all(isinstance(x, bool) for x in _flatten(data, field)):
        raise BadRequest(f"{field}.data must hold true/false for datatype BOOL")
    return arr.reshape(shape)


def from_raw(spec: TensorSpec, shape: tuple[int, ...], raw: bytes | memoryview, field: str) -> np.ndarray:
    """Little-endian row-major bytes (Triton's binary extension, gRPC raw contents) as an array."""
    count = element_count(shape)
    if spec.datatype == "BYTES":
        return np.array(_split_bytes(raw, count, field), dtype=np.object_).reshape(shape)
    want = count * spec.dtype.itemsize
    if len(raw) != want:
        raise BadRequest(f"{field} has {len(raw)} bytes; shape {list(shape)} of {spec.datatype} needs {want}")
    return np.frombuffer(raw, dtype=spec.dtype.newbyteorder("<")).reshape(shape)


def check_finite(spec: TensorSpec, arr: np.ndarray, field: str) -> None:
    if arr.dtype.kind == "f" and arr.size and not np.isfinite(arr).all():
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise BadRequest(f"{field} holds {bad} NaN or infinite value(s); the model accepts finite numbers only "
                         "(start the server with --allow-non-finite to pass them through)")


def to_raw(arr: np.ndarray) -> bytes:
    if arr.dtype == np.object_:
        parts = []
        for item in arr.reshape(-1):
            b = item if isinstance(item, bytes) else str(item).encode()
            parts.append(struct.pack("<I", len(b)))
            parts.append(b)
        return b"".join(parts)
    return np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes()


def to_json_data(arr: np.ndarray) -> Any:
    """What orjson (OPT_SERIALIZE_NUMPY) writes as the flat ``data`` list."""
    if arr.dtype == np.object_:
        return [x.decode(errors="replace") if isinstance(x, bytes) else str(x) for x in arr.reshape(-1)]
    flat = arr.reshape(-1)
    return flat if flat.flags.c_contiguous else np.ascontiguousarray(flat)


def _flatten(data: list, field: str) -> list:
    out: list = []
    stack = [data]
    depth = 0
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            depth += 1
            if depth > 10_000_000:
                raise BadRequest(f"{field}.data is nested too deeply")
            stack.extend(reversed(item))
        else:
            out.append(item)
    return out


def _split_bytes(raw: bytes | memoryview, count: int, field: str) -> list[bytes]:
    view = memoryview(raw)
    items: list[bytes] = []
    pos = 0
    while pos < len(view):
        if pos + 4 > len(view):
            raise BadRequest(f"{field}: a BYTES element's 4-byte length is cut off at byte {pos}")
        (n,) = struct.unpack_from("<I", view, pos)
        pos += 4
        if pos + n > len(view):
            raise BadRequest(f"{field}: a BYTES element claims {n} bytes at byte {pos}; only {len(view) - pos} remain")
        items.append(bytes(view[pos:pos + n]))
        pos += n
    if len(items) != count:
        raise BadRequest(f"{field} holds {len(items)} BYTES elements; the shape needs {count}")
    return items


def _short(exc: BaseException) -> str:
    text = str(exc)
    return text if len(text) <= 120 else text[:117] + "..."
