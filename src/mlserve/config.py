"""Configuration: flag > environment variable > config file > embedded default, resolved at call time.

Every setting is declared once in :data:`SETTINGS` with its environment variable; the CLI shows the
variable in ``--help``. Nothing is read at import time, so tests (and long-lived Python callers) can
change the environment between calls.

The config file is TOML: ``$MLSERVE_CONFIG``, else ``config.toml`` in the user's config directory.
Keys are the setting names, dotted names are tables::

    registry = "/srv/models"
    lock_timeout = 60
    [rollout]
    prometheus_url = "http://prometheus:9090"
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from mlserve.errors import UsageError


@dataclass(frozen=True)
class Setting:
    key: str
    env: str
    help: str
    default: Callable[[], Any]
    parse: Callable[[str], Any] = str


def _default_registry() -> Path:
    from platformdirs import user_data_dir

    return Path(user_data_dir("mlserve", appauthor=False)) / "registry"


def _default_config_file() -> Path:
    from platformdirs import user_config_dir

    return Path(user_config_dir("mlserve", appauthor=False)) / "config.toml"


def _parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off", ""}:
        return False
    raise UsageError(f"not a boolean: {text!r} (use 1/0, true/false, yes/no)")


SETTINGS: dict[str, Setting] = {
    s.key: s
    for s in [
        Setting("registry", "MLSERVE_REGISTRY", "registry directory", _default_registry, lambda v: Path(v).expanduser()),
        Setting("lock_timeout", "MLSERVE_LOCK_TIMEOUT", "seconds to wait for the registry lock", lambda: 30.0, float),
        Setting("traceback", "MLSERVE_TRACEBACK", "show the stack trace of errors", lambda: False, _parse_bool),
        Setting("rollout.prometheus_url", "MLSERVE_PROMETHEUS_URL", "Prometheus base URL", lambda: "http://127.0.0.1:9090"),
        Setting("rollout.namespace", "MLSERVE_NAMESPACE", "Kubernetes namespace", lambda: "default"),
        Setting("rollout.kubeconfig", "MLSERVE_KUBECONFIG", "kubeconfig file (else KUBECONFIG / in-cluster)", lambda: None),
        # mlserve serve (docs/serve.md)
        Setting("serve.host", "MLSERVE_SERVE_HOST", "address to listen on", lambda: "127.0.0.1"),
        Setting("serve.http_port", "MLSERVE_SERVE_HTTP_PORT", "REST port", lambda: 8000, int),
        Setting("serve.grpc_port", "MLSERVE_SERVE_GRPC_PORT", "gRPC port (0: no gRPC)", lambda: 8001, int),
        Setting("serve.workers", "MLSERVE_SERVE_WORKERS", "server processes", lambda: 1, int),
        Setting("serve.threads", "MLSERVE_SERVE_THREADS", "ONNX Runtime intra-op threads per session", lambda: 1, int),
        Setting("serve.instances", "MLSERVE_SERVE_INSTANCES", "executor threads per model", lambda: 1, int),
        Setting("serve.device", "MLSERVE_SERVE_DEVICE", "auto, cpu, cuda or tensorrt", lambda: "cpu"),
        Setting("serve.max_batch_size", "MLSERVE_SERVE_MAX_BATCH_SIZE", "rows per run (1: no batching)", lambda: 32, int),
        Setting("serve.max_queue_delay", "MLSERVE_SERVE_MAX_QUEUE_DELAY", "milliseconds to wait for a fuller batch",
                lambda: 0.0, float),
        Setting("serve.max_queue", "MLSERVE_SERVE_MAX_QUEUE", "queued requests per model before 503", lambda: 1024, int),
        Setting("serve.request_timeout", "MLSERVE_SERVE_REQUEST_TIMEOUT", "seconds per request (0: none)",
                lambda: 60.0, float),
        Setting("serve.max_request_bytes", "MLSERVE_SERVE_MAX_REQUEST_BYTES", "largest request body / gRPC message",
                lambda: 64 * 1024 * 1024, int),
        Setting("serve.drain_delay", "MLSERVE_SERVE_DRAIN_DELAY", "seconds of serving after SIGTERM, not ready",
                lambda: 5.0, float),
        Setting("serve.drain_timeout", "MLSERVE_SERVE_DRAIN_TIMEOUT", "seconds for in-flight requests to finish",
                lambda: 30.0, float),
        Setting("serve.poll_interval", "MLSERVE_SERVE_POLL_INTERVAL", "seconds between reads of a followed stage",
                lambda: 1.0, float),
        Setting("serve.access_log", "MLSERVE_SERVE_ACCESS_LOG", "one JSON line per request on stderr", lambda: False,
                _parse_bool),
    ]
}

CONFIG_ENV = "MLSERVE_CONFIG"


def config_file() -> Path:
    return Path(os.environ[CONFIG_ENV]).expanduser() if os.environ.get(CONFIG_ENV) else _default_config_file()


def _load_file() -> dict[str, Any]:
    path = config_file()
    if not path.is_file():
        return {}
    import tomllib

    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"cannot read config file {path}: {exc}") from exc


def _lookup(doc: dict[str, Any], dotted: str) -> Any:
    node: Any = doc
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def resolve(key: str, flag: Any = None) -> Any:
    """The value of setting ``key``: ``flag`` if given, else env, else config file, else default."""
    setting = SETTINGS[key]
    if flag is not None:
        return flag
    raw = os.environ.get(setting.env)
    if raw not in (None, ""):
        try:
            return setting.parse(raw)
        except ValueError as exc:
            raise UsageError(f"bad value for {setting.env}: {raw!r} ({exc})") from exc
    from_file = _lookup(_load_file(), key)
    if from_file is not None:
        try:
            return setting.parse(str(from_file)) if not isinstance(from_file, bool) else from_file
        except ValueError as exc:
            raise UsageError(f"bad value for {key} in {config_file()}: {from_file!r} ({exc})") from exc
    return setting.default()


def env_var(key: str) -> str:
    return SETTINGS[key].env
