"""`mlserve benchmark` end to end: real ONNX Runtime / torch sessions with tiny iteration counts."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from mlserve import exitcodes
from mlserve.benchmark.backends import backend_available

STATS_KEYS = {"count", "min_ms", "mean_ms", "median_ms", "p90_ms", "p95_ms", "p99_ms", "p999_ms", "max_ms", "std_ms", "cv",
              "throughput_per_s", "wall_s"}


def test_json_document_of_one_model(cli, tiny_onnx: Path, quick) -> None:
    result, doc = cli.json("benchmark", tiny_onnx, *quick, "--threads", "1")
    assert result.exit_code == 0
    assert doc["kind"] == "benchmark" and doc["schema_version"] == 1
    report = doc["result"]
    assert set(report) >= {"fingerprint", "config", "seed", "inputs", "results", "skipped", "gate", "failures", "warnings"}
    assert report["inputs"] == {"x": {"shape": [1, 256], "dtype": "float32"}}
    assert report["config"]["min_iterations"] == 5 and report["config"]["min_seconds"] == 0.05
    assert report["failures"] == [] and report["gate"] is None
    (row,) = report["results"]
    assert set(row["stats"]) == STATS_KEYS  # raw samples stay out of the document
    assert row["label"] == "tiny.onnx (ort-cpu b1 c1)"
    assert (row["backend"], row["provider"], row["threads"], row["batch_size"], row["concurrency"]) == (
        "ort-cpu", "CPUExecutionProvider", 1, 1, 1)
    assert row["role"] == "candidate" and row["vs_first"] is None
    stats = row["stats"]
    assert stats["count"] >= 5
    assert 0 < stats["min_ms"] <= stats["median_ms"] <= stats["p99_ms"] <= stats["max_ms"]
    assert row["items_per_s"] == pytest.approx(stats["throughput_per_s"])
    assert isinstance(row["stable"], bool) and len(row["stability"]["windows"]) == 3
    fp = report["fingerprint"]
    assert fp["cpu_model"] and fp["logical_cores"] >= 1
    assert "CPUExecutionProvider" in fp["execution_providers"]
    assert "onnxruntime" in fp["packages"] and "numpy" in fp["packages"]


def test_table_for_people(cli, tiny_onnx: Path, quick) -> None:
    from mlserve.optimize.timing import usable_cores

    result = cli("benchmark", tiny_onnx, *quick)
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    # stdout is not a terminal: print_table's plain form, a title line then tab-separated rows
    assert lines[0].startswith("# benchmark on ")
    assert any(line.startswith("tiny.onnx (ort-cpu b1 c1)\t") for line in lines)
    # the thread count is always explicit now: the usable cores unless --threads says otherwise
    assert f"inputs: x float32[1x256]; seed 0; threads {usable_cores()}" in lines


def test_models_backends_batches_and_concurrency(cli, tiny_onnx: Path, matmul_onnx, linear_torchscript: Path, tmp_path: Path, quick) -> None:
    out = tmp_path / "runs.csv"
    result, doc = cli.json("benchmark", tiny_onnx, matmul_onnx[0], linear_torchscript, "--backend", "ort-cpu,torch",
                           "--batch-size", "1,4", "--concurrency", "1,2", "--csv", out, *quick)
    assert result.exit_code == 0
    rows = doc["result"]["results"]
    assert [(Path(r["model"]).name, r["backend"], r["batch_size"], r["concurrency"]) for r in rows] == [
        (model, backend, b, c)
        for model, backend in (("tiny.onnx", "ort-cpu"), ("matmul.onnx", "ort-cpu"), ("linear.pt", "torch"))
        for b in (1, 4) for c in (1, 2)
    ]
    # every run after the first of its (batch, concurrency) group is compared with that first run
    for row in rows[:4]:
        assert row["vs_first"] is None
    for row in rows[4:]:
        assert row["baseline"] == f"tiny.onnx (ort-cpu b{row['batch_size']} c{row['concurrency']})"
        vs = row["vs_first"]
        assert vs["ci_low"] <= vs["ratio"] <= vs["ci_high"] and vs["confidence"] == 0.95
        first = rows[rows.index(row) % 4]
        if row["concurrency"] == 1:  # measured with its group in interleaved rounds: the median of per-round ratios
            ratios = [b / a for a, b in zip(first["rounds_ms"], row["rounds_ms"])]
            assert len(ratios) == 10 and vs["method"] == "interleaved-rounds"
            assert vs["ratio"] == pytest.approx(float(np.median(ratios)))
        else:  # concurrent runs are measured one after the other: ratio of medians
            assert vs["method"] == "medians" and not row["rounds_ms"]
            assert vs["ratio"] == pytest.approx(row["stats"]["median_ms"] / first["stats"]["median_ms"])
    assert {(s["backend"], s["why"]) for s in doc["result"]["skipped"]} == {("torch", "not-applicable"), ("ort-cpu", "not-applicable")}
    assert [r["items_per_s"] for r in rows if r["batch_size"] == 4] == pytest.approx(
        [4 * r["stats"]["throughput_per_s"] for r in rows if r["batch_size"] == 4])
    with out.open() as fh:
        lines = list(csv.DictReader(fh))
    assert [line["label"] for line in lines] == [r["label"] for r in rows]
    assert float(lines[5]["median_ms"]) == pytest.approx(rows[5]["stats"]["median_ms"])
    assert lines[0]["ratio_vs_first"] == "" and float(lines[5]["ratio_vs_first"]) == pytest.approx(rows[5]["vs_first"]["ratio"])


def test_identical_inputs_across_backends_give_identical_figures_shape(cli, matmul_onnx, linear_exported: Path, quick) -> None:
    """The torch file has no declared inputs: it borrows the ONNX model's, at every batch size."""
    result, doc = cli.json("benchmark", matmul_onnx[0], linear_exported, "-b", "ort-cpu,torch", "--batch-size", "3", *quick)
    assert result.exit_code == 0
    assert [(r["backend"], r["batch_size"]) for r in doc["result"]["results"]] == [("ort-cpu", 3), ("torch", 3)]
    assert doc["result"]["inputs"] == {"x": {"shape": [3, 256], "dtype": "float32"}}


