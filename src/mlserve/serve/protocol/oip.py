"""Open Inference Protocol v2 over REST: reading a JSON infer request (with Triton's binary tensor
extension) and writing the response. Transport-free, so the tests and the ASGI app share it.

Binary extension: the body is a JSON header of ``Inference-Header-Content-Length`` bytes followed by
the raw tensors, in the order of the inputs whose ``parameters.binary_data_size`` says how many bytes
each takes. An output goes back raw when the request asks for it (``outputs[i].parameters.binary_data``
or ``parameters.binary_data_output``); the response then carries the same header.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from mlserve.serve.errors import BadRequest
from mlserve.serve.split import normalize_key
from mlserve.serve.tensors import (
    check_datatype,
    check_finite,
    check_shape,
    from_json_data,
    from_raw,
    to_json_data,
    to_raw,
)

DUMPS_OPTS = orjson.OPT_SERIALIZE_NUMPY


def parse_body(body: bytes, header_length: str | None) -> tuple[dict[str, Any], memoryview | None]:
    """The JSON document and the binary part after it (None without the binary header)."""
    binary = None
    if header_length is not None:
        try:
            n = int(header_length)
        except ValueError:
            raise BadRequest(f"Inference-Header-Content-Length {header_length!r:.40} is not an integer") from None
        if n < 0 or n > len(body):
            raise BadRequest(f"Inference-Header-Content-Length {n} does not fit a body of {len(body)} bytes")
        binary = memoryview(body)[n:]
        body = body[:n]
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise BadRequest(f"the body must be a JSON object, got {type(doc).__name__}")
    return doc, binary


def decode_inputs(loaded: Any, doc: dict[str, Any], binary: memoryview | None, *, allow_non_finite: bool
                  ) -> dict[str, np.ndarray]:
    inputs = doc.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise BadRequest("inputs must be a non-empty list of tensors")
    specs = loaded.input_by_name
    feeds: dict[str, np.ndarray] = {}
    offset = 0
    for i, item in enumerate(inputs):
        field = f"inputs[{i}]"
        if not isinstance(item, dict):
            raise BadRequest(f"{field} must be an object with name, shape, datatype and data")
        name = item.get("name")
        spec = specs.get(name) if isinstance(name, str) else None
        if spec is None:
            raise BadRequest(f"{field}.name {name!r:.80} is not an input of model {loaded.name!r} "
                             f"(inputs: {', '.join(specs)})")
        field = f"inputs[{i}] ({name})"
        if name in feeds:
            raise BadRequest(f"{field} is given twice")
        check_datatype(spec, item.get("datatype"), field)
        shape = check_shape(spec, item.get("shape"), field)
        params = item.get("parameters")
        size = params.get("binary_data_size") if isinstance(params, dict) else None
        if size is not None:
            if binary is None:
                raise BadRequest(f"{field}.parameters.binary_data_size is set but the request has no "
                                 "Inference-Header-Content-Length header")
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise BadRequest(f"{field}.parameters.binary_data_size must be a non-negative integer")
            if offset + size > len(binary):
                raise BadRequest(f"{field}.parameters.binary_data_size {size} runs past the end of the body "
                                 f"({len(binary) - offset} binary bytes left)")
            arr = from_raw(spec, shape, binary[offset:offset + size], f"{field} binary data")
            offset += size
        else:
            if "data" not in item:
                raise BadRequest(f"{field} has neither data nor parameters.binary_data_size")
            arr = from_json_data(spec, shape, item["data"], field)
        if not allow_non_finite:
            check_finite(spec, arr, field)
        feeds[name] = arr
    if binary is not None and offset != len(binary):
        raise BadRequest(f"the body has {len(binary)} bytes after the JSON header but the inputs' "
                         f"binary_data_size add up to {offset}")
    missing = [n for n in specs if n not in feeds]
    if missing:
        raise BadRequest(f"missing input(s) {', '.join(missing)} of model {loaded.name!r}")
    return feeds


def requested_outputs(loaded: Any, doc: dict[str, Any]) -> tuple[list[str] | None, set[str]]:
    """The outputs asked for (None: all) and those to send back as binary data."""
    params = doc.get("parameters")
    all_binary = bool(params.get("binary_data_output")) if isinstance(params, dict) else False
    wanted = doc.get("outputs")
    if wanted is None:
        return None, set(loaded.output_names) if all_binary else set()
    if not isinstance(wanted, list):
        raise BadRequest("outputs must be a list of {name, parameters}")
    names: list[str] = []
    binary: set[str] = set()
    for i, item in enumerate(wanted):
        name = item.get("name") if isinstance(item, dict) else None
        if name not in loaded.output_names:
            raise BadRequest(f"outputs[{i}].name {name!r:.80} is not an output of model {loaded.name!r} "
                             f"(outputs: {', '.join(loaded.output_names)})")
        if name in names:
            raise BadRequest(f"outputs[{i}] ({name}) is asked for twice")
        names.append(name)
        p = item.get("parameters")
        flag = p.get("binary_data") if isinstance(p, dict) else None
        if flag or (flag is None and all_binary):
            binary.add(name)
    return (names or None), binary


def encode_response(loaded: Any, doc: dict[str, Any], names: list[str] | None, arrays: list[np.ndarray],
                    binary: set[str]) -> tuple[bytes, int | None]:
    """The response body and, when some output is binary, the JSON header's length."""
    out_names = names or loaded.output_names
    outputs = []
    raws = []
    for name, arr in zip(out_names, arrays):
        datatype = _datatype_of(loaded, name, arr)
        entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(arr.shape)}
        if name in binary:
            raw = to_raw(arr)
            raws.append(raw)
            entry["parameters"] = {"binary_data_size": len(raw)}
        else:
            entry["data"] = to_json_data(arr)
        outputs.append(entry)
    resp: dict[str, Any] = {"model_name": loaded.name, "model_version": loaded.version, "outputs": outputs}
    if "id" in doc:
        resp["id"] = doc["id"]
    header = orjson.dumps(resp, option=DUMPS_OPTS)
    if not raws:
        return header, None
    return header + b"".join(raws), len(header)


