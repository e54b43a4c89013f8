"""A small ONNX Runtime runtime for Seldon MLServer 1.7 (run by bench_serve.py in MLServer's own venv)."""

import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse


class OrtRuntime(MLModel):
    async def load(self) -> bool:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        self._session = ort.InferenceSession(self.settings.parameters.uri, opts, providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name
        self._outputs = [o.name for o in self._session.get_outputs()]
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        x = NumpyCodec.decode_input(payload.inputs[0])
        ys = self._session.run(None, {self._input: x})
        return InferenceResponse(model_name=self.name,
                                 outputs=[NumpyCodec.encode_output(n, y) for n, y in zip(self._outputs, ys)])
