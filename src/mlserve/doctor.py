"""``mlserve config``: every setting in effect and where it came from, the registry, and what is installed.

The extras and their packages are read from mlserve's own installed metadata, so this report can
never disagree with ``pyproject.toml``.
"""

from __future__ import annotations

import os
import platform
import re
import sys
from pathlib import Path
from typing import Any, Optional

from pydantic import BaseModel, Field

from mlserve import __version__, config


class SettingReport(BaseModel):
    key: str
    env: str
    value: Optional[str]
    source: str
    """``flag``, ``env NAME``, ``file PATH`` or ``default``."""


class DependencyReport(BaseModel):
    distribution: str
    version: Optional[str]
    """None when it is not installed."""
    extras: list[str]
    """The extras that bring it in; empty for a core dependency."""


class ExtraReport(BaseModel):
    name: str
    installed: bool
    missing: list[str]


class ConfigReport(BaseModel):
    mlserve_version: str
    python: str
    config_file: Path
    config_file_exists: bool
    config_file_explicit: bool
    registry: Path
    registry_state: str
    settings: list[SettingReport]
    dependencies: list[DependencyReport]
    extras: list[ExtraReport]
    problems: list[str] = Field(default_factory=list)
    """Settings or config file problems; every other command refuses to run while there are any (exit 2)."""
    warnings: list[str] = Field(default_factory=list)


_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?")
_EXTRA = re.compile(r"""extra\s*==\s*["']([^"']+)["']""")


def _requirements() -> list[tuple[str, str | None, list[str]]]:
    """(distribution, extra or None, extras it names itself) for each requirement of mlserve."""
    from importlib import metadata

    try:
        reqs = metadata.requires("mlserve") or []
    except metadata.PackageNotFoundError:
        return []
    out = []
    for req in reqs:
        match = _NAME.match(req)
        if not match:
            continue
        extra = _EXTRA.search(req.partition(";")[2])
        nested = [e.strip() for e in (match.group(2) or "[]")[1:-1].split(",") if e.strip()]
        out.append((match.group(1), extra.group(1) if extra else None, nested))
    return out


def _installed(distribution: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def dependency_report() -> tuple[list[DependencyReport], list[ExtraReport]]:
    reqs = _requirements()
    by_dist: dict[str, set[str]] = {}
    members: dict[str, set[str]] = {}
    nested: dict[str, set[str]] = {}
    for dist, extra, inner in reqs:
        if dist.lower() == "mlserve":
            nested.setdefault(extra or "", set()).update(inner)
            continue
        by_dist.setdefault(dist, set())
        if extra:
            by_dist[dist].add(extra)
            members.setdefault(extra, set()).add(dist)

    def expand(extra: str, seen: frozenset[str] = frozenset()) -> set[str]:
        dists = set(members.get(extra, set()))
        for sub in nested.get(extra, set()) - seen:
            dists |= expand(sub, seen | {extra})
        return dists

    deps = [DependencyReport(distribution=d, version=_installed(d), extras=sorted(e))
            for d, e in sorted(by_dist.items(), key=lambda kv: (bool(kv[1]), kv[0].lower()))]
    versions = {d.distribution: d.version for d in deps}
    extras = []
    for name in sorted(set(members) | set(nested) - {""}):
        missing = sorted(d for d in expand(name) if versions.get(d) is None)
        extras.append(ExtraReport(name=name, installed=not missing, missing=missing))
    return deps, extras


def _registry_state(path: Path) -> str:
    if path.is_symlink() and not path.exists():
        return "dangling symlink"
    if not path.exists():
        return "does not exist yet (created by the first register)"
    if not path.is_dir():
        return "not a directory"
    if (path / "registry.json").exists():
        return "registry"
    return "directory without a registry (created by the first register)" if not any(path.iterdir()) \
        else "directory that is not an mlserve registry"


def config_report(flags: dict[str, Any] | None = None) -> ConfigReport:
    """The settings in effect (``flags``: values given on the command line, by setting key). A bad value or config
    file is reported in ``problems`` instead of stopping the report."""
    from mlserve.errors import UsageError

    flags = flags or {}
    settings, problems = [], []
    try:
        config._load_file()
    except UsageError as exc:
        problems.append(str(exc))
    for key, setting in config.SETTINGS.items():
        try:
            value, source = config.resolve_with_source(key, flags.get(key))
        except UsageError as exc:
            if not problems or str(exc) not in problems:
                problems.append(str(exc))
            settings.append(SettingReport(key=key, env=setting.env, value=None, source="error"))
            continue
        settings.append(SettingReport(key=key, env=setting.env, value=None if value is None else str(value),
                                      source=source))
    by_key = {s.key: s for s in settings}
    registry_value = by_key["registry"].value
    registry = Path(registry_value or ".").expanduser().absolute()
    deps, extras = dependency_report()
    path = config.config_file()
    return ConfigReport(
        mlserve_version=__version__, python=f"{platform.python_implementation()} {sys.version.split()[0]}",
        config_file=path, config_file_exists=path.is_file(), config_file_explicit=bool(os.environ.get(config.CONFIG_ENV)),
        registry=registry, registry_state=_registry_state(registry) if registry_value else "unknown (bad setting)",
        settings=settings, dependencies=deps, extras=extras, problems=problems)
