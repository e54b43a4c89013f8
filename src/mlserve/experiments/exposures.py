"""From files to units: one row per exposed key, with its variant and its raw outcome values.

Two sources:

* an **events file** (CSV, JSON lines, Parquet) with one row per exposed key: the key, variant and
  outcome columns (and any pre-period covariate columns) side by side;
* an **assignment log** (see :mod:`mlserve.experiments.assignments`) joined on the key with an
  **outcomes file**. The outcomes file is matched on its ``key_hash`` column when it has one, else its
  key column is hashed with the experiment's name as the log's writer did.

A key counted twice would weigh twice and, exposed to two variants, would compare a unit with
itself; so a key with two rows in an events file, two variants in the log, or two rows in the
outcomes file is an error naming it, unless ``drop_duplicate_keys`` leaves every such key out (the
number left out is reported).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from mlserve.errors import UsageError
from mlserve.experiments import assignments, io
from mlserve.experiments.specs import AnalysisSpec

_TRUE, _FALSE = {"true", "yes"}, {"false", "no"}


@dataclass
class Units:
    source: str
    variants: list[str]
    """The variant of each unit."""
    values: dict[str, list[Any]]
    """Raw values of each metric and covariate column, one per unit (None: no value)."""
    where: Callable[[int], str]
    """Where unit i's values come from, for error messages."""
    experiment: str | None = None
    excluded_keys: int = 0
    unmatched_outcomes: int = 0
    first_exposure: str | None = None
    last_exposure: str | None = None
    warnings: list[str] = field(default_factory=list)


def _columns(spec: AnalysisSpec) -> list[tuple[str, str]]:
    out = [(m.name, f"metric {m.name!r}") for m in spec.metrics]
    out += [(m.covariate, f"pre-period covariate of {m.name!r}") for m in spec.metrics if m.covariate]
    return out


def _key_text(value: Any) -> str | None:
    if value is None or isinstance(value, (dict, list)):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # JSON/Parquet may store an integer id as 12.0
    text = str(value).strip()
    return text or None


def _duplicates(keys: list[str], variants: list[str] | None, what: str) -> tuple[set[str], str | None]:
    """Keys seen more than once, and a message about the first of them (None if there are none).

    A key in several variants is named before a key merely repeated within one variant."""
    counts = Counter(keys)
    dupes = {k for k, c in counts.items() if c > 1}
    if not dupes:
        return dupes, None
    if variants is not None:
        seen: dict[str, set[str]] = {}
        for k, v in zip(keys, variants):
            if k in dupes:
                seen.setdefault(k, set()).add(v)
        crossed = {k for k, vs in seen.items() if len(vs) > 1}
        if crossed:
            first = next(k for k in keys if k in crossed)
            return dupes, (f"key {first!r} is exposed to {len(seen[first])} variants ({', '.join(sorted(seen[first]))}) "
                           f"in {what} ({len(crossed)} keys in several variants, {len(dupes)} with more than one row)")
    first = next(k for k in keys if k in dupes)
    return dupes, f"key {first!r} has {counts[first]} rows in {what} ({len(dupes)} keys have more than one row)"


_HOW = "each key must be counted once: fix the data, or pass --drop-duplicate-keys to leave such keys out (they are counted in the report)"


def from_events(path: Path, spec: AnalysisSpec, fmt: str | None = None) -> Units:
    table = io.read_table(path, [spec.key, spec.variant, *(c for c, _ in _columns(spec))], fmt)
    if spec.key not in table.columns and {"key_hash", "experiment"} <= set(table.names):
        raise UsageError(f"{path} looks like an assignment log (it has key_hash and experiment fields)",
                         hint="join it with its outcomes: --outcomes FILE")
    io.require_columns(table, [(spec.key, "the key, set with --key"), (spec.variant, "the variant, set with --variant"),
                               *_columns(spec)])
    keys: list[str] = []
    variants: list[str] = []
    for i, (k, v) in enumerate(zip(table.columns[spec.key], table.columns[spec.variant])):
        key, variant = _key_text(k), _key_text(v)
        if key is None:
            raise UsageError(f"{table.where(i)} has no key in column {spec.key!r}")
        if variant is None:
            raise UsageError(f"{table.where(i)} has no variant in column {spec.variant!r}")
        keys.append(key)
        variants.append(variant)
    if not keys:
        raise UsageError(f"{path} has no rows")
    dupes, message = _duplicates(keys, variants, path.name)
    keep = list(range(len(keys)))
    warnings: list[str] = []
    if message:
        if not spec.drop_duplicate_keys:
            raise UsageError(message, hint=_HOW)
        keep = [i for i in keep if keys[i] not in dupes]
        warnings.append(f"{len(dupes)} keys with more than one row were left out ({message})")
    names = [c for c, _ in _columns(spec)]
    values = {name: [table.columns[name][i] for i in keep] for name in names}
    return Units(source=str(path), variants=[variants[i] for i in keep], values=values,
                 where=lambda i: table.where(keep[i]), excluded_keys=len(dupes), warnings=warnings)


