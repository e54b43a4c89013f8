"""Issue 11 for `mlserve benchmark`: static multi-input models, explicit shapes, raw samples, the backend registry."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mlserve import exitcodes
from mlserve.benchmark import backends as bk


@pytest.fixture(scope="module")
def static_vad(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Like Silero's 16 kHz OpenVINO export: input 1x512 and state 2x1x128, every dimension fixed."""
    import onnx
    from onnx import TensorProto, helper

    nodes = [helper.make_node("ReduceMean", ["input"], ["m"], keepdims=1),
             helper.make_node("Add", ["state", "m"], ["state_out"])]
    graph = helper.make_graph(nodes, "vad", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 512]),
                                             helper.make_tensor_value_info("state", TensorProto.FLOAT, [2, 1, 128])],
                              [helper.make_tensor_value_info("state_out", TensorProto.FLOAT, [2, 1, 128])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    path = tmp_path_factory.mktemp("vad") / "vad.onnx"
    onnx.save(model, str(path))
    return path


def test_a_static_multi_input_model_is_benchmarked_as_is(cli, static_vad: Path, quick) -> None:
    result, doc = cli.json("benchmark", static_vad, *quick)
    assert result.exit_code == 0
    assert doc["result"]["inputs"] == {"input": {"shape": [1, 512], "dtype": "float32"}, "state": {"shape": [2, 1, 128], "dtype": "float32"}}
    assert doc["result"]["results"][0]["batch_size"] == 1
    # explicit shapes that match the model are accepted (they used to ask for --batch-size 2, then 1)
    result, doc = cli.json("benchmark", static_vad, "--input", "input:1x512", "--input", "state:2x1x128", *quick)
    assert result.exit_code == 0
    refused = cli("benchmark", static_vad, "--batch-size", "8", *quick)
    assert refused.exit_code == exitcodes.USAGE and "has no dynamic batch axis" in refused.stderr
    wrong = cli("benchmark", static_vad, "--input", "state:3x1x128", *quick)
    assert wrong.exit_code == exitcodes.USAGE and "has size 2 at axis 0, not 3" in wrong.stderr


def test_an_explicit_input_shape_wins(cli, seq_onnx: Path, quick) -> None:
    result, doc = cli.json("benchmark", seq_onnx, "--input", "x:3x5x8", "--batch-size", "3", *quick)
    assert result.exit_code == 0
    assert doc["result"]["inputs"]["x"]["shape"] == [3, 5, 8]


def test_raw_samples_export(cli, tiny_onnx: Path, matmul_onnx, tmp_path: Path, quick) -> None:
    out = tmp_path / "samples.csv"
    result, doc = cli.json("benchmark", tiny_onnx, matmul_onnx[0], "--samples-csv", out, "--threads", "1", *quick)
    assert result.exit_code == 0
    with out.open() as fh:
        lines = list(csv.DictReader(fh))
    for row in doc["result"]["results"]:
        mine = [float(line["latency_ms"]) for line in lines if line["label"] == row["label"]]
        assert len(mine) == row["stats"]["count"] and {line["threads"] for line in lines} == {"1"}
        assert float(np.median(mine)) == pytest.approx(row["stats"]["median_ms"])  # the percentiles can be audited
    assert doc["result"]["samples_csv_path"] == str(out)


def test_a_backend_is_one_registered_class(tiny_onnx: Path) -> None:
    calls = []

    @bk.register
    class Echo(bk.Backend):
        name = "echo-test"
        description = "returns its inputs"
        kinds = ("onnx",)

        def runner(self, model, inputs, threads):
            return bk.Runner(backend=self.name, call=lambda: calls.append(1) or inputs, provider="echo", threads=threads)

    try:
        assert "echo-test" in bk.backends_for_kind("onnx") and bk.backend_available("echo-test") == (True, "")
        runner = bk.make_runner("echo-test", tiny_onnx, {"x": np.zeros((1, 256), np.float32)}, threads=3)
        runner.call()
        assert calls == [1] and runner.threads == 3
    finally:
        del bk.REGISTRY["echo-test"]
    with pytest.raises(Exception, match="unknown backend 'echo-test'"):
        bk.get_backend("echo-test")


def test_bad_values_fail_before_heavy_imports(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from mlserve.cli.app import app\n"
        "for argv in (['optimize', sys.argv[1], '--auto', '--dry-run', '--input', 'x:1xq'],\n"
        "             ['optimize', sys.argv[1], '--auto', '--dry-run', '--threads', '0'],\n"
        "             ['benchmark', sys.argv[1], '--threads', 'x'], ['benchmark', sys.argv[1], '--input', 'x=abc']):\n"
        "    try:\n"
        "        app(argv)\n"
        "    except SystemExit as exc:\n"
        "        assert exc.code == 2, (argv, exc.code)\n"
        "print(sorted(m for m in ('torch', 'onnx', 'onnxruntime', 'transformers') if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "model.onnx")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1].replace("'", '"')) == []


def test_a_file_reference_is_measured_with_the_candidates_interleaved(cli, tiny_onnx: Path, slow_onnx: Path, quick) -> None:
    result = cli("benchmark", tiny_onnx, "--fail-if-slower-than", f"{slow_onnx}:50", "--threads", "1", "--json", *quick)
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)["result"]["results"]
    candidate, reference = rows
    assert reference["role"] == "reference" and reference["label"] == "reference slow.onnx (ort-cpu b1 c1)"
    assert len(candidate["rounds_ms"]) == len(reference["rounds_ms"]) == 10  # the same rounds, A B A B ...
    check = json.loads(result.stdout)["result"]["gate"]["checks"][0]
    ratios = [c / r for c, r in zip(candidate["rounds_ms"], reference["rounds_ms"])]
    assert check["ratio"] == pytest.approx(float(np.median(ratios)))
