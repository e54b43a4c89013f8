"""What ``mlserve serve REF`` serves: a registry version (pinned or following a stage) or an ONNX file.

``NAME@STAGE`` (and plain ``NAME``, meaning ``NAME@production``) follows the stage: the server reads
the stage's symlink through :meth:`Registry.resolve` on every poll. ``NAME:VERSION`` is pinned. A
path to an ``.onnx`` file serves that file under its stem, its version being the first 12 hex digits
of its sha256.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlserve.errors import ChecksumMismatchError, NotFoundError, UsageError


@dataclass(frozen=True)
class ModelRef:
    text: str
    name: str
    stage: str | None = None  # set: follows this stage
    version: str | None = None  # set: pinned registry version
    path: Path | None = None  # set: a plain file

    @property
    def follows_stage(self) -> bool:
        return self.stage is not None


@dataclass(frozen=True)
class Artifact:
    """One resolved version, its file checked against the registry's sha256."""

    name: str
    version: str
    path: Path
    sha256: str
    stage: str | None = None


def _looks_like_path(text: str) -> bool:
    return text.endswith(".onnx") or "/" in text or text.startswith(".")


def parse_model_ref(text: str) -> ModelRef:
    """Parse one REF (no file system or registry access: a typo is a usage error up front)."""
    if _looks_like_path(text):
        path = Path(text).expanduser()
        name = path.stem if path.suffix == ".onnx" else path.name
        from mlserve.registry import parse_ref

        if parse_ref(name) is None:
            raise UsageError(f"{text}: the file's stem {name!r} is not a usable model name",
                             hint="letters, digits, '.', '_', '+', '-' (rename the file)")
        return ModelRef(text=text, name=name, path=path)
    from mlserve.registry import parse_ref_strict

    ref = parse_ref_strict(text)
    return ModelRef(text=text, name=ref.model, stage=ref.stage, version=ref.version)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _onnx_file(path: Path, what: str) -> Path:
    if path.is_dir():
        raise UsageError(f"{what} is a directory artifact; serve runs one .onnx file",
                         hint="register the .onnx file itself, or export it with 'mlserve optimize'")
    if path.suffix.lower() != ".onnx":
        raise UsageError(f"{what} is a {path.suffix or 'suffix-less'} artifact, not ONNX; serve runs ONNX models",
                         hint=f"convert it first: mlserve optimize {what} --auto --register NAME")
    return path


def resolve_artifact(ref: ModelRef, registry: Any) -> Artifact:
    """The artifact ``ref`` names now, its content hashed and checked against the registry."""
    if ref.path is not None:
        if not ref.path.is_file():
            raise NotFoundError(f"{ref.text}: no such file")
        path = _onnx_file(ref.path, ref.text)
        sha = sha256_of(path)
        return Artifact(name=ref.name, version=sha[:12], path=path, sha256=sha)
    resolved = registry.resolve(ref.text if ref.stage or ref.version else f"{ref.name}@production")
    what = f"{resolved.model}:{resolved.version}"
    path = _onnx_file(Path(resolved.artifact_path), what)
    actual = sha256_of(path)
    if actual != resolved.sha256:
        raise ChecksumMismatchError(
            f"{what} is damaged: sha256 {actual[:16]}... does not match the registry's {resolved.sha256[:16]}...",
            hint="refusing to serve it; 'mlserve verify' shows the damage", details={"expected": resolved.sha256,
                                                                                     "actual": actual})
    return Artifact(name=resolved.model, version=resolved.version, path=path, sha256=actual, stage=ref.stage)


def precheck(ref: ModelRef, registry: Any) -> None:
    """The cheap checks of :func:`resolve_artifact` (exists, is ONNX), before the server binds its ports."""
    if ref.path is not None:
        if not ref.path.is_file():
            raise NotFoundError(f"{ref.text}: no such file")
        _onnx_file(ref.path, ref.text)
        return
    resolved = registry.resolve(ref.text)
    _onnx_file(Path(resolved.artifact_path), f"{resolved.model}:{resolved.version}")


def current_version(ref: ModelRef, registry: Any) -> str | None:
    """The version the stage names now (cheap: no hashing); None for a pinned or file ref."""
    if not ref.follows_stage:
        return None
    return registry.resolve(ref.text).version
