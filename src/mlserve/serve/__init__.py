"""``mlserve serve``: ONNX models over the Open Inference Protocol v2 (REST and gRPC), as a library.

    from mlserve.serve import ServeOptions, run_server
    run_server(ServeOptions(refs=("churn@production",), http_port=8000, grpc_port=8001))

Its dependencies (uvicorn, uvloop, httptools, orjson, grpcio, protobuf, prometheus-client) come with
``mlserve[serve]`` and are imported only when a server starts. See docs/serve.md.
"""

from mlserve.serve.batching import BatchingOptions
from mlserve.serve.options import ServeOptions

__all__ = ["BatchingOptions", "ServeOptions", "run_server"]


def run_server(*args, **kwargs):  # noqa: ANN002, ANN003, ANN201 - a lazy door to mlserve.serve.server
    from mlserve.serve.server import run_server as _run

    return _run(*args, **kwargs)
