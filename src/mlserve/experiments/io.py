"""Reading tables of exposures and outcomes: CSV, JSON lines, or Parquet (``mlserve[parquet]``).

Only the columns an analysis needs are kept, each as a list of raw values (strings from CSV; JSON
and Parquet values as stored), with where each row came from, so that an error can name the file
and the line. The format comes from the suffix (``.csv``, ``.tsv``, ``.jsonl``/``.ndjson``/``.json``,
``.parquet``/``.pq``) unless given.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from mlserve.errors import MissingDependencyError, NotFoundError, UsageError

FORMATS = ("csv", "tsv", "jsonl", "parquet")
SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl",
            ".parquet": "parquet", ".pq": "parquet"}


@dataclass
class Table:
    path: Path
    format: str
    names: list[str]
    """Every column the file has."""
    columns: dict[str, list[Any]]
    """The columns asked for (those the file has), one raw value a row (None where a row has none)."""
    rows: list[int]
    """Line number (text formats) or 1-based row number (Parquet) of each row."""

    def __len__(self) -> int:
        return len(self.rows)

    def where(self, i: int) -> str:
        unit = "row" if self.format == "parquet" else "line"
        return f"{self.path.name} {unit} {self.rows[i]}"


def detect_format(path: Path, fmt: str | None = None) -> str:
    if fmt is not None:
        if fmt not in FORMATS:
            raise UsageError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
        return fmt
    found = SUFFIXES.get(path.suffix.lower())
    if found is None:
        raise UsageError(f"cannot tell the format of {path} from its suffix",
                         hint=f"name it .csv, .tsv, .jsonl or .parquet, or pass --format ({', '.join(FORMATS)})")
    return found


def _open(path: Path) -> Any:
    if not path.exists():
        raise NotFoundError(f"{path} does not exist")
    if path.is_dir():
        raise UsageError(f"{path} is a directory, not a file")
    return path.open("r", encoding="utf-8-sig", newline="")


def _read_csv(path: Path, wanted: Sequence[str], delimiter: str) -> Table:
    with _open(path) as handle:
        reader = csv.reader(handle, delimiter=delimiter)
        try:
            header = next(reader)
        except StopIteration:
            raise UsageError(f"{path} is empty: a header line with the column names comes first") from None
        except (csv.Error, UnicodeDecodeError) as exc:
            raise UsageError(f"{path} line 1 is not readable as {'TSV' if delimiter == chr(9) else 'CSV'}: {exc}") from None
        header = [h.strip() for h in header]
        seen: set[str] = set()
        for name in header:
            if name in seen:
                raise UsageError(f"{path} has two columns named {name!r}")
            seen.add(name)
        index = {name: i for i, name in enumerate(header)}
        keep = [(name, index[name]) for name in dict.fromkeys(wanted) if name in index]
        columns: dict[str, list[Any]] = {name: [] for name, _ in keep}
        rows: list[int] = []
        try:
            for record in reader:
                if not record or (len(record) == 1 and not record[0].strip()):
                    continue  # a blank line
                if len(record) != len(header):
                    raise UsageError(f"{path} line {reader.line_num} has {len(record)} fields, the header has {len(header)}")
                for name, i in keep:
                    columns[name].append(record[i])
                rows.append(reader.line_num)
        except (csv.Error, UnicodeDecodeError) as exc:
            raise UsageError(f"{path} line {reader.line_num} is not readable: {exc}") from None
    return Table(path, "tsv" if delimiter == "\t" else "csv", header, columns, rows)


def json_objects(lines: Any, label: str) -> Any:
    """``(line number, object)`` for each non-blank line of a JSON-lines file; a line that is not a JSON object
    is a usage error that says where (``label line N``)."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UsageError(f"{label} line {number} is not valid JSON: {exc.msg}") from None
        if not isinstance(obj, dict):
            raise UsageError(f"{label} line {number} is not a JSON object")
        yield number, obj


def _read_jsonl(path: Path, wanted: Sequence[str]) -> Table:
    wanted = list(dict.fromkeys(wanted))
    columns: dict[str, list[Any]] = {name: [] for name in wanted}
    names: dict[str, None] = {}
    rows: list[int] = []
    with _open(path) as handle:
        try:
            for number, obj in json_objects(handle, str(path)):
                for name in obj:
                    names.setdefault(name)
                for name in wanted:
                    columns[name].append(obj.get(name))
                rows.append(number)
        except UnicodeDecodeError as exc:
            raise UsageError(f"{path} is not UTF-8 text: {exc}") from None
    found = {name: values for name, values in columns.items() if name in names}
    return Table(path, "jsonl", list(names), found, rows)


def _read_parquet(path: Path, wanted: Sequence[str]) -> Table:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise MissingDependencyError(f"pyarrow is needed to read {path.name} but cannot be imported: {exc}",
                                     hint="install it with: pip install 'mlserve[parquet]'") from exc
    if not path.exists():
        raise NotFoundError(f"{path} does not exist")
    try:
        schema = pq.read_schema(path)
        names = list(schema.names)
        keep = [name for name in dict.fromkeys(wanted) if name in names]
        table = pq.read_table(path, columns=keep)
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        raise UsageError(f"{path} is not a readable Parquet file: {exc}") from None
    columns = {name: table.column(name).to_pylist() for name in keep}
    return Table(path, "parquet", names, columns, list(range(1, table.num_rows + 1)))


def read_table(path: Path, wanted: Sequence[str], fmt: str | None = None) -> Table:
    """Read ``wanted`` columns of ``path`` (a missing column is not an error here: see :func:`require_columns`)."""
    kind = detect_format(path, fmt)
    if kind == "parquet":
        return _read_parquet(path, wanted)
    if kind == "jsonl":
        return _read_jsonl(path, wanted)
    return _read_csv(path, wanted, "\t" if kind == "tsv" else ",")


def require_columns(table: Table, needed: Sequence[tuple[str, str]]) -> None:
    """Raise a usage error naming the first missing column and what it was for (``(column, role)`` pairs)."""
    for column, role in needed:
        if column not in table.columns:
            have = ", ".join(table.names[:20]) + (" ..." if len(table.names) > 20 else "")
            raise UsageError(f"{table.path} has no column {column!r} ({role}); its columns: {have or 'none'}")
