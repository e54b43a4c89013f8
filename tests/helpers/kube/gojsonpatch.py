"""JSON patches applied by the real evanphx/json-patch library over Go's encoding/json, as kube-apiserver does.

kube-apiserver applies a JSON patch (``application/json-patch+json``) with evanphx/json-patch (v4
API) to the stored object as Go's ``encoding/json`` encodes it, and compares the raw bytes of a
``test`` value: ``"a>b"`` sent by the Python client never equals the stored ``"a\\u003eb"``, and
``"\\u00e9"`` never equals a stored raw ``é``. Python's ``jsonpatch`` package compares decoded
values and accepts both, which is how a rollout that fails on every real cluster passed its tests.

:func:`checker` builds the small Go program in ``jsonpatch_check/`` once (Debian's ``golang-go``
and ``golang-github-evanphx-json-patch-dev``, offline: GOPATH mode over ``/usr/share/gocode``) and
caches the binary outside the repository, under ``$MLSERVE_TEST_CACHE`` or
``~/.cache/mlserve-tests``, keyed by the hash of the source, the Go version and the library. The
emulator sends it every JSON patch body exactly as received.

Without Go or the library the tests that need it skip with the reason, unless
``MLSERVE_REQUIRE_GO=1`` (CI): then they fail.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SOURCE = Path(__file__).with_name("jsonpatch_check") / "main.go"
GOPATH = Path(os.environ.get("MLSERVE_TEST_GOPATH", "/usr/share/gocode"))
LIBRARY = GOPATH / "src" / "github.com" / "evanphx" / "json-patch"
REQUIRE_ENV = "MLSERVE_REQUIRE_GO"
INSTALL_HINT = "apt-get install -y golang-go golang-github-evanphx-json-patch-dev"


class CheckerUnavailable(RuntimeError):
    """The Go checker cannot be built here; the message says why and what to install."""


def required() -> bool:
    return os.environ.get(REQUIRE_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def cache_dir() -> Path:
    explicit = os.environ.get("MLSERVE_TEST_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    return Path("~/.cache/mlserve-tests").expanduser()


def _fingerprint(go: str) -> str:
    digest = hashlib.sha256(SOURCE.read_bytes())
    version = subprocess.run([go, "version"], capture_output=True, text=True, check=False).stdout
    digest.update(version.encode())
    for path in sorted(LIBRARY.glob("*.go")):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:16]


_built: dict[str, Path] = {}
_build_lock = threading.Lock()


def build() -> Path:
    """The checker binary, built once per source/Go/library fingerprint; :class:`CheckerUnavailable` if it cannot be."""
    go = shutil.which("go")
    if go is None:
        raise CheckerUnavailable(f"no Go compiler on PATH ({INSTALL_HINT})")
    if not (LIBRARY / "patch.go").is_file():
        raise CheckerUnavailable(f"evanphx/json-patch is not under {GOPATH}/src ({INSTALL_HINT})")
    with _build_lock:
        key = _fingerprint(go)
        if key in _built:
            return _built[key]
        root = cache_dir() / "jsonpatch-check"
        root.mkdir(parents=True, exist_ok=True)
        binary = root / f"jsonpatch-check-{key}"
        if not binary.is_file():
            from filelock import FileLock

            with FileLock(str(root / ".build.lock")):
                if not binary.is_file():
                    tmp = root / f".{binary.name}.{os.getpid()}.tmp"
                    env = dict(os.environ, GO111MODULE="off", GOPATH=str(GOPATH), GOFLAGS="",
                               GOCACHE=str(root / "gocache"), CGO_ENABLED="0")
                    done = subprocess.run([go, "build", "-o", str(tmp), str(SOURCE)], env=env, capture_output=True,
                                          text=True, check=False, cwd=SOURCE.parent)
                    if done.returncode != 0:
                        tmp.unlink(missing_ok=True)
                        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
                        raise CheckerUnavailable(f"go build of {SOURCE.name} failed: {' | '.join(tail)}")
                    os.replace(tmp, binary)
        _built[key] = binary
        return binary


@dataclass
class Outcome:
    ok: bool
    doc: Any = None
    stage: str = ""  # "decode" (a malformed patch: 400) or "apply" (a failed op: 422)
    error: str = ""


class Checker:
    """One long-running checker process; :meth:`apply` is thread safe."""

    def __init__(self, binary: Path) -> None:
        self.binary = binary
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self.calls = 0

    def _process(self) -> subprocess.Popen[bytes]:
        if self._proc is None or self._proc.poll() is not None:
            self._proc = subprocess.Popen([str(self.binary)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        return self._proc

    def apply(self, doc: Any, patch_body: bytes) -> Outcome:
        line = json.dumps({"doc": doc, "patch": base64.b64encode(patch_body).decode("ascii")}) + "\n"
        with self._lock:
            proc = self._process()
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write(line.encode("utf-8"))
            proc.stdin.flush()
            answer = proc.stdout.readline()
            self.calls += 1
        if not answer:
            raise RuntimeError("the JSON-patch checker died")
        reply = json.loads(answer)
        if reply.get("stage") == "protocol":
            raise RuntimeError(f"the JSON-patch checker could not read its request: {reply.get('error')}")
        return Outcome(ok=bool(reply["ok"]), doc=reply.get("doc"), stage=reply.get("stage", ""), error=reply.get("error", ""))

    def close(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            assert self._proc.stdin is not None
            self._proc.stdin.close()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)
        self._proc = None
