"""The assignment log: which key was exposed to which variant of which experiment, and when.

Version 1, one JSON object a line (docs/experiments.md is the reference)::

    {"v": 1, "time": "2026-05-04T09:30:12.345Z", "experiment": "checkout-button",
     "key_hash": "<64 lowercase hex digits>", "variant": "treatment"}

``key_hash`` is :func:`hash_key` of the experiment name and the unit's key (a user id ...): the log
holds no raw keys, and an outcomes file keyed by raw keys is joined by hashing them the same way.
Writers may add fields; readers ignore the ones they do not know. A change that readers cannot
ignore gets a new ``v``, and this reader refuses versions it does not know rather than guess.

A key is normally logged many times (every request of a sticky user); it counts once, as exposed at
its first time. A key logged under two variants of the same experiment cannot be attributed to
either: it is reported, never counted twice.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from mlserve.errors import NotFoundError, UsageError
from mlserve.experiments.io import json_objects

VERSION = 1
FIELDS = ("v", "time", "experiment", "key_hash", "variant")
_HEX64 = re.compile(r"[0-9a-f]{64}")


def hash_key(experiment: str, key: str) -> str:
    """SHA-256 of ``experiment + "\\n" + key`` (UTF-8), as 64 lowercase hex digits.

    The experiment name cannot contain a newline (it is one line of JSON), so the pair is unambiguous.
    """
    return hashlib.sha256(f"{experiment}\n{key}".encode("utf-8")).hexdigest()


def format_time(when: datetime) -> str:
    """RFC 3339 in UTC with milliseconds: ``2026-05-04T09:30:12.345Z``."""
    utc = when.astimezone(timezone.utc)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def assignment_line(experiment: str, key: str, variant: str, when: datetime) -> str:
    """One line of the log (without the newline), as a writer such as ``mlserve serve`` writes it."""
    if not experiment or "\n" in experiment:
        raise UsageError(f"experiment name {experiment!r} must be non-empty and on one line")
    record = {"v": VERSION, "time": format_time(when), "experiment": experiment,
              "key_hash": hash_key(experiment, key), "variant": variant}
    return json.dumps(record, separators=(",", ":"))


@dataclass
class Assignments:
    """The distinct keys of one experiment with their variant (first exposure first)."""

    experiment: str
    variant_of: dict[str, str]
    """key_hash -> variant, for keys logged under one variant only."""
    first_seen: dict[str, str]
    conflicting: dict[str, set[str]] = field(default_factory=dict)
    """key_hash -> the variants it was logged under, for keys logged under more than one."""
    first_time: str | None = None
    last_time: str | None = None
    experiments_in_log: list[str] = field(default_factory=list)


def _parse_time(text: object, where: str) -> datetime:
    if not isinstance(text, str):
        raise UsageError(f"{where}: 'time' must be an RFC 3339 string such as 2026-05-04T09:30:12Z")
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"{where}: 'time' {text!r} is not an RFC 3339 time") from None
    if when.tzinfo is None:
        raise UsageError(f"{where}: 'time' {text!r} has no time zone (write Z for UTC)")
    return when


def read_log(path: Path, experiment: str | None = None) -> Assignments:
    """Read an assignment log; with several experiments in it, ``experiment`` says which one."""
    if not path.exists():
        raise NotFoundError(f"{path} does not exist")
    if path.is_dir():
        raise UsageError(f"{path} is a directory, not an assignment log")
    variants: dict[str, dict[str, set[str]]] = {}
    first: dict[str, dict[str, tuple[datetime, str]]] = {}
    times: dict[str, list[datetime]] = {}
    with path.open("r", encoding="utf-8") as handle:
        for number, obj in json_objects(handle, path.name):
            where = f"{path.name} line {number}"
            version = obj.get("v")
            if version != VERSION:
                if isinstance(version, int) and version > VERSION:
                    raise UsageError(f"{where} is assignment log version {version}; this mlserve reads version {VERSION}",
                                     hint="upgrade mlserve")
                raise UsageError(f"{where} is not an assignment log record: 'v' must be {VERSION}, not {version!r}")
            for name in FIELDS:
                if name not in obj:
                    raise UsageError(f"{where} has no {name!r} field (an assignment record has {', '.join(FIELDS)})")
            exp, key_hash, variant = obj["experiment"], obj["key_hash"], obj["variant"]
            if not isinstance(exp, str) or not exp:
                raise UsageError(f"{where}: 'experiment' must be a non-empty string")
            if not isinstance(key_hash, str) or not _HEX64.fullmatch(key_hash):
                raise UsageError(f"{where}: 'key_hash' must be 64 lowercase hex digits (SHA-256, see docs/experiments.md)")
            if not isinstance(variant, str) or not variant:
                raise UsageError(f"{where}: 'variant' must be a non-empty string")
            when = _parse_time(obj["time"], where)
            variants.setdefault(exp, {}).setdefault(key_hash, set()).add(variant)
            seen = first.setdefault(exp, {})
            if key_hash not in seen or when < seen[key_hash][0]:
                seen[key_hash] = (when, obj["time"])
            times.setdefault(exp, []).append(when)
    names = sorted(variants)
    if not names:
        raise UsageError(f"{path} has no assignment records")
    if experiment is None:
        if len(names) > 1:
            raise UsageError(f"{path} holds {len(names)} experiments ({', '.join(names[:10])}); choose one with --experiment")
        experiment = names[0]
    elif experiment not in variants:
        raise UsageError(f"{path} has no records of experiment {experiment!r}; it has: {', '.join(names[:10])}")
    keys = variants[experiment]
    seen = first[experiment]
    ordered = sorted(keys, key=lambda k: seen[k][0])
    stamps = times[experiment]
    return Assignments(
        experiment=experiment,
        variant_of={k: next(iter(keys[k])) for k in ordered if len(keys[k]) == 1},
        first_seen={k: seen[k][1] for k in ordered},
        conflicting={k: keys[k] for k in ordered if len(keys[k]) > 1},
        first_time=format_time(min(stamps)), last_time=format_time(max(stamps)),
        experiments_in_log=names,
    )