def _datatype_of(loaded: Any, name: str, arr: np.ndarray) -> str:
    for spec in loaded.outputs:
        if spec.name == name:
            return spec.datatype
    raise BadRequest(f"unknown output {name}")  # pragma: no cover - names are checked before the run


def sticky_key(sticky: Any, header: bytes | None, doc: dict[str, Any]) -> str | None:
    """A request's sticky key: the header (``header``: its raw value) if sent, else ``parameters.NAME``."""
    if header is not None:
        try:
            return normalize_key(header.decode("utf-8"), f"the {sticky.header} header")
        except UnicodeDecodeError:
            raise BadRequest(f"the {sticky.header} header is not UTF-8") from None
    if sticky.parameter is not None:
        params = doc.get("parameters")
        if isinstance(params, dict) and sticky.parameter in params:
            return normalize_key(params[sticky.parameter], f"parameters.{sticky.parameter}")
    return None


def model_metadata(loaded: Any, group: Any) -> dict[str, Any]:
    """Metadata of ``loaded`` (a version of ``group``'s): every version the model serves, this one first."""
    versions = [loaded.version]
    status: dict[str, Any] = {}
    for h in group.handles:
        if h.active is loaded:
            status = h.status()
        if h.active is not None and h.active.version not in versions:
            versions.append(h.active.version)
    status["variant"] = loaded.variant
    split = group.split
    if len(split.handles) > 1:
        status["split"] = {"revision": split.revision, "experiment": split.experiment,
                           "variants": [{"name": h.variant, "share": round(share, 6),
                                         "version": h.active.version if h.active else None}
                                        for h, share in zip(split.handles, split.router.shares())]}
    return {
        "name": loaded.name,
        "versions": versions,
        "platform": "onnxruntime_onnx",
        "inputs": [s.to_json() for s in loaded.inputs],
        "outputs": [s.to_json() for s in loaded.outputs],
        "parameters": {"sha256": loaded.sha256, "mlserve": status},
    }


_TRITON_TYPES = {"BOOL": "TYPE_BOOL", "UINT8": "TYPE_UINT8", "UINT16": "TYPE_UINT16", "UINT32": "TYPE_UINT32",
                 "UINT64": "TYPE_UINT64", "INT8": "TYPE_INT8", "INT16": "TYPE_INT16", "INT32": "TYPE_INT32",
                 "INT64": "TYPE_INT64", "FP16": "TYPE_FP16", "FP32": "TYPE_FP32", "FP64": "TYPE_FP64",
                 "BYTES": "TYPE_STRING"}


def model_config(loaded: Any, max_batch_size: int) -> dict[str, Any]:
    """Triton's model configuration (what perf_analyzer reads): with batching, dims leave out the batch dimension."""
    batch = max_batch_size if loaded.batchable and max_batch_size > 1 else 0

    def tensor(spec: Any) -> dict[str, Any]:
        dims = list(spec.shape[1:] if batch else spec.shape)
        return {"name": spec.name, "data_type": _TRITON_TYPES[spec.datatype], "dims": dims}

    doc: dict[str, Any] = {
        "name": loaded.name, "platform": "onnxruntime_onnx", "backend": "onnxruntime", "max_batch_size": batch,
        "input": [tensor(s) for s in loaded.inputs], "output": [tensor(s) for s in loaded.outputs],
        "version_policy": {"specific": {"versions": [loaded.version]}},
    }
    if batch:
        doc["dynamic_batching"] = {"max_queue_delay_microseconds": 0}
    return doc
