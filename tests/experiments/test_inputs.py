"""File formats, the assignment log (v1) joined with outcomes, and keys that must be counted once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from experiments.abdata import ab_columns, write_table
from mlserve.errors import MissingDependencyError, NotFoundError, UsageError
from mlserve.experiments import analyze_experiment, assignment_line, hash_key

SPLIT = "control=50,treatment=50"
T0 = datetime(2026, 5, 4, 9, 30, tzinfo=timezone.utc)


@pytest.mark.parametrize("suffix", [".tsv", ".jsonl", ".parquet"])
def test_every_format_gives_the_same_analysis(tmp_path: Path, suffix: str) -> None:
    columns = ab_columns(seed=6, n=1500)
    reference = analyze_experiment(write_table(tmp_path / "e.csv", columns), ["converted", "revenue"], split=SPLIT,
                                   covariates=["revenue=revenue_before"])
    other = analyze_experiment(write_table(tmp_path / f"e{suffix}", columns), ["converted", "revenue"], split=SPLIT,
                               covariates=["revenue=revenue_before"])
    assert other.comparisons == reference.comparisons
    assert other.sample_ratio == reference.sample_ratio


def test_format_option_overrides_the_suffix(tmp_path: Path) -> None:
    columns = ab_columns(seed=6, n=300)
    path = write_table(tmp_path / "e.jsonl", columns).rename(tmp_path / "events.data")
    assert analyze_experiment(path, ["converted"], split=SPLIT, format="jsonl").exposures == 300
    with pytest.raises(UsageError, match="cannot tell the format"):
        analyze_experiment(path, ["converted"], split=SPLIT)


def test_parquet_without_pyarrow_names_the_extra(tmp_path: Path) -> None:
    """A fresh interpreter where pyarrow cannot be imported (a None entry in sys.modules blocks it)."""
    path = write_table(tmp_path / "e.parquet", ab_columns(seed=1, n=50))
    code = ("import sys; sys.modules['pyarrow'] = None; sys.modules['pyarrow.parquet'] = None\n"
            "from mlserve.experiments import analyze_experiment\n"
            "from mlserve.errors import MissingDependencyError\n"
            f"try:\n    analyze_experiment({str(path)!r}, ['converted'])\n"
            "except MissingDependencyError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "pip install 'mlserve[parquet]'" in out.stdout, out.stderr
    assert MissingDependencyError.exit_code == 7


def test_key_hash_is_stable_across_processes() -> None:
    """The documented function, checked against a fixed digest and in interpreters with other hash seeds."""
    assert hash_key("checkout", "user-42") == "c8f80b72e351a565e8dc189fc597172523cd47de38609f8c59a8b0586a61f7f5"
    code = "from mlserve.experiments import hash_key; print(hash_key('checkout', 'user-42'))"
    for seed in ("1", "2"):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                             env={**os.environ, "PYTHONHASHSEED": seed})
        assert out.stdout.strip() == hash_key("checkout", "user-42")


def test_assignment_line_is_version_1_json() -> None:
    record = json.loads(assignment_line("checkout", "user-42", "treatment", T0 + timedelta(microseconds=123456)))
    assert record == {"v": 1, "time": "2026-05-04T09:30:00.123Z", "experiment": "checkout",
                      "key_hash": hash_key("checkout", "user-42"), "variant": "treatment"}


def _log(path: Path, rows: list[tuple[str, str, str]], start: datetime = T0) -> Path:
    with path.open("w") as handle:
        for i, (experiment, key, variant) in enumerate(rows):
            handle.write(assignment_line(experiment, key, variant, start + timedelta(seconds=i)) + "\n")
    return path


def _experiment(tmp_path: Path, n: int = 600, repeats: int = 3) -> tuple[Path, dict]:
    columns = ab_columns(seed=12, n=n)
    rows = []
    for r in range(repeats):  # every key is logged on each of its requests
        rows += [("checkout", k, v) for k, v in zip(columns["key"], columns["variant"])]
    rows += [("other", "x1", "a"), ("other", "x2", "b")]
    return _log(tmp_path / "assignments.jsonl", rows), columns


def test_log_joined_with_raw_keys_equals_the_events_file(tmp_path: Path) -> None:
    log, columns = _experiment(tmp_path)
    outcomes = write_table(tmp_path / "outcomes.csv", {k: v for k, v in columns.items() if k != "variant"})
    joined = analyze_experiment(log, ["converted", "revenue"], outcomes=outcomes, experiment="checkout", split=SPLIT)
    direct = analyze_experiment(write_table(tmp_path / "events.csv", columns), ["converted", "revenue"], split=SPLIT)
    assert joined.exposures == 600  # each key once, though logged three times
    assert joined.comparisons == direct.comparisons
    assert joined.experiment == "checkout"
    assert joined.first_exposure == "2026-05-04T09:30:00.000Z"


def test_log_joined_on_key_hash(tmp_path: Path) -> None:
    log, columns = _experiment(tmp_path)
    hashed = {"key_hash": [hash_key("checkout", k) for k in columns["key"]], "converted": columns["converted"]}
    outcomes = write_table(tmp_path / "outcomes.jsonl", hashed)
    r = analyze_experiment(log, ["converted"], outcomes=outcomes, experiment="checkout", split=SPLIT)
    direct = analyze_experiment(write_table(tmp_path / "events.csv", columns), ["converted"], split=SPLIT)
    assert r.comparisons == direct.comparisons


def test_log_needs_the_experiment_when_it_holds_several(tmp_path: Path) -> None:
    log, columns = _experiment(tmp_path)
    outcomes = write_table(tmp_path / "outcomes.csv", {"key": columns["key"], "converted": columns["converted"]})
    with pytest.raises(UsageError, match="holds 2 experiments"):
        analyze_experiment(log, ["converted"], outcomes=outcomes)
    with pytest.raises(UsageError, match="no records of experiment 'nope'"):
        analyze_experiment(log, ["converted"], outcomes=outcomes, experiment="nope")


def test_key_in_two_variants_of_the_log_is_reported_never_counted(tmp_path: Path) -> None:
    log, columns = _experiment(tmp_path, repeats=1)
    with log.open("a") as handle:
        other = "control" if columns["variant"][0] == "treatment" else "treatment"
        handle.write(assignment_line("checkout", columns["key"][0], other, T0 + timedelta(hours=1)) + "\n")
    outcomes = write_table(tmp_path / "outcomes.csv", {"key": columns["key"], "converted": columns["converted"]})
    with pytest.raises(UsageError, match="is exposed to 2 variants"):
        analyze_experiment(log, ["converted"], outcomes=outcomes, experiment="checkout", split=SPLIT)
    r = analyze_experiment(log, ["converted"], outcomes=outcomes, experiment="checkout", split=SPLIT,
                           drop_duplicate_keys=True)
    assert r.exposures == 599 and r.excluded_keys == 1
    assert any("left out" in w for w in r.warnings)


def test_exposed_keys_without_outcomes(tmp_path: Path) -> None:
    log, columns = _experiment(tmp_path, repeats=1)
    kept = [i for i, c in enumerate(columns["converted"]) if c == 1]  # an outcomes file listing conversions only
    outcomes = write_table(tmp_path / "outcomes.csv", {"key": [columns["key"][i] for i in kept] + ["stranger"],
                                                        "converted": [1] * len(kept) + [1]})
    with pytest.raises(UsageError, match=r"no row in outcomes.csv"):
        analyze_experiment(log, ["converted"], outcomes=outcomes, experiment="checkout", split=SPLIT)
    r = analyze_experiment(log, ["converted"], outcomes=outcomes, experiment="checkout", split=SPLIT,
                           missing_outcomes="zero")
    direct = analyze_experiment(write_table(tmp_path / "events.csv", columns), ["converted"], split=SPLIT)
    assert r.comparisons == direct.comparisons
    assert r.unmatched_outcomes == 1 and any("never exposed" in w for w in r.warnings)


@pytest.mark.parametrize("line, message", [
    ('{"v": 2, "time": "2026-05-04T09:30:00Z", "experiment": "e", "key_hash": "%s", "variant": "a"}', "version 2"),
    ('{"time": "2026-05-04T09:30:00Z", "experiment": "e", "key_hash": "%s", "variant": "a"}', "'v' must be 1"),
    ('{"v": 1, "time": "2026-05-04T09:30:00Z", "experiment": "e", "key_hash": "abc", "variant": "a"}', "64 lowercase hex"),
    ('{"v": 1, "time": "2026-05-04 09:30", "experiment": "e", "key_hash": "%s", "variant": "a"}', "no time zone"),
    ('{"v": 1, "experiment": "e", "key_hash": "%s", "variant": "a"}', "no 'time' field"),
    ('{"v": 1, "time": "2026-05-04T09:30:00Z", "experiment": "e", "key_hash": "%s", "variant": ""}', "'variant'"),
    ("not json", "not valid JSON"),
])
def test_malformed_log_lines_are_named(tmp_path: Path, line: str, message: str) -> None:
    log = tmp_path / "log.jsonl"
    good = assignment_line("e", "k0", "a", T0)
    log.write_text(good + "\n" + (line % hash_key("e", "k1") if "%s" in line else line) + "\n")
    outcomes = write_table(tmp_path / "o.csv", {"key": ["k0", "k1"], "y": [1, 0]})
    with pytest.raises(UsageError, match=message) as info:
        analyze_experiment(log, ["y"], outcomes=outcomes)
    assert "log.jsonl line 2" in str(info.value)


def test_an_assignment_log_given_as_events_gets_a_hint(tmp_path: Path) -> None:
    log, _ = _experiment(tmp_path, n=20, repeats=1)
    with pytest.raises(UsageError, match="looks like an assignment log") as info:
        analyze_experiment(log, ["converted"])
    assert "--outcomes" in str(info.value)


def test_missing_file_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError):
        analyze_experiment(tmp_path / "absent.csv", ["converted"])


def test_plot_without_matplotlib_names_the_extra(tmp_path: Path) -> None:
    path = write_table(tmp_path / "e.csv", ab_columns(seed=1, n=50))
    code = ("import sys; sys.modules['matplotlib'] = None\n"
            "from mlserve.experiments import analyze_experiment\n"
            "from mlserve.errors import MissingDependencyError\n"
            f"try:\n    analyze_experiment({str(path)!r}, ['converted'], plot={str(tmp_path / 'p.png')!r})\n"
            "except MissingDependencyError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "pip install 'mlserve[plot]'" in out.stdout, out.stderr
    assert not (tmp_path / "p.png").exists()
