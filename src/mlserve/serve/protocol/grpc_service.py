"""The gRPC front end: ``inference.GRPCInferenceService`` of the Open Inference Protocol v2 on grpc.aio.

Handlers are registered under the protocol's service name with the messages of ``oip_v2.proto``
(wire-compatible with Triton's and KServe's definitions). ModelInfer reads ``raw_input_contents``
(or typed ``contents``) and always answers with ``raw_output_contents``. A request goes to the variant
its model's split assigns: by its sticky key (the sticky header as gRPC metadata, lower case, or a
request parameter: ``string_param`` or ``int64_param``), else by weight; ``model_version`` pins a
version. The response's ``model_version`` names the version that answered. Errors are status codes
with a message naming the field: INVALID_ARGUMENT, NOT_FOUND, UNAVAILABLE (queue full, not ready,
draining), RESOURCE_EXHAUSTED (message size, set by grpc), INTERNAL (the model raised).
"""

from __future__ import annotations

import time
from typing import Any

import grpc
import numpy as np

from mlserve import __version__
from mlserve.serve.errors import GRPC_TO_HTTP, BadRequest, NotReady, RequestError
from mlserve.serve.protocol import oip, oip_v2_pb2 as pb
from mlserve.serve.split import normalize_key
from mlserve.serve.state import EXTENSIONS, SERVER_NAME, ServerState
from mlserve.serve.tensors import check_datatype, check_finite, check_shape, element_count, from_raw, to_raw

SERVICE = "inference.GRPCInferenceService"

_CONTENTS_FIELD = {
    "BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
    "INT64": "int64_contents", "UINT8": "uint_contents", "UINT16": "uint_contents", "UINT32": "uint_contents",
    "UINT64": "uint64_contents", "FP32": "fp32_contents", "FP64": "fp64_contents", "BYTES": "bytes_contents",
}


