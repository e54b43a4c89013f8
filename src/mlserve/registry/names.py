"""Validation of model names, versions and stages, and parsing of registry references.

Names become directory names, so they are checked before they touch the file system: no path
separators, no ``..``, nothing hidden, bounded length.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mlserve.errors import InvalidNameError

MAX_LEN = 128
# matched with fullmatch: ``$`` would also accept a trailing newline ("m\n" listed as a second "m")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
_STAGE = re.compile(r"[a-z][a-z0-9_-]*")
RESERVED_STAGES = {"archived", "registered", "none"}


def _check(kind: str, value: str, pattern: re.Pattern[str]) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidNameError(f"{kind} must not be empty")
    if len(value) > MAX_LEN:
        raise InvalidNameError(f"{kind} {value[:40]!r}... is longer than {MAX_LEN} characters")
    if ".." in value or "/" in value or "\\" in value or "\x00" in value:
        raise InvalidNameError(f"{kind} {value!r} must not contain '/', '\\' or '..'")
    if not pattern.fullmatch(value):
        allowed = "lowercase letters, digits, '-' and '_', starting with a letter" if pattern is _STAGE else (
            "letters, digits, '.', '_', '+' and '-', starting with a letter or digit"
        )
        raise InvalidNameError(f"{kind} {value!r} is not valid: use {allowed}")
    return value


def check_model_name(name: str) -> str:
    return _check("model name", name, _NAME)


def check_version(version: str) -> str:
    return _check("version", version, _NAME)


def check_tag(tag: str) -> str:
    """Tags follow the grammar of versions (they appear in the same places)."""
    return _check("tag", tag, _NAME)


def check_stage(stage: str) -> str:
    _check("stage", stage, _STAGE)
    if stage in RESERVED_STAGES:
        raise InvalidNameError(f"stage {stage!r} is reserved: choose another name")
    return stage


@dataclass(frozen=True)
class RegistryRef:
    """``NAME:VERSION``, ``NAME@STAGE`` or ``NAME`` (which means ``NAME@production``)."""

    model: str
    version: str | None = None
    stage: str | None = None

    def __str__(self) -> str:
        if self.version is not None:
            return f"{self.model}:{self.version}"
        return f"{self.model}@{self.stage or 'production'}"


def parse_ref(text: str, *, default_stage: str | None = "production") -> RegistryRef | None:
    """Parse a registry reference; ``None`` when ``text`` is not one (e.g. a file path)."""
    try:
        return parse_ref_strict(text, default_stage=default_stage)
    except InvalidNameError:
        return None


def parse_ref_strict(text: str, *, default_stage: str | None = "production") -> RegistryRef:
    """Parse a registry reference or raise :class:`InvalidNameError` saying what is wrong."""
    if "@" in text:
        model, _, stage = text.partition("@")
        return RegistryRef(check_model_name(model), stage=check_stage(stage))
    if ":" in text:
        model, _, version = text.partition(":")
        return RegistryRef(check_model_name(model), version=check_version(version))
    return RegistryRef(check_model_name(text), stage=default_stage)