def test_torch_compile_backend(cli, linear_exported: Path, quick) -> None:
    result, doc = cli.json("benchmark", linear_exported, "-b", "torch,torch-compile", "--input", "x:2x256", *quick)
    assert result.exit_code == 0
    rows = doc["result"]["results"]
    assert [r["backend"] for r in rows] == ["torch", "torch-compile"]
    assert rows[1]["vs_first"]["ratio"] > 0


def test_gate_fails_when_the_candidate_is_much_slower(cli, tiny_onnx: Path, slow_onnx: Path, quick) -> None:
    result = cli("benchmark", slow_onnx, "--fail-if-slower-than", f"{tiny_onnx}:50", "--json", *quick)
    assert result.exit_code == exitcodes.GATE_FAILED
    doc = json.loads(result.stdout)  # one document, with the gate's figures
    gate = doc["result"]["gate"]
    assert gate["passed"] is False and gate["max_slowdown_pct"] == 50
    (check,) = gate["checks"]
    assert check["source"] == "measured" and check["passed"] is False and check["limit"] == 1.5
    assert check["ratio"] > 5
    assert [r["role"] for r in doc["result"]["results"]] == ["candidate", "reference"]
    assert doc["result"]["results"][1]["label"] == "reference tiny.onnx (ort-cpu b1 c1)"
    assert result.stderr.startswith("error: slow.onnx (ort-cpu b1 c1) is +")
    assert "limit +50%" in result.stderr


