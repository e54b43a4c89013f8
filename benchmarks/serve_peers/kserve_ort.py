"""KServe's Python ModelServer with ONNX Runtime models (run by bench_serve.py in KServe's own venv).

KServe binds 0.0.0.0 and [::]; this launcher binds loopback only: uvicorn's Config gets host
127.0.0.1, and gRPC is off. Usage: python kserve_ort.py HTTP_PORT NAME=PATH [NAME=PATH ...]
"""

import sys
import uuid

import uvicorn

_config_init = uvicorn.Config.__init__


def _loopback_config(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
    kwargs["host"] = "127.0.0.1"
    _config_init(self, *args, **kwargs)


uvicorn.Config.__init__ = _loopback_config  # before kserve builds its server

import kserve  # noqa: E402
import onnxruntime as ort  # noqa: E402
from kserve import InferOutput, InferRequest, InferResponse  # noqa: E402


class OrtModel(kserve.Model):
    def __init__(self, name: str, path: str) -> None:
        super().__init__(name)
        self.path = path
        self.load()

    def load(self) -> bool:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(self.path, opts, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.ready = True
        return True

    async def predict(self, payload: InferRequest, headers=None, response_headers=None) -> InferResponse:  # noqa: ANN001
        x = payload.inputs[0].as_numpy()
        ys = self.session.run(None, {self.input: x})
        outs = [InferOutput(name=n, shape=list(y.shape), datatype="FP32", data=y) for n, y in zip(self.outputs, ys)]
        return InferResponse(model_name=self.name, infer_outputs=outs, response_id=payload.id or str(uuid.uuid4()))


if __name__ == "__main__":
    port = int(sys.argv[1])
    models = [OrtModel(*item.split("=", 1)) for item in sys.argv[2:]]
    kserve.ModelServer(http_port=port, enable_grpc=False, workers=1).start(models)