class InferenceServicer:
    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.repo = state.repo
        self.metrics = state.metrics
        self.allow_non_finite = state.options.allow_non_finite

    # ------------------------------------------------------------------ health and metadata

    async def server_live(self, request: pb.ServerLiveRequest, context: Any) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    async def server_ready(self, request: pb.ServerReadyRequest, context: Any) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self.state.ready)

    async def model_ready(self, request: pb.ModelReadyRequest, context: Any) -> pb.ModelReadyResponse:
        try:
            self.repo.get(request.name, request.version or None)
        except NotReady:
            return pb.ModelReadyResponse(ready=False)
        except RequestError as exc:
            await context.abort(grpc.StatusCode[exc.grpc_code], exc.message)
        return pb.ModelReadyResponse(ready=self.state.ready)

    async def server_metadata(self, request: pb.ServerMetadataRequest, context: Any) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(name=SERVER_NAME, version=__version__, extensions=EXTENSIONS)

    async def model_metadata(self, request: pb.ModelMetadataRequest, context: Any) -> pb.ModelMetadataResponse:
        try:
            loaded = self.repo.get(request.name, request.version or None)
        except RequestError as exc:
            await context.abort(grpc.StatusCode[exc.grpc_code], exc.message)
        tm = pb.ModelMetadataResponse.TensorMetadata
        versions = [loaded.version]  # this one first, then the other variants' (as over REST)
        for h in self.repo.models[request.name].handles:
            if h.active is not None and h.active.version not in versions:
                versions.append(h.active.version)
        return pb.ModelMetadataResponse(
            name=loaded.name, versions=versions, platform="onnxruntime_onnx",
            inputs=[tm(name=s.name, datatype=s.datatype, shape=list(s.shape)) for s in loaded.inputs],
            outputs=[tm(name=s.name, datatype=s.datatype, shape=list(s.shape)) for s in loaded.outputs])

    async def model_config(self, request: pb.ModelConfigRequest, context: Any) -> pb.ModelConfigResponse:
        """The same configuration as ``GET /v2/models/{m}/config`` (what perf_analyzer asks for over gRPC)."""
        try:
            loaded = self.repo.get(request.name, request.version or None)
        except RequestError as exc:
            await context.abort(grpc.StatusCode[exc.grpc_code], exc.message)
        doc = oip.model_config(loaded, self.state.options.batching.max_batch_size)
        config = pb.ModelConfig(name=doc["name"], platform=doc["platform"], backend=doc["backend"],
                                max_batch_size=doc["max_batch_size"],
                                input=[pb.ModelInput(name=t["name"], data_type=t["data_type"], dims=t["dims"])
                                       for t in doc["input"]],
                                output=[pb.ModelOutput(name=t["name"], data_type=t["data_type"], dims=t["dims"])
                                        for t in doc["output"]])
        if "dynamic_batching" in doc:
            config.dynamic_batching.max_queue_delay_microseconds = doc["dynamic_batching"]["max_queue_delay_microseconds"]
        return pb.ModelConfigResponse(config=config)

    # ------------------------------------------------------------------ inference

    async def model_infer(self, request: pb.ModelInferRequest, context: Any) -> pb.ModelInferResponse:
        started = time.perf_counter()
        name = request.model_name
        loaded = None
        code = "OK"
        try:
            group = self.repo.group(name)
            sticky = group.split.sticky
            key = self._sticky_key(sticky, request, context) if sticky is not None else None
            loaded = self.repo.route(group, request.model_version or None, key)
            feeds = self._decode(loaded, request)
            names = self._outputs(loaded, request)
            arrays = await loaded.submit(feeds, names)
            resp = pb.ModelInferResponse(model_name=loaded.name, model_version=loaded.version, id=request.id)
            by_name = {s.name: s for s in loaded.outputs}
            for out_name, arr in zip(names or loaded.output_names, arrays):
                resp.outputs.add(name=out_name, datatype=by_name[out_name].datatype, shape=list(arr.shape))
                resp.raw_output_contents.append(to_raw(arr))
            return resp
        except RequestError as exc:
            code = exc.grpc_code
            await context.abort(grpc.StatusCode[exc.grpc_code], exc.message)
        except Exception as exc:
            if isinstance(exc, grpc.aio.AbortError):
                raise
            code = "INTERNAL"
            self.state.log("request_failed", level="error", protocol="grpc", error=f"{type(exc).__name__}: {exc}")
            await context.abort(grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}: {exc}")
        finally:
            group = self.repo.models.get(name)
            if group is not None:
                if loaded is None:
                    loaded = group.unassigned
                self.metrics.request(GRPC_TO_HTTP.get(code, 500), name, loaded.version if loaded else "", "grpc",
                                     time.perf_counter() - started, loaded.variant if loaded else "")
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _sticky_key(sticky: Any, request: pb.ModelInferRequest, context: Any) -> str | None:
        """The metadata entry named like the sticky header, else the request parameter."""
        if sticky.header is not None:
            wanted = sticky.header.lower()
            for k, v in context.invocation_metadata() or ():
                if k == wanted:
                    return normalize_key(v if isinstance(v, str) else v.decode("utf-8", "strict"),
                                         f"the {wanted} metadata")
        if sticky.parameter is not None and sticky.parameter in request.parameters:
            param = request.parameters[sticky.parameter]
            which = param.WhichOneof("parameter_choice")
            if which == "string_param":
                return normalize_key(param.string_param, f"parameters[{sticky.parameter!r}]")
            if which in ("int64_param", "uint64_param"):
                return normalize_key(int(getattr(param, which)), f"parameters[{sticky.parameter!r}]")
            raise BadRequest(f"parameters[{sticky.parameter!r}] is the sticky key: a string_param or int64_param, "
                             f"got {which}")
        return None

    def _decode(self, loaded: Any, request: pb.ModelInferRequest) -> dict[str, np.ndarray]:
        specs = loaded.input_by_name
        raw = request.raw_input_contents
        if raw and len(raw) != len(request.inputs):
            raise BadRequest(f"raw_input_contents has {len(raw)} entries for {len(request.inputs)} inputs "
                             "(one per input, in order)")
        if not request.inputs:
            raise BadRequest("inputs is empty")
        feeds: dict[str, np.ndarray] = {}
        for i, tensor in enumerate(request.inputs):
            spec = specs.get(tensor.name)
            if spec is None:
                raise BadRequest(f"inputs[{i}].name {tensor.name!r:.80} is not an input of model {loaded.name!r} "
                                 f"(inputs: {', '.join(specs)})")
            field = f"inputs[{i}] ({tensor.name})"
            if tensor.name in feeds:
                raise BadRequest(f"{field} is given twice")
            check_datatype(spec, tensor.datatype, field)
            shape = check_shape(spec, list(tensor.shape), field)
            if raw:
                if tensor.HasField("contents"):
                    raise BadRequest(f"{field} has contents and raw_input_contents; use one")
                arr = from_raw(spec, shape, raw[i], f"raw_input_contents[{i}] ({tensor.name})")
            else:
                arr = self._from_contents(spec, shape, tensor, field)
            if not self.allow_non_finite:
                check_finite(spec, arr, field)
            feeds[tensor.name] = arr
        missing = [n for n in specs if n not in feeds]
        if missing:
            raise BadRequest(f"missing input(s) {', '.join(missing)} of model {loaded.name!r}")
        return feeds

    @staticmethod
    def _from_contents(spec: Any, shape: tuple[int, ...], tensor: Any, field: str) -> np.ndarray:
        attr = _CONTENTS_FIELD.get(spec.datatype)
        if attr is None:
            raise BadRequest(f"{field}: datatype {spec.datatype} travels only in raw_input_contents")
        values = getattr(tensor.contents, attr)
        count = element_count(shape)
        if len(values) != count:
            raise BadRequest(f"{field}.contents.{attr} has {len(values)} elements; shape {list(shape)} needs {count}")
        if spec.datatype == "BYTES":
            return np.array(list(values), dtype=np.object_).reshape(shape)
        try:
            return np.array(values, dtype=spec.dtype).reshape(shape)
        except (ValueError, OverflowError) as exc:
            raise BadRequest(f"{field}.contents.{attr} does not fit {spec.datatype}: {exc}") from None

    @staticmethod
    def _outputs(loaded: Any, request: pb.ModelInferRequest) -> list[str] | None:
        names = []
        for i, out in enumerate(request.outputs):
            if out.name not in loaded.output_names:
                raise BadRequest(f"outputs[{i}].name {out.name!r:.80} is not an output of model {loaded.name!r} "
                                 f"(outputs: {', '.join(loaded.output_names)})")
            if out.name in names:
                raise BadRequest(f"outputs[{i}] ({out.name}) is asked for twice")
            names.append(out.name)
        return names or None


def generic_handler(state: ServerState) -> Any:
    s = InferenceServicer(state)

    def unary(fn: Any, req: Any, resp: Any) -> Any:
        return grpc.unary_unary_rpc_method_handler(fn, request_deserializer=req.FromString,
                                                   response_serializer=resp.SerializeToString)

    return grpc.method_handlers_generic_handler(SERVICE, {
        "ServerLive": unary(s.server_live, pb.ServerLiveRequest, pb.ServerLiveResponse),
        "ServerReady": unary(s.server_ready, pb.ServerReadyRequest, pb.ServerReadyResponse),
        "ModelReady": unary(s.model_ready, pb.ModelReadyRequest, pb.ModelReadyResponse),
        "ServerMetadata": unary(s.server_metadata, pb.ServerMetadataRequest, pb.ServerMetadataResponse),
        "ModelMetadata": unary(s.model_metadata, pb.ModelMetadataRequest, pb.ModelMetadataResponse),
        "ModelInfer": unary(s.model_infer, pb.ModelInferRequest, pb.ModelInferResponse),
        "ModelConfig": unary(s.model_config, pb.ModelConfigRequest, pb.ModelConfigResponse),
    })