def test_gate_passes_when_the_candidate_is_much_faster(cli, tiny_onnx: Path, slow_onnx: Path, quick) -> None:
    result = cli("benchmark", tiny_onnx, "--fail-if-slower-than", f"{slow_onnx}:50", *quick)
    assert result.exit_code == 0, result.stderr
    assert f"gate --fail-if-slower-than {slow_onnx}:50: passed" in result.stdout


def test_gate_failure_in_table_mode(cli, tiny_onnx: Path, slow_onnx: Path, quick) -> None:
    result = cli("benchmark", slow_onnx, "--fail-if-slower-than", f"{tiny_onnx}:50", "--batch-size", "1,2", *quick)
    assert result.exit_code == exitcodes.GATE_FAILED
    assert f"gate --fail-if-slower-than {tiny_onnx}:50: FAILED" in result.stdout
    assert result.stdout.count("TOO SLOW") == 2
    error = result.stderr.splitlines()[-1]  # after any warnings
    assert error.startswith("error: slow.onnx (ort-cpu b1 c1) is +")
    assert error.endswith("limit +50%) (and 1 more failure in the report)")
    assert "Traceback" not in result.stderr


def test_fail_unstable(cli, tiny_onnx: Path, quick) -> None:
    # no real latency distribution has a coefficient of variation below 0.01%: always unstable
    result = cli("benchmark", tiny_onnx, *quick, "--max-cv", "0.0001", "--stability-retries", "0", "--fail-unstable", "--json")
    assert result.exit_code == exitcodes.GATE_FAILED
    doc = json.loads(result.stdout)
    (row,) = doc["result"]["results"]
    assert row["stable"] is False and row["stability"]["max_cv"] == 0.0001
    assert row["stability"]["cv"] > 0.0001
    assert doc["result"]["failures"][0].startswith("unstable measurement: tiny.onnx (ort-cpu b1 c1)")
    # without --fail-unstable the same verdict is only a warning
    result = cli("benchmark", tiny_onnx, *quick, "--max-cv", "0.0001", "--stability-retries", "0")
    assert result.exit_code == 0
    assert "warning: unstable measurement: tiny.onnx (ort-cpu b1 c1)" in result.stderr
    assert "NO" in result.stdout


def test_dynamic_dimension_needs_input_option(cli, seq_onnx: Path, quick) -> None:
    result = cli("benchmark", seq_onnx, *quick)
    assert result.exit_code == exitcodes.USAGE
    assert result.stderr.strip() == ("error: input 'x' has a dimension of unknown size at axis 1 (seq) (give its size with"
                                     " --input x:Nx<seq>x8:float32, a number in place of each <...> (N: the batch size))")
    result, doc = cli.json("benchmark", seq_onnx, "--input", "x:1x7x8:float32", *quick)
    assert result.exit_code == 0
    assert doc["result"]["inputs"] == {"x": {"shape": [1, 7, 8], "dtype": "float32"}}
    # N, as the message suggests (and as optimize --input takes it), is the batch size of each run
    result, doc = cli.json("benchmark", seq_onnx, "--input", "x:Nx7x8:float32", "--batch-size", "1,3", *quick)
    assert result.exit_code == 0
    assert [r["batch_size"] for r in doc["result"]["results"]] == [1, 3]
    assert doc["result"]["inputs"] == {"x": {"shape": [1, 7, 8], "dtype": "float32"}}


def test_input_with_n_for_the_batch_of_a_torch_file(cli, linear_exported: Path, quick) -> None:
    result, doc = cli.json("benchmark", linear_exported, "--input", "x:Nx256", "--batch-size", "2,5", *quick)
    assert result.exit_code == 0
    assert [(r["backend"], r["batch_size"]) for r in doc["result"]["results"]] == [("torch", 2), ("torch", 5)]


