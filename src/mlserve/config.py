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
    kind: str = "str"
    """``str``, ``path``, ``number`` (a finite float >= 0), ``integer`` (>= 0) or ``bool``."""

    def parse(self, text: str) -> Any:
        """A value from the environment (always text)."""
        if self.kind == "bool":
            return _parse_bool(text)
        if self.kind in ("number", "integer"):
            try:
                value: Any = int(text) if self.kind == "integer" else float(text)
            except ValueError:
                raise UsageError(f"not {'an integer' if self.kind == 'integer' else 'a number'}: {text!r}") from None
            return self.check(value)
        return self.check(text)

    def check(self, value: Any) -> Any:
        """Validate a value from any source (a flag, the environment, the file); return it normalised."""
        import math

        if self.kind == "bool":
            if not isinstance(value, bool):
                raise UsageError(f"not a boolean: {value!r}")
            return value
        if self.kind in ("number", "integer"):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                    (self.kind == "integer" and not float(value).is_integer()):
                raise UsageError(f"not {'an integer' if self.kind == 'integer' else 'a number'}: {value!r}")
            if not math.isfinite(value) or value < 0:
                raise UsageError(f"{value!r} is not a finite number of 0 or more")
            return int(value) if self.kind == "integer" else float(value)
        if not isinstance(value, (str, Path)):
            raise UsageError(f"not a string: {value!r}")
        if self.kind == "path":
            try:
                return Path(value).expanduser()
            except RuntimeError as exc:  # "~nouser/x"
                raise UsageError(f"cannot expand {str(value)!r}: {exc}") from None
        return str(value)


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
        Setting("registry", "MLSERVE_REGISTRY", "registry directory", _default_registry, "path"),
        Setting("lock_timeout", "MLSERVE_LOCK_TIMEOUT", "seconds to wait for the registry lock", lambda: 30.0, "number"),
        Setting("traceback", "MLSERVE_TRACEBACK", "show the stack trace of errors", lambda: False, "bool"),
        Setting("no_progress", "MLSERVE_NO_PROGRESS", "draw no progress bars on stderr", lambda: False, "bool"),
        Setting("rollout.prometheus_url", "MLSERVE_PROMETHEUS_URL", "Prometheus base URL", lambda: "http://127.0.0.1:9090"),
        Setting("rollout.namespace", "MLSERVE_NAMESPACE", "Kubernetes namespace", lambda: "default"),
        Setting("rollout.kubeconfig", "MLSERVE_KUBECONFIG", "kubeconfig file (else KUBECONFIG / in-cluster)", lambda: None),
        # mlserve serve (docs/serve.md)
        Setting("serve.host", "MLSERVE_SERVE_HOST", "address to listen on", lambda: "127.0.0.1"),
        Setting("serve.http_port", "MLSERVE_SERVE_HTTP_PORT", "REST port", lambda: 8000, "integer"),
        Setting("serve.grpc_port", "MLSERVE_SERVE_GRPC_PORT", "gRPC port (0: no gRPC)", lambda: 8001, "integer"),
        Setting("serve.workers", "MLSERVE_SERVE_WORKERS", "server processes", lambda: 1, "integer"),
        Setting("serve.threads", "MLSERVE_SERVE_THREADS", "ONNX Runtime intra-op threads per session", lambda: 1, "integer"),
        Setting("serve.instances", "MLSERVE_SERVE_INSTANCES", "executor threads per model", lambda: 1, "integer"),
        Setting("serve.device", "MLSERVE_SERVE_DEVICE", "auto, cpu, cuda or tensorrt", lambda: "cpu"),
        Setting("serve.max_batch_size", "MLSERVE_SERVE_MAX_BATCH_SIZE", "rows per run (1: no batching)", lambda: 32, "integer"),
        Setting("serve.max_queue_delay", "MLSERVE_SERVE_MAX_QUEUE_DELAY", "milliseconds to wait for a fuller batch",
                lambda: 0.0, "number"),
        Setting("serve.max_queue", "MLSERVE_SERVE_MAX_QUEUE", "queued requests per model before 503", lambda: 1024, "integer"),
        Setting("serve.request_timeout", "MLSERVE_SERVE_REQUEST_TIMEOUT", "seconds per request (0: none)",
                lambda: 60.0, "number"),
        Setting("serve.max_request_bytes", "MLSERVE_SERVE_MAX_REQUEST_BYTES", "largest request body / gRPC message",
                lambda: 64 * 1024 * 1024, "integer"),
        Setting("serve.drain_delay", "MLSERVE_SERVE_DRAIN_DELAY", "seconds of serving after SIGTERM, not ready",
                lambda: 5.0, "number"),
        Setting("serve.drain_timeout", "MLSERVE_SERVE_DRAIN_TIMEOUT", "seconds for in-flight requests to finish",
                lambda: 30.0, "number"),
        Setting("serve.poll_interval", "MLSERVE_SERVE_POLL_INTERVAL", "seconds between reads of a followed stage",
                lambda: 1.0, "number"),
        Setting("serve.access_log", "MLSERVE_SERVE_ACCESS_LOG", "one JSON line per request on stderr", lambda: False,
                "bool"),
        # mlserve serve's traffic split and admin endpoint (docs/serve.md, "Traffic splitting")
        Setting("serve.sticky_header", "MLSERVE_SERVE_STICKY_HEADER", "header holding the sticky key of a request",
                lambda: None),
        Setting("serve.sticky_parameter", "MLSERVE_SERVE_STICKY_PARAMETER", "OIP request parameter holding the "
                "sticky key", lambda: None),
        Setting("serve.assignment_log", "MLSERVE_SERVE_ASSIGNMENT_LOG", "JSON-lines file of split assignments",
                lambda: None, "path"),
        Setting("serve.admin_host", "MLSERVE_SERVE_ADMIN_HOST", "address of the admin endpoint", lambda: "127.0.0.1"),
        Setting("serve.admin_port", "MLSERVE_SERVE_ADMIN_PORT", "port of the admin endpoint", lambda: 8002, "integer"),
    ]
}

