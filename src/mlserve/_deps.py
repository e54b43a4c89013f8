"""Lazy imports of heavy optional dependencies, with an actionable error when one is missing.

``mlserve --help`` and the registry commands must never pay for torch, onnxruntime, tensorrt,
scipy or kubernetes: import them through :func:`require` inside the function that needs them.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from mlserve.errors import MissingDependencyError

# module -> the extra that installs it
EXTRAS: dict[str, str] = {
    "torch": "torch",
    "onnx": "onnx",
    "onnxruntime": "onnx",
    "onnxruntime.quantization": "onnx",
    "onnxscript": "onnx",
    "skl2onnx": "sklearn",
    "sklearn": "sklearn",
    "joblib": "sklearn",
    "scipy": "stats",
    "scipy.stats": "stats",
    "matplotlib": "plot",
    "kubernetes": "kubernetes",
    "ruamel.yaml": "kubernetes",
    "httpx": "kubernetes",
    "tensorrt": "tensorrt",
    "transformers": "hf",
    "tokenizers": "hf",
    "onnxruntime.transformers": "onnx",
    "uvicorn": "serve",
    "uvloop": "serve",
    "httptools": "serve",
    "orjson": "serve",
    "grpc": "serve",
    "grpc_health": "serve",
    "prometheus_client": "serve",
}


def require(module: str, *, purpose: str | None = None) -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependencyError` naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        extra = EXTRAS.get(module, EXTRAS.get(module.split(".")[0], "all"))
        why = f" for {purpose}" if purpose else ""
        raise MissingDependencyError(
            f"{module} is needed{why} but cannot be imported: {exc}",
            hint=f"install it with: pip install 'mlserve[{extra}]'",
        ) from exc
