"""Seeded random inputs and user data files (.npz/.npy) as ONNX-style feeds (name -> numpy array)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlserve.errors import NotFoundError, UsageError
from mlserve.optimize.specs import InputSpec


def make_feeds(specs: list[InputSpec], *, batch: int | None, seed: int) -> dict[str, Any]:
    """Random inputs shaped by ``specs``: floats ~ N(0, 1), integers in [0, 10), booleans fair coins."""
    import numpy as np

    rng = np.random.default_rng(seed)
    feeds: dict[str, Any] = {}
    for spec in specs:
        shape = spec.concrete_shape(batch)
        dtype = np.dtype(spec.dtype)
        if dtype.kind == "f":
            feeds[spec.name] = rng.standard_normal(shape).astype(dtype)
        elif dtype.kind in "iu":
            feeds[spec.name] = rng.integers(0, 10, size=shape).astype(dtype)
        elif dtype.kind == "b":
            feeds[spec.name] = rng.integers(0, 2, size=shape).astype(bool)
        else:
            raise UsageError(f"input {spec.name!r} has dtype {spec.dtype}, which random inputs cannot be made for")
    return feeds


def load_user_data(path: Path, specs: list[InputSpec], *, batch: int = 8) -> list[dict[str, Any]]:
    """Split a .npz (one array per input name) or .npy (the only input) file into feeds of ``batch`` rows.

    The first axis of every array is the sample axis. With a dynamic batch the last feed holds the
    rows left over (every row is used); a model with a pinned batch gets feeds of exactly that batch,
    and leftover rows are dropped.
    """
    import numpy as np

    if not path.is_file():
        raise NotFoundError(f"data file {path} does not exist")
    try:
        loaded = np.load(path, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - numpy raises several kinds for bad files
        raise UsageError(f"cannot read {path.name} as .npy/.npz: {exc}") from None
    if isinstance(loaded, np.ndarray):
        if len(specs) != 1:
            raise UsageError(f"{path.name} is a single array but the model has {len(specs)} inputs", hint="use an .npz with one array per input name")
        arrays = {specs[0].name: loaded}
    else:
        arrays = {key: loaded[key] for key in loaded.files}
        missing = [s.name for s in specs if s.name not in arrays]
        if missing:
            raise UsageError(f"{path.name} has no array for inputs {missing}", hint=f"its arrays: {sorted(arrays)}")
    rows = {len(arrays[s.name]) for s in specs}
    if len(rows) != 1:
        raise UsageError(f"arrays in {path.name} have different numbers of rows: {sorted(rows)}")
    total = rows.pop()
    pinned = False
    for spec in specs:
        if not spec.dynamic_batch and spec.shape and spec.shape[0]:
            batch, pinned = spec.shape[0], True
    if pinned:
        starts = range(0, total - batch + 1 if total >= batch else 1, batch)
    else:
        starts = range(0, total, batch)
    feeds = []
    for start in starts:
        chunk = {s.name: np.ascontiguousarray(arrays[s.name][start : start + batch]).astype(s.dtype) for s in specs}
        for spec in specs:
            expected = spec.concrete_shape(len(chunk[spec.name]))[1:]
            if list(chunk[spec.name].shape[1:]) != expected:
                raise UsageError(
                    f"array {spec.name!r} in {path.name} has rows of shape {list(chunk[spec.name].shape[1:])}, the model expects {expected}"
                )
        feeds.append(chunk)
    if not feeds:
        raise UsageError(f"{path.name} holds no rows")
    return feeds