CONFIG_ENV = "MLSERVE_CONFIG"


@dataclass(frozen=True)
class EnvVar:
    name: str
    help: str


ENVIRONMENT: list[EnvVar] = [
    EnvVar(CONFIG_ENV, "config file (TOML); an explicit file that does not exist is an error"),
    EnvVar("MLSERVE_ACTOR", "who is acting, recorded in the journal (else GITHUB_ACTOR, GITLAB_USER_LOGIN, "
                            "BUILD_REQUESTEDFOR, then user@host)"),
    EnvVar("NO_COLOR", "set to anything to print no colours"),
    EnvVar("GITHUB_RUN_ID", "rollout: names the CI job holding a rollout's Lease (also CI_JOB_ID, BUILD_ID)"),
    EnvVar("MLSERVE_SERVE_METRICS_LABELS", "mlserve serve: constant metric labels, KEY=VALUE separated by spaces"),
    EnvVar("MLSERVE_ADMIN_TOKEN", "mlserve serve: the admin endpoint's bearer token, also sent by 'mlserve rollout "
                                  "--target local' (a secret: no config key, never shown by 'mlserve config')"),
]
"""Environment variables that are not settings (settings add their own, see :func:`environment`)."""


def environment() -> list[EnvVar]:
    """Every environment variable mlserve reads, for ``--help`` and the README."""
    return [*ENVIRONMENT, *(EnvVar(s.env, f"{s.help} (config key {s.key})") for s in SETTINGS.values())]


def config_file() -> Path:
    return Path(os.environ[CONFIG_ENV]).expanduser() if os.environ.get(CONFIG_ENV) else _default_config_file()


def _flatten(doc: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in doc.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and dotted not in SETTINGS:
            out.update(_flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out


_cache: dict[tuple[str, int, int], dict[str, Any]] = {}


def _load_file() -> dict[str, Any]:
    """The config file's settings as ``{dotted key: value}``; unknown keys and a missing explicit file are errors."""
    path = config_file()
    explicit = bool(os.environ.get(CONFIG_ENV))
    try:
        st = path.stat()
    except FileNotFoundError:
        if explicit:
            raise UsageError(f"config file {path} (from {CONFIG_ENV}) does not exist",
                             hint=f"create it, or unset {CONFIG_ENV} to use {_default_config_file()}") from None
        return {}
    except OSError as exc:
        raise UsageError(f"cannot read config file {path}: {exc.strerror}") from exc
    key = (str(path), st.st_mtime_ns, st.st_size)
    if key in _cache:
        return _cache[key]
    import tomllib

    try:
        with path.open("rb") as fh:
            doc = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"cannot read config file {path}: {exc}") from exc
    values = _flatten(doc)
    unknown = sorted(k for k in values if k not in SETTINGS)
    if unknown:
        import difflib

        hints = []
        for k in unknown:
            close = difflib.get_close_matches(k, list(SETTINGS), n=1)
            hints.append(f"{k!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise UsageError(f"config file {path} has unknown key{'s' if len(unknown) > 1 else ''} {', '.join(hints)}",
                         hint="known keys: " + ", ".join(sorted(SETTINGS)))
    _cache.clear()
    _cache[key] = values
    return values


def _parse_from_file(setting: Setting, value: Any) -> Any:
    try:
        if isinstance(value, dict):
            raise UsageError("a table where a value belongs")
        checked = setting.check(value)
        if setting.kind == "path" and not checked.is_absolute():  # relative to the file, not to where mlserve runs
            checked = config_file().parent / checked
        return checked
    except UsageError as exc:
        raise UsageError(f"bad value for {setting.key} in {config_file()}: {value!r} ({exc.message})") from None


def check_all() -> None:
    """Read every setting from the environment and the file once, so that a bad value anywhere is an error (exit 2)
    at the start of every command, whichever settings it happens to use."""
    for key in SETTINGS:
        resolve(key)


def resolve(key: str, flag: Any = None) -> Any:
    """The value of setting ``key``: ``flag`` if given, else env, else config file, else default."""
    return resolve_with_source(key, flag)[0]


def resolve_with_source(key: str, flag: Any = None) -> tuple[Any, str]:
    """``(value, source)`` where source is ``flag``, ``env MLSERVE_...``, ``file PATH`` or ``default``."""
    setting = SETTINGS[key]
    file_values = _load_file()  # validated on every call, so a typo in the file is never silently ignored
    if flag is not None:
        try:
            return setting.check(flag), "flag"
        except UsageError as exc:  # every setting's flag is its last name part: serve.drain_timeout is --drain-timeout
            flag_name = "--" + key.rsplit(".", 1)[-1].replace("_", "-")
            raise UsageError(f"bad value for {flag_name}: {flag!r} ({exc.message})") from None
    raw = os.environ.get(setting.env)
    if raw not in (None, ""):
        try:
            return setting.parse(raw), f"env {setting.env}"
        except UsageError as exc:
            raise UsageError(f"bad value for {setting.env}: {raw!r} ({exc.message})") from None
    if key in file_values and file_values[key] is not None:
        return _parse_from_file(setting, file_values[key]), f"file {config_file()}"
    return setting.default(), "default"


def env_var(key: str) -> str:
    return SETTINGS[key].env
