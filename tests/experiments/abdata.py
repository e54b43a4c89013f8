"""Test data for the experiment tests: events and outcomes tables written as real CSV, JSON lines or Parquet files."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Callable

import numpy as np

Columns = dict[str, list[Any]]


def write_table(path: Path, columns: Columns) -> Path:
    """Write ``columns`` to ``path`` in the format its suffix names."""
    names = list(columns)
    n = len(next(iter(columns.values())))
    if path.suffix in (".csv", ".tsv"):
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle, delimiter="\t" if path.suffix == ".tsv" else ",")
            writer.writerow(names)
            for i in range(n):
                writer.writerow([columns[c][i] for c in names])
    elif path.suffix == ".jsonl":
        with path.open("w") as handle:
            for i in range(n):
                handle.write(json.dumps({c: columns[c][i] for c in names if columns[c][i] is not None}) + "\n")
    elif path.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table({c: columns[c] for c in names}), path)
    else:
        raise ValueError(path)
    return path


def ab_columns(seed: int = 1, n: int = 4000, rates: tuple[float, float] = (0.10, 0.12), lift: float = 1.0,
               share: float = 0.5) -> Columns:
    """Units split control/treatment at ``share``: a conversion, a revenue with a pre-period covariate."""
    rng = np.random.default_rng(seed)
    treated = rng.random(n) >= share
    pre = rng.gamma(2.0, 10.0, n)
    converted = (rng.random(n) < np.where(treated, rates[1], rates[0])).astype(int)
    revenue = 0.8 * pre + rng.normal(0.0, 6.0, n) + np.where(treated, lift, 0.0)
    return {
        "key": [f"u{i}" for i in range(n)],
        "variant": ["treatment" if t else "control" for t in treated],
        "converted": converted.tolist(),
        "revenue": np.round(revenue, 6).tolist(),
        "revenue_before": np.round(pre, 6).tolist(),
    }
