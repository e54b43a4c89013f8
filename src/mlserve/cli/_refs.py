"""One grammar for model references on every command, and shell completion of them.

``NAME:VERSION`` names a version, ``NAME@STAGE`` the version a stage holds, ``NAME`` the model.
Commands that also take a positional VERSION (``promote churn 3``) keep that form; giving a
version twice, or a stage where the command has its own ``--stage`` with another value, is a
usage error that says which.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlserve.errors import UsageError
from mlserve.registry.names import RegistryRef, parse_ref_strict


def parse(ref: str) -> RegistryRef:
    """``NAME``, ``NAME:VERSION`` or ``NAME@STAGE`` (a bare NAME keeps ``stage=None``)."""
    return parse_ref_strict(ref, default_stage=None)


def model_only(ref: str, command: str) -> str:
    """The model name of a command that acts on a whole model (list, gc, verify)."""
    parsed = parse(ref)
    if parsed.version is not None or parsed.stage is not None:
        raise UsageError(f"'mlserve {command}' takes a model name, not {ref!r}",
                         hint=f"use 'mlserve {command} {parsed.model}'")
    return parsed.model


def version_of(reg: Any, ref: str, version: str | None = None, *, command: str) -> tuple[str, str]:
    """(name, version) from ``NAME VERSION``, ``NAME:VERSION`` or ``NAME@STAGE`` (the stage's current holder)."""
    parsed = parse(ref)
    if version is not None and (parsed.version is not None or parsed.stage is not None):
        raise UsageError(f"{ref!r} already names a version; drop the extra {version!r}",
                         hint=f"use 'mlserve {command} {parsed.model}:{version}' or 'mlserve {command} {ref}'")
    if version is not None:
        from mlserve.registry.names import check_version

        return parsed.model, check_version(version)
    if parsed.version is not None:
        return parsed.model, parsed.version
    if parsed.stage is not None:
        return parsed.model, reg.resolve(str(parsed)).version
    raise UsageError(f"{ref!r} names no version", hint=f"use {parsed.model}:VERSION or {parsed.model}@STAGE")


def merge(option: str | None, from_ref: str | None, *, flag: str, ref: str) -> str | None:
    """An option (``--stage``, ``--to``, ``--version``) that a reference may also carry: both may not disagree."""
    if option is not None and from_ref is not None and option != from_ref:
        raise UsageError(f"{ref!r} says {from_ref!r} but {flag} says {option!r}: give it once")
    return option if option is not None else from_ref


# ------------------------------------------------------------------------------------------ completion


def _registry_root(ctx: Any) -> Path | None:
    from mlserve import config

    try:
        node = ctx
        flag = None
        while node is not None and flag is None:
            flag = (node.params or {}).get("registry")
            node = node.parent
        return Path(config.resolve("registry", flag)).expanduser()
    except Exception:  # noqa: BLE001 - completion must never fail loudly
        return None


def _entries(path: Path, *, links: bool = False) -> list[str]:
    try:
        return sorted(e.name for e in path.iterdir()
                      if not e.name.startswith(".") and (e.is_symlink() if links else e.is_dir()))
    except OSError:
        return []


def complete_model(ctx: Any, incomplete: str) -> list[str]:
    """Model names in the registry that start with ``incomplete``."""
    root = _registry_root(ctx)
    if root is None:
        return []
    return [name for name in _entries(root / "models") if name.startswith(incomplete)]


def complete_ref(ctx: Any, incomplete: str) -> list[str]:
    """``NAME``, then ``NAME:VERSION`` (versions) or ``NAME@STAGE`` (stages held) from the registry."""
    root = _registry_root(ctx)
    if root is None:
        return []
    for sep, sub, links in ((":", "versions", False), ("@", "stages", True)):
        if sep in incomplete:
            model, _, part = incomplete.partition(sep)
            names = _entries(root / "models" / model / sub, links=links)
            if sep == "@" and "production" not in names:
                names.append("production")
            return [f"{model}{sep}{n}" for n in names if n.startswith(part)]
    return complete_model(ctx, incomplete)


def complete_stage(ctx: Any, incomplete: str) -> list[str]:
    """Stage names used by any model of the registry (and ``production``)."""
    root = _registry_root(ctx)
    stages = {"production", "staging"}
    if root is not None:
        for model in _entries(root / "models"):
            stages.update(_entries(root / "models" / model / "stages", links=True))
    return sorted(s for s in stages if s.startswith(incomplete))