def _table_without_columns(monkeypatch: pytest.MonkeyPatch, *args: str):
    """The CLI as CI runs it: stdout a pipe, no COLUMNS (rich then assumes 80 columns)."""
    from typer.testing import CliRunner

    from mlserve.cli.app import app

    monkeypatch.delenv("COLUMNS", raising=False)  # set by the autouse fixture
    return CliRunner().invoke(app, [str(a) for a in args], env={"NO_COLOR": "1", "COLUMNS": None, "TERM": "dumb"})


def test_table_is_complete_outside_a_terminal(tiny_onnx: Path, slow_onnx: Path, tmp_path: Path, quick, monkeypatch) -> None:
    from mlserve.cli.benchmark import _ms

    out = tmp_path / "runs.csv"
    result = _table_without_columns(monkeypatch, "benchmark", tiny_onnx, slow_onnx, "--batch-size", "1,16", "--csv", out, *quick)
    assert result.exit_code == 0, result.stderr
    assert "…" not in result.stdout
    lines = result.stdout.splitlines()
    with out.open() as fh:
        runs = list(csv.DictReader(fh))
    for run in runs:
        latency, speed = [ln.split("\t") for ln in lines if ln.startswith(f"{run['label']}\t")]
        figures = [_ms(float(run[k])) for k in ("min_ms", "mean_ms", "median_ms", "p90_ms", "p95_ms", "p99_ms", "p999_ms", "max_ms", "std_ms")]
        assert latency[1:10] == figures
        assert speed[1] == f"{float(run['throughput_per_s']):,.1f}"


def test_table_shows_the_whole_distribution(cli, tiny_onnx: Path, quick) -> None:
    result = cli("benchmark", tiny_onnx, *quick)
    assert result.exit_code == 0, result.stderr
    header = next(line for line in result.stdout.splitlines() if line.startswith("run\tmin ms"))
    assert header.split("\t") == [
        "run", "min ms", "mean ms", "p50 ms", "p90 ms", "p95 ms", "p99 ms", "p99.9 ms", "max ms", "std ms", "cv"]
    assert "# throughput and comparison" in result.stdout and "items/s" in result.stdout


def test_tensorrt_engine_files(cli, tiny_onnx: Path, tmp_path: Path, quick) -> None:
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"not a real engine")
    result = cli("benchmark", engine, "--backend", "ort-cpu", *quick)
    assert result.exit_code == exitcodes.USAGE
    assert "no requested backend can run the given models" in result.stderr and "TensorRT engines: tensorrt" in result.stderr
    if backend_available("tensorrt")[0]:
        pytest.skip("TensorRT and a GPU are here: a real engine is exercised by the GPU checks")
    for path in (engine, engine.with_suffix(".plan")):
        path.write_bytes(b"not a real engine")
        result = cli("benchmark", path, *quick)
        assert result.exit_code == exitcodes.MISSING_DEPENDENCY, result.stderr
        assert result.stderr.startswith("error: none of the requested backends can run here (tensorrt: ")


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["missing.onnx"], exitcodes.NOT_FOUND, "error: model file not found: missing.onnx"),
        (["{tiny}", "--backend", "onnx-gpu"], exitcodes.USAGE, "error: unknown backend 'onnx-gpu': choose from ort-cpu, ort-cuda"),
        (["{tiny}", "--batch-size", "1,x"], exitcodes.USAGE, "error: bad --batch-size '1,x': give positive integers"),
        (["{tiny}", "--batch-size", "0"], exitcodes.USAGE, "error: bad --batch-size '0'"),
        (["{tiny}", "--concurrency", "-1"], exitcodes.USAGE, "error: bad --concurrency '-1'"),
        (["{tiny}", "--input", "x:1x256:complex"], exitcodes.USAGE, "error: bad --input 'x:1x256:complex': 'complex' is neither dimensions, a dtype nor a range"),
        (["{tiny}", "--fail-if-slower-than", "fast"], exitcodes.USAGE, "error: bad --fail-if-slower-than 'fast': expected REF:PCT"),
        (["{tiny}", "--fail-if-slower-than", "other.onnx:5"], exitcodes.NOT_FOUND, "error: model file not found: other.onnx"),
        (["{tiny}", "--csv", "/nonexistent-dir/x.csv"], exitcodes.NOT_FOUND, "error: cannot write /nonexistent-dir/x.csv"),
        (["{pt}"], exitcodes.USAGE, "error: {pt} does not declare its inputs: describe them with --input"),
        (["{tiny}", "--backend", "torch"], exitcodes.USAGE, "error: no requested backend can run the given models"),
        (["{notmodel}"], exitcodes.USAGE, "error: {notmodel}: cannot tell the model format"),
    ],
)
def test_bad_input_is_one_clear_line(cli, tiny_onnx: Path, linear_torchscript: Path, tmp_path: Path, args, code, message) -> None:
    notmodel = tmp_path / "notes.txt"
    notmodel.write_text("hello")
    subst = {"tiny": str(tiny_onnx), "pt": str(linear_torchscript), "notmodel": str(notmodel)}
    result = cli("benchmark", *[a.format(**subst) for a in args], "--iterations", "1", "--duration", "0", "--warmup", "0")
    assert result.exit_code == code, result.stderr
    assert result.stderr.startswith(message.format(**subst)), result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1


