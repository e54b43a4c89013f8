"""What the front ends share: the models, the metrics, the lifecycle flags and the log."""

from __future__ import annotations

import sys
import time
from datetime import datetime, timezone
from typing import Any, Callable, TextIO

import orjson

from mlserve import __version__
from mlserve.serve.metrics import ServerMetrics
from mlserve.serve.options import ServeOptions
from mlserve.serve.repository import Repository

SERVER_NAME = "mlserve"
EXTENSIONS = ["binary_tensor_data", "model_configuration", "health", "metadata"]


class JsonLog:
    """One JSON object per line (the server's log and its access log), on a text stream."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr

    def __call__(self, event: str, level: str = "info", **fields: Any) -> None:
        doc = {"ts": datetime.now(timezone.utc).isoformat(timespec="milliseconds"), "level": level, "event": event,
               **fields}
        try:
            self.stream.write(orjson.dumps(doc, default=str).decode() + "\n")
            self.stream.flush()
        except (OSError, ValueError):  # a closed stderr must not take the server down
            pass


class ServerState:
    def __init__(self, options: ServeOptions, log: Callable[..., None]) -> None:
        self.options = options
        self.log = log
        self.metrics = ServerMetrics(options.metrics_labels)
        self.repo = Repository(options, self.metrics, log)
        self.draining = False
        self.started = time.time()
        self.metrics.set_ready(False)
        self.server_metadata = orjson.dumps({"name": SERVER_NAME, "version": __version__, "extensions": EXTENSIONS})

    @property
    def ready(self) -> bool:
        return self.repo.ready and not self.draining

    def version_header(self) -> bytes:
        """``X-Model-Version`` of a response not about one model: the version, or ``name=version,...`` (one entry
        per variant, the primary first, when a model has several)."""
        handles = self.repo.all_handles()
        if len(handles) == 1:
            (h,) = handles
            return (h.active.version if h.active else "").encode()
        return ",".join(f"{h.name}={h.active.version if h.active else ''}" for h in handles).encode()
