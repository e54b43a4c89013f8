"""``mlserve ab plan`` and ``mlserve ab analyze`` through the CLI: output, exit codes, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from experiments.abdata import ab_columns, write_table
from experiments.test_analyze import counts_table

SPLIT = "control=50,treatment=50"


def _one_error_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    return lines[0]


def test_plan_prints_sizes_and_duration(cli) -> None:
    result = cli("ab", "plan", "--baseline-rate", "0.1", "--mde-relative", "0.05", "--daily-traffic", "20000")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert "variant\tshare\tunits" in lines
    assert "control\t50.00%\t57763" in lines and "treatment\t50.00%\t57763" in lines
    assert "total: 115,526 units; 6 day(s) at 20,000 units a day" in lines


def test_plan_json(cli) -> None:
    _, doc = cli.json("ab", "plan", "--baseline-mean", "42.5", "--std", "30", "--mde", "1.5", "--variants", "3")
    assert doc["kind"] == "ab-plan" and doc["schema_version"] == 1
    plan = doc["result"]
    assert plan["metric"] == "continuous" and plan["comparisons"] == 2
    assert [v["name"] for v in plan["variants"]] == ["control", "treatment-1", "treatment-2"]


@pytest.mark.parametrize("args, message", [
    (["--baseline-rate", "0.1"], "minimum detectable effect"),
    (["--baseline-rate", "0.1", "--mde", "0.01", "--correction", "holmes"], "correction"),
    (["--baseline-rate", "x", "--mde", "0.01"], "Invalid value for '--baseline-rate'"),
    (["--baseline-rate", "0.1", "--mde", "0.01", "--split", "control=50"], "at least two variants"),
])
def test_plan_bad_input_is_exit_2(cli, args: list[str], message: str) -> None:
    result = cli("ab", "plan", *args)
    assert result.exit_code == 2
    assert message in _one_error_line(result)


def test_analyze_prints_the_comparison_and_the_verdict(cli, table) -> None:
    path = table("events.csv", counts_table({"control": (1000, 10000), "treatment": (1150, 10000)}))
    result = cli("ab", "analyze", path, "--metric", "converted", "--split", SPLIT)
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    out = result.stdout
    assert "sample ratio check: passed" in out
    row = next(line for line in out.splitlines() if line.startswith("converted\ttreatment"))
    cells = row.split("\t")
    assert cells[2:5] == ["0.1", "0.115", "0.015"] and cells[7] == "+15.00%" and cells[11] == "BETTER"
    assert "verdict: SHIP treatment" in out


def test_analyze_json_document(cli, table) -> None:
    path = table("events.csv", ab_columns(seed=3, n=2000))
    _, doc = cli.json("ab", "analyze", path, "--metric", "converted", "--metric", "revenue", "--split", SPLIT,
                      "--covariate", "revenue=revenue_before", "--mde-relative", "0.02")
    assert doc["kind"] == "ab-analysis"
    r = doc["result"]
    assert [c["metric"] for c in r["comparisons"]] == ["converted", "revenue"]
    assert r["comparisons"][1]["cuped"]["covariate"] == "revenue_before"
    assert r["verdict"] in {"ship", "no difference", "inconclusive", "worse"} and r["reason"]


def test_sample_ratio_mismatch_exits_6_with_the_reason(cli, table) -> None:
    path = table("events.csv", counts_table({"control": (520, 5200), "treatment": (600, 4800)}))
    result = cli("ab", "analyze", path, "--metric", "converted", "--split", SPLIT, "--json")
    assert result.exit_code == 6
    doc = json.loads(result.stdout)
    assert doc["result"]["verdict"] == "invalid" and not doc["result"]["sample_ratio"]["passed"]
    assert "sample ratio mismatch" in _one_error_line(result)


def test_fail_unless_ship_is_a_gate(cli, table) -> None:
    path = table("events.csv", counts_table({"control": (20, 200), "treatment": (22, 200)}))
    assert cli("ab", "analyze", path, "--metric", "converted", "--split", SPLIT).exit_code == 0
    gated = cli("ab", "analyze", path, "--metric", "converted", "--split", SPLIT, "--fail-unless-ship")
    assert gated.exit_code == 6 and "verdict inconclusive" in _one_error_line(gated)


def test_plot_is_a_png(cli, table, tmp_path: Path) -> None:
    path = table("events.csv", ab_columns(seed=3, n=2000))
    png = tmp_path / "lift.png"
    result = cli("ab", "analyze", path, "--metric", "converted", "--metric", "revenue", "--split", SPLIT, "--plot", png)
    assert result.exit_code == 0, result.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    assert f"plot: {png}" in result.stdout


def _events(table, **changes) -> Path:
    columns = counts_table({"control": (10, 100), "treatment": (12, 100)})
    columns["revenue"] = [float(i % 7) for i in range(200)]
    for name, change in changes.items():
        change(columns)
    return table("events.csv", columns)


def _set(column: str, i: int, value) -> object:
    return lambda c: c[column].__setitem__(i, value)


BAD_INPUT = {
    "missing metric column": ({}, ["--metric", "revenu"], "has no column 'revenu' (metric 'revenu'); its columns: key, variant, converted, revenue"),
    "missing key column": ({}, ["--metric", "revenue", "--key", "user_id"], "has no column 'user_id'"),
    "variant not in the plan": ({"v": _set("variant", 3, "treatment-b")}, ["--metric", "revenue", "--split", SPLIT],
                                "variant 'treatment-b' (1 units) is not in the planned split"),
    "planned variant with no units": ({}, ["--metric", "revenue", "--split", "control=1,treatment=1,extra=1"],
                                      "variant 'extra' of the planned split has no units"),
    "group empty for a metric": ({"r": lambda c: c["revenue"].__setitem__(slice(100, 200), [""] * 100)},
                                 ["--metric", "revenue", "--missing-outcomes", "drop"], "has no values in variant 'treatment'"),
    "non-numeric outcome": ({"r": _set("revenue", 17, "12,5")}, ["--metric", "revenue"],
                            "events.csv line 19: metric 'revenue' has a non-numeric value '12,5'"),
    "missing outcome": ({"r": _set("revenue", 4, "")}, ["--metric", "revenue"], "events.csv line 6: metric 'revenue' has no value"),
    "key in two variants": ({"k": _set("key", 150, "control-3")}, ["--metric", "revenue"],
                            "key 'control-3' is exposed to 2 variants (control, treatment) in events.csv"),
    "key twice in one variant": ({"k": _set("key", 5, "control-3")}, ["--metric", "revenue"],
                                 "key 'control-3' has 2 rows in events.csv"),
    "binary metric that is not": ({}, ["--metric", "revenue:binary"], "declared binary but has the value"),
    "unknown metric kind": ({}, ["--metric", "revenue:ratio"], "KIND must be one of auto, binary, continuous"),
    "bad alpha": ({}, ["--metric", "revenue", "--alpha", "5"], "alpha must be between 0 and 1"),
    "bad split": ({}, ["--metric", "revenue", "--split", "control:50,treatment:50"], "expected NAME=WEIGHT"),
    "bad format": ({}, ["--metric", "revenue", "--format", "xlsx"], "format must be one of"),
    "bad policy": ({}, ["--metric", "revenue", "--missing-outcomes", "guess"], "--missing-outcomes must be one of"),
    "no control": ({"v": lambda c: c.__setitem__("variant", ["a"] * 100 + ["b"] * 100)}, ["--metric", "revenue"],
                   "no variant is called 'control'"),
    "one variant": ({"v": lambda c: c.__setitem__("variant", ["control"] * 200)}, ["--metric", "revenue"],
                    "has only one variant"),
    "experiment without outcomes": ({}, ["--metric", "revenue", "--experiment", "x"], "--experiment selects"),
}


@pytest.mark.parametrize("case", list(BAD_INPUT), ids=list(BAD_INPUT))
def test_bad_input_is_one_line_and_exit_2(cli, table, case: str) -> None:
    changes, args, message = BAD_INPUT[case]
    result = cli("ab", "analyze", _events(table, **changes), *args)
    assert result.exit_code == 2, result.output
    line = _one_error_line(result)
    assert message in line, line
    assert result.stdout == ""


def test_duplicates_can_be_left_out_and_are_counted(cli, table) -> None:
    path = _events(table, k=_set("key", 150, "control-3"))
    _, doc = cli.json("ab", "analyze", path, "--metric", "revenue", "--drop-duplicate-keys")
    assert doc["result"]["exposures"] == 198 and doc["result"]["excluded_keys"] == 1


def test_missing_file_is_exit_3(cli, tmp_path: Path) -> None:
    result = cli("ab", "analyze", tmp_path / "absent.csv", "--metric", "x")
    assert result.exit_code == 3 and "does not exist" in _one_error_line(result)


def test_real_process_exit_codes_and_no_heavy_imports_before_checks(tmp_path: Path) -> None:
    """A real ``mlserve`` process: a bad option value is exit 2 before scipy, pandas or matplotlib is imported."""
    path = write_table(tmp_path / "events.csv", ab_columns(seed=1, n=100))
    probe = ("import sys, runpy\nsys.argv = ['mlserve', *sys.argv[1:]]\n"
             "try:\n    from mlserve.cli.entry import main; main()\n"
             "except SystemExit as e:\n"
             "    heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
             "{'scipy', 'statsmodels', 'pandas', 'matplotlib', 'pyarrow'})\n"
             "    print('HEAVY', heavy, file=sys.stderr); raise\n")
    for args, code in [(["ab", "analyze", str(path), "--metric", "converted", "--alpha", "2"], 2),
                       (["ab", "analyze", str(path), "--metric", "converted", "--split", "a=1"], 2),
                       (["ab", "plan", "--baseline-rate", "2", "--mde", "0.1"], 2),
                       (["ab", "--help"], 0), (["ab", "analyze", "--help"], 0)]:
        proc = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True, timeout=120)
        assert proc.returncode == code, proc.stderr
        assert "HEAVY []" in proc.stderr, (args, proc.stderr)
    ok = subprocess.run([sys.executable, "-m", "mlserve", "ab", "analyze", str(path), "--metric", "converted",
                         "--split", SPLIT], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert "verdict:" in ok.stdout