def test_bad_input_under_json_is_an_error_document(cli) -> None:
    result = cli("benchmark", "missing.onnx", "--json")
    assert result.exit_code == exitcodes.NOT_FOUND
    doc = json.loads(result.stdout)
    assert doc["kind"] == "error" and doc["error"]["code"] == "not_found"


def test_cuda_backend_without_a_gpu_exits_7(cli, tiny_onnx: Path, quick) -> None:
    if backend_available("ort-cuda")[0]:
        pytest.skip("CUDA is available here")
    result = cli("benchmark", tiny_onnx, "--backend", "ort-cuda", *quick)
    assert result.exit_code == exitcodes.MISSING_DEPENDENCY
    assert result.stderr.startswith("error: none of the requested backends can run here (ort-cuda: onnxruntime has no CUDAExecutionProvider")
    # asked together with a CPU backend, the GPU one is skipped with a warning and reported
    result, doc = cli.json("benchmark", tiny_onnx, "--backend", "ort-cpu,ort-cuda", *quick)
    assert result.exit_code == 0
    assert [r["backend"] for r in doc["result"]["results"]] == ["ort-cpu"]
    assert doc["result"]["skipped"][0]["backend"] == "ort-cuda" and doc["result"]["skipped"][0]["why"] == "unavailable"
    assert doc["result"]["warnings"][0].startswith("skipped ort-cuda for ")


def test_plot(cli, tiny_onnx: Path, matmul_onnx, tmp_path: Path, quick) -> None:
    png = tmp_path / "latency.png"
    result = cli("benchmark", tiny_onnx, matmul_onnx[0], "--plot", png, *quick)
    if importlib.util.find_spec("matplotlib") is None:
        assert result.exit_code == exitcodes.MISSING_DEPENDENCY
        assert "pip install 'mlserve[plot]'" in result.stderr
        assert not png.exists()
    else:
        assert result.exit_code == 0, result.stderr
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"plot: {png}" in result.stdout



def test_a_reference_that_cannot_run_here_is_not_a_gate_verdict(cli, tiny_onnx: Path, tmp_path: Path, quick) -> None:
    if backend_available("tensorrt")[0]:
        pytest.skip("TensorRT and a GPU are here")
    engine = tmp_path / "ref.engine"
    engine.write_bytes(b"not a real engine")
    result = cli("benchmark", tiny_onnx, "--fail-if-slower-than", f"{engine}:10", *quick)
    assert result.exit_code == exitcodes.MISSING_DEPENDENCY, result.stderr
    assert result.stderr.startswith(f"error: --fail-if-slower-than {engine}: the reference cannot be measured here for"
                                    " tiny.onnx (ort-cpu b1 c1) (tensorrt: ")