def from_log(log_path: Path, outcomes_path: Path, spec: AnalysisSpec, fmt: str | None = None) -> Units:
    log = assignments.read_log(log_path, spec.experiment)
    table = io.read_table(outcomes_path, ["key_hash", spec.key, *(c for c, _ in _columns(spec))], fmt)
    hashed = "key_hash" in table.columns
    io.require_columns(table, [("key_hash" if hashed else spec.key,
                                "the key (a key_hash column, or raw keys in the --key column)"), *_columns(spec)])
    row_of: dict[str, int] = {}
    keys: list[str] = []
    for i, raw in enumerate(table.columns["key_hash" if hashed else spec.key]):
        key = _key_text(raw)
        if key is None:
            raise UsageError(f"{table.where(i)} has no key")
        keys.append(key if hashed else assignments.hash_key(log.experiment, key))
    dupes, message = _duplicates(keys, None, outcomes_path.name)
    warnings: list[str] = []
    excluded = set()
    if message:
        if not spec.drop_duplicate_keys:
            raise UsageError(message, hint=_HOW)
        excluded |= dupes
        warnings.append(f"{len(dupes)} keys with more than one outcome row were left out ({message})")
    if log.conflicting:
        first, seen = next(iter(log.conflicting.items()))
        text = (f"key hash {first[:12]}... is exposed to {len(seen)} variants ({', '.join(sorted(seen))}) in "
                f"{log_path.name} ({len(log.conflicting)} keys in several variants)")
        if not spec.drop_duplicate_keys:
            raise UsageError(text, hint=_HOW)
        excluded |= set(log.conflicting)
        warnings.append(f"{len(log.conflicting)} keys exposed to several variants were left out ({text})")
    for i, key in enumerate(keys):
        if key not in excluded:
            row_of[key] = i
    exposed = [k for k in log.variant_of if k not in excluded]
    names = [c for c, _ in _columns(spec)]
    rows = [row_of.get(k) for k in exposed]
    values = {name: [None if r is None else table.columns[name][r] for r in rows] for name in names}
    unmatched = len(set(row_of) - set(log.variant_of))
    if unmatched:
        warnings.append(f"{unmatched} rows of {outcomes_path.name} belong to keys that were never exposed "
                        f"in experiment {log.experiment!r}; they are ignored")

    def where(i: int) -> str:
        r = rows[i]
        return table.where(r) if r is not None else f"key hash {exposed[i][:12]}... (no row in {outcomes_path.name})"

    return Units(source=f"{log_path} + {outcomes_path}", variants=[log.variant_of[k] for k in exposed], values=values,
                 where=where, experiment=log.experiment, excluded_keys=len(excluded), unmatched_outcomes=unmatched,
                 first_exposure=log.first_time, last_exposure=log.last_time, warnings=warnings)


def numeric(raw: list[Any], column: str, where: Callable[[int], str], policy: str,
            role: str) -> tuple[np.ndarray, np.ndarray, int]:
    """Numbers of one column: the values, a mask of the units kept, and how many had no value.

    true/false (JSON booleans, or the words in CSV) are 1/0; an empty cell, null, an absent field or NaN
    is no value, handled by ``policy`` (error, zero, drop); anything else that is not a finite number is
    an error.
    """
    out = np.zeros(len(raw))
    keep = np.ones(len(raw), dtype=bool)
    missing = 0
    for i, value in enumerate(raw):
        number: float | None
        if value is None:
            number = None
        elif isinstance(value, bool):
            number = float(value)
        elif isinstance(value, (int, float)):
            number = float(value)
        elif isinstance(value, str):
            text = value.strip()
            low = text.lower()
            if not text:
                number = None
            elif low in _TRUE or low in _FALSE:
                number = 1.0 if low in _TRUE else 0.0
            else:
                try:
                    number = float(text)
                except ValueError:
                    raise UsageError(f"{where(i)}: {role} {column!r} has a non-numeric value {value!r}") from None
        else:
            raise UsageError(f"{where(i)}: {role} {column!r} has a non-numeric value {value!r}")
        if number is not None and math.isnan(number):
            number = None
        if number is None:
            missing += 1
            if policy == "error":
                raise UsageError(f"{where(i)}: {role} {column!r} has no value",
                                 hint="pass --missing-outcomes zero to count it as 0, or drop to leave the unit out")
            if policy == "drop":
                keep[i] = False
            continue
        if not math.isfinite(number):
            raise UsageError(f"{where(i)}: {role} {column!r} has a non-finite value {value!r}")
        out[i] = number
    return out, keep, missing
