"""A real ``mlserve serve`` subprocess on loopback free ports, for the serve tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from helpers.prometheus import free_port


class ServerProcess:
    def __init__(self, refs: list[str], workdir: Path, *args: str, registry: Path | None = None,
                 env: dict[str, str] | None = None, wait_ready: bool = True, grpc: bool = True,
                 admin_token: str | None = None) -> None:
        self.http_port = free_port()
        self.grpc_port = free_port() if grpc else 0
        self.admin_port = free_port()
        self.admin_token = admin_token
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.stderr_path = workdir / f"serve-{self.http_port}.err"
        self.stdout_path = workdir / f"serve-{self.http_port}.out"
        cmd = [sys.executable, "-m", "mlserve", "serve", *refs, "--http-port", str(self.http_port),
               "--grpc-port", str(self.grpc_port), "--admin-port", str(self.admin_port), *args]
        if registry is not None:
            cmd += ["--registry", str(registry)]
        full_env = {**os.environ, **(env or {})}
        if admin_token is not None:  # through the environment, as the docs advise: never on the command line
            full_env["MLSERVE_ADMIN_TOKEN"] = admin_token
        self._err = self.stderr_path.open("wb")
        self._out = self.stdout_path.open("wb")
        self.proc = subprocess.Popen(cmd, stdout=self._out, stderr=self._err, env=full_env)
        if wait_ready:
            self.wait_ready()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def http_target(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def log_events(self) -> list[dict[str, Any]]:
        out = []
        for line in self.stderr().splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
        return out

    def get(self, path: str, timeout: float = 5) -> tuple[int, dict[str, str], bytes]:
        return request("GET", self.url + path, timeout=timeout)

    def post(self, path: str, body: bytes | dict, headers: dict[str, str] | None = None,
             timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
        data = json.dumps(body).encode() if isinstance(body, dict) else body
        return request("POST", self.url + path, data, headers or {}, timeout=timeout)

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.stderr()[-3000:]}")
            try:
                status, _, _ = self.get("/v2/health/ready", timeout=1)
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"server not ready within {timeout}s:\n{self.stderr()[-3000:]}")

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def admin(self, method: str, path: str = "/v2/mlserve/split", doc: Any = None, token: str | None = "",
              timeout: float = 60) -> tuple[int, dict[str, str], Any]:
        """An admin request with this server's token (``token=None``: none; another string: that one)."""
        token = self.admin_token if token == "" else token
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        data = None if doc is None else (doc if isinstance(doc, bytes) else json.dumps(doc).encode())
        status, hdrs, raw = request(method, self.admin_url + path, data, headers, timeout=timeout)
        return status, hdrs, json.loads(raw) if raw else None

    def metrics(self) -> str:
        return self.get("/metrics")[2].decode()

    def terminate(self, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            self._close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._close()

    def _close(self) -> None:
        for fh in (self._err, self._out):
            if not fh.closed:
                fh.close()

    def __enter__(self) -> "ServerProcess":
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()


def request(method: str, url: str, data: bytes | None = None, headers: dict[str, str] | None = None,
            timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read()


def metric_value(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels`` (0 when none)."""
    from prometheus_client.parser import text_string_to_metric_families

    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total
