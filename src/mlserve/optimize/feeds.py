"""User data files (.npz/.npy) as ONNX-style feeds (name -> numpy array); seeded example data is ``mlserve.inputs.make_feeds``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlserve.errors import NotFoundError, UsageError
from mlserve.inputs import InputSpec, make_feeds

__all__ = ["load_user_data", "make_feeds"]


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
        if len([s for s in specs if not s.python_arg]) != 1:
            raise UsageError(f"{path.name} is a single array but the model has {len(specs)} inputs", hint="use an .npz with one array per input name")
        arrays = {next(s.name for s in specs if not s.python_arg): loaded}
    else:
        arrays = {key: loaded[key] for key in loaded.files}
        missing = [s.name for s in specs if s.name not in arrays and not s.python_arg and s.value is None]
        if missing:
            raise UsageError(f"{path.name} has no array for inputs {missing}", hint=f"its arrays: {sorted(arrays)}")
    filled = [s for s in specs if not s.python_arg and s.name not in arrays]  # fixed values (--input NAME=VALUE)
    tensors = [s for s in specs if not s.python_arg and s.name in arrays]
    for spec in tensors:
        arrays[spec.name] = np.asarray(arrays[spec.name])
    # a 0-d array (a scalar such as a sample rate) is the same for every row; the others are split by rows
    scalars = {s.name for s in tensors if arrays[s.name].ndim == 0}
    for spec in tensors:
        if spec.name in scalars and spec.shape:
            raise UsageError(f"array {spec.name!r} in {path.name} is a scalar (0-d), but the model's input has rank {len(spec.shape)}")
    rows = {len(arrays[s.name]) for s in tensors if s.name not in scalars}
    if len(rows) > 1:
        raise UsageError(f"arrays in {path.name} have different numbers of rows: {sorted(rows)}")
    if not rows:  # every input is a scalar: one feed
        return [{**{s.name: np.asarray(arrays[s.name]).astype(s.dtype) for s in tensors},
                 **{s.name: np.full(s.concrete_shape(None), s.value, dtype=s.dtype) for s in filled}}]
    total = rows.pop()
    pinned = False
    for spec in tensors:
        if spec.name not in scalars and not spec.dynamic_batch and spec.shape and spec.shape[0]:
            batch, pinned = spec.shape[0], True
    if pinned:
        starts = range(0, total - batch + 1 if total >= batch else 1, batch)
    else:
        starts = range(0, total, batch)
    feeds = []
    for start in starts:
        chunk = {}
        for spec in tensors:
            if spec.name in scalars:
                chunk[spec.name] = arrays[spec.name].astype(spec.dtype)
            else:
                chunk[spec.name] = np.ascontiguousarray(arrays[spec.name][start : start + batch]).astype(spec.dtype)
        count = len(next(chunk[s.name] for s in tensors if s.name not in scalars))
        for spec in filled:
            chunk[spec.name] = np.full(spec.concrete_shape(count), spec.value, dtype=spec.dtype)
        for spec in tensors:
            if spec.name in scalars:
                continue
            expected = spec.concrete_shape(len(chunk[spec.name]))[1:]
            if list(chunk[spec.name].shape[1:]) != expected:
                raise UsageError(
                    f"array {spec.name!r} in {path.name} has rows of shape {list(chunk[spec.name].shape[1:])}, the model expects {expected}"
                )
        feeds.append(chunk)
    if not feeds:
        raise UsageError(f"{path.name} holds no rows")
    return feeds
