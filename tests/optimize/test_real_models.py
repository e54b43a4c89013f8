"""Issue 11: figures a user can quote and real models that work. Each test fails on the code before its fix."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlserve.errors import ParityError, UsageError
from mlserve.inputs import InputSpec, make_feeds, parse_input, parse_inputs
from mlserve.optimize import OptimizeOptions, optimize
from mlserve.optimize.models import Candidate, Latency
from mlserve.optimize.parity import check_parity, compare_output
from mlserve.optimize.pipeline import _choose

FAST = ("--warmup", "0", "--iterations", "3", "--duration", "0", "--rounds", "3")


def doc_of(result: Any) -> dict:
    return json.loads(result.stdout)["result"]


def _save(path: Path, nodes: list, inputs: list, outputs: list, initializers: list | None = None, opset: int = 17) -> Path:
    import onnx
    from onnx import helper

    graph = helper.make_graph(nodes, "g", inputs, outputs, initializers or [])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


# --- a wrong scale passes element-wise tolerances when the outputs are tiny ----------------------


def _tiny_outputs(tmp_path: Path, scale: float, name: str) -> Path:
    from onnx import TensorProto, helper, numpy_helper

    w = (np.random.default_rng(0).standard_normal((16, 4)) * 1e-9).astype(np.float32)  # outputs ~1e-9, far below atol
    nodes = [helper.make_node("MatMul", ["x", "W"], ["m"]), helper.make_node("Mul", ["m", "s"], ["y"])]
    return _save(tmp_path / name, nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 16])],
                 [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
                 [numpy_helper.from_array(w, "W"), numpy_helper.from_array(np.array(scale, np.float32), "s")])


def test_a_candidate_off_by_a_factor_fails_parity_with_exit_6(cli: Any, tmp_path: Path) -> None:
    source, scaled = _tiny_outputs(tmp_path, 1.0, "tiny.onnx"), _tiny_outputs(tmp_path, 1.3, "tiny-x1.3.onnx")
    result = cli("optimize", "--dry-run", source, "--candidate", scaled, "--no-benchmark", "--json")
    assert result.exit_code == 6, result.stderr
    assert "relative L2 error 0.3 is above 0.001" in result.stderr
    parity = json.loads(result.stdout)["error"]["details"]["parity"]["outputs"][0]
    assert parity["cosine"] > 0.99999 and parity["mismatched"] == 0  # what the gate used to look at: all fine
    assert parity["rel_l2_err"] == pytest.approx(0.3, rel=1e-3) and parity["failed_checks"] == ["rel-l2"]
    # every precision's default refuses it
    for precision in ("fp16", "int8"):
        ref = np.random.default_rng(1).standard_normal((8, 4)) * 1e-9
        assert not compare_output("y", ref, ref * 1.3, precision, []).passed


def test_one_wrong_row_fails_the_per_row_cosine() -> None:
    rng = np.random.default_rng(2)
    ref = rng.standard_normal((64, 16))
    got = ref + rng.normal(0, 1e-3, ref.shape)
    got[5] = -ref[5] * 0.05  # one sample points the other way, small enough to hide in the global figures
    loose = [parse_tolerance("y:rtol=10:cosine=0.99:rel_l2=0.2")]  # elements pass unless off by 10x their value
    figures = compare_output("y", ref, got, "int8", loose)
    assert figures.cosine > 0.99 and figures.rel_l2_err < 0.2  # the global criteria pass
    assert not figures.passed and figures.failed_checks == ["row-cosine"] and figures.min_row_cosine < 0


def parse_tolerance(text: str) -> Any:
    from mlserve.optimize.specs import parse_tolerance as parse

    return parse(text)


def test_padding_positions_are_left_out_when_marked() -> None:
    rng = np.random.default_rng(3)
    mask = np.ones((4, 6), np.int64)
    mask[:, 4:] = 0
    ref = rng.standard_normal((4, 6, 8)).astype(np.float32)
    got = ref.copy()
    got[:, 4:, :] += 5.0  # garbage on padding tokens only, as the encoder's 5.6 max abs err
    feeds = [{"ids": np.zeros((4, 6), np.int64), "attention_mask": mask}]
    unmarked = check_parity(lambda f: {"h": ref}, lambda f: {"h": got}, feeds, ["h"], precision="fp32")
    assert not unmarked.passed
    marked = check_parity(lambda f: {"h": ref}, lambda f: {"h": got}, feeds, ["h"], precision="fp32",
                          padding_masks={"attention_mask": None})
    assert marked.passed and marked.outputs[0].excluded == 4 * 2 * 8 and marked.outputs[0].max_abs_err == 0.0
    with pytest.raises(UsageError, match="does not start with the mask's shape"):
        check_parity(lambda f: {"h": ref[:, 0]}, lambda f: {"h": got[:, 0]}, feeds, ["h"], precision="fp32",
                     padding_masks={"attention_mask": ["h"]})


# --- a model whose input must hold one value (Silero's sample rate) ------------------------------


def _vad_like(tmp_path: Path) -> Path:
    """Runs only with sr == 16000: any other value takes a branch that reshapes 512 samples to rows of 7."""
    from onnx import TensorProto, helper, numpy_helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 512])
    y_then = helper.make_tensor_value_info("y_then", TensorProto.FLOAT, ["r", "c"])
    y_else = helper.make_tensor_value_info("y_else", TensorProto.FLOAT, ["r", "c"])
    then = helper.make_graph([helper.make_node("Identity", ["x"], ["y_then"])], "then", [], [y_then])
    # rows of sr + 6 samples: 512 divides by neither 6 nor 7, and no shape inference can know it before running
    other = helper.make_graph([
        helper.make_node("Add", ["sr", "six"], ["cols"]),
        helper.make_node("Unsqueeze", ["cols", "axis0"], ["cols1"]),
        helper.make_node("Concat", ["minus1", "cols1"], ["shape"], axis=0),
        helper.make_node("Reshape", ["x", "shape"], ["y_else"]),
    ], "else", [], [y_else], [numpy_helper.from_array(np.array(6, np.int64), "six"),
                              numpy_helper.from_array(np.array([0], np.int64), "axis0"),
                              numpy_helper.from_array(np.array([-1], np.int64), "minus1")])
    nodes = [
        helper.make_node("Equal", ["sr", "rate"], ["is16k"]),
        helper.make_node("If", ["is16k"], ["y"], then_branch=then, else_branch=other),
    ]
    return _save(tmp_path / "vad.onnx", nodes, [x, helper.make_tensor_value_info("sr", TensorProto.INT64, [])],
                 [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["r", "c"])],
                 [numpy_helper.from_array(np.array(16000, np.int64), "rate")])


def test_a_source_that_fails_on_generated_inputs_is_exit_2_and_a_fixed_value_fixes_it(tmp_path: Path) -> None:
    vad = _vad_like(tmp_path)
    env = {**os.environ, "NO_COLOR": "1", "MLSERVE_NO_PROGRESS": "1"}
    proc = subprocess.run([sys.executable, "-m", "mlserve", "optimize", str(vad), "--auto", "--dry-run", "--no-benchmark"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: the source model fails on the generated inputs (x:1x512:float32, sr:scalar:int64): ")
    assert "bug" not in proc.stderr and "[E:onnxruntime" not in proc.stderr  # ORT's own log lines stay off stderr
    assert "--input NAME=VALUE" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    fixed = subprocess.run([sys.executable, "-m", "mlserve", "optimize", str(vad), "--auto", "--dry-run", "--no-benchmark",
                            "--input", "sr=16000", "--json"], env=env, capture_output=True, text=True, timeout=300)
    assert fixed.returncode == 0, fixed.stderr
    assert fixed.stderr == ""
    doc = json.loads(fixed.stdout)["result"]
    assert doc["chosen"] == "fp32" and doc["source"]["inputs"][1]["value"] == 16000
    assert doc["candidates"][[c["name"] for c in doc["candidates"]].index("fp32")]["parity"]["samples"] >= 32


def test_data_with_a_scalar_and_parity_on_data_only(tmp_path: Path) -> None:
    vad = _vad_like(tmp_path)
    data = tmp_path / "chunks.npz"
    np.savez(data, x=np.random.default_rng(4).standard_normal((5, 512)).astype(np.float32), sr=np.array(16000, np.int64))  # 0-d
    result = optimize(str(vad), OptimizeOptions(variants=["fp32"], benchmark=False, data=data, parity_on="data"))
    parity = result.candidates[0].parity
    assert result.candidates[0].verdict == "chosen" and parity.inputs == "data"
    assert parity.samples == 5 and parity.user_samples == 5  # only the rows of --data: random audio was never used
    with pytest.raises(UsageError, match="--parity-on data checks parity on --data only"):
        optimize(str(vad), OptimizeOptions(variants=["fp32"], benchmark=False, parity_on="data"))


# --- integer inputs: ranges from names, from the model, from the user ----------------------------


def test_integer_ranges_come_from_the_names_the_model_and_the_user(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from mlserve.inputs import onnx_inputs, resolve

    table = np.random.default_rng(5).standard_normal((50, 8)).astype(np.float32)  # a vocabulary of 50
    nodes = [helper.make_node("Cast", ["input_ids"], ["ids64"], to=TensorProto.INT64),
             helper.make_node("Gather", ["E", "ids64"], ["emb"]),
             helper.make_node("Cast", ["attention_mask"], ["m"], to=TensorProto.FLOAT),
             helper.make_node("Unsqueeze", ["m", "axes"], ["m3"]),
             helper.make_node("Mul", ["emb", "m3"], ["y"])]
    path = _save(tmp_path / "emb.onnx", nodes,
                 [helper.make_tensor_value_info("input_ids", TensorProto.INT32, ["b", 12]),
                  helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["b", 12])],
                 [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", 12, 8])],
                 [numpy_helper.from_array(table, "E"), numpy_helper.from_array(np.array([2], np.int64), "axes")], opset=18)
    specs = onnx_inputs(onnx.load(str(path)))
    assert (specs[0].low, specs[0].high, specs[0].range_from) == (0, 50, "model")
    feeds = make_feeds(specs, batch=64, seed=0)
    assert feeds["input_ids"].max() >= 10 and feeds["input_ids"].max() < 50  # no longer [0, 10)
    mask = feeds["attention_mask"]
    assert set(np.unique(mask)) == {0, 1} and (mask[:, 0] == 1).all()  # a valid mask: real tokens, then padding
    assert (np.diff(mask, axis=1) <= 0).all() and (mask.sum(axis=1) == 12).any()
    user = resolve(specs, [parse_input("input_ids:3..7")])
    ids = make_feeds(user, batch=64, seed=0)["input_ids"]
    assert ids.min() >= 3 and ids.max() < 7
    result = optimize(str(path), OptimizeOptions(variants=["fp32"], benchmark=False))
    assert result.candidates[0].verdict == "chosen"


def test_one_grammar_for_both_commands() -> None:
    """The spellings optimize and benchmark used to disagree on are one grammar now."""
    for text in ("x:1x3:fp16", "x:?x3", "x:Nx3:float32", "x:scalar:int64", "ids:Nx8:int64:0..100", "sr=16000", "x:1x3=0.5"):
        spec = parse_input(text)
        assert parse_input(spec.describe()).describe() == spec.describe(), text
    assert parse_input("x:1x3:fp16").dtype == "float16" and parse_input("x:?x3").shape == [None, 3]
    assert parse_input("x:4x3", static_batch=True).dynamic_batch is False and parse_input("x:Nx3", static_batch=True).dynamic_batch
    with pytest.raises(UsageError, match="more than once"):
        parse_inputs(["x:1x3", "x=1"])
    import mlserve.benchmark.backends as bk

    assert not hasattr(bk, "parse_input_override") and not hasattr(bk, "InputSpec") or bk.InputSpec is InputSpec


# --- fixed-batch models reach a minimum parity sample count --------------------------------------


def test_a_fixed_batch_model_gets_enough_parity_samples(tmp_path: Path) -> None:
    from onnx import TensorProto, helper

    path = _save(tmp_path / "fixed.onnx", [helper.make_node("Relu", ["x"], ["y"])],
                 [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16])])
    result = optimize(str(path), OptimizeOptions(variants=["fp32"], benchmark=False))
    assert result.candidates[0].parity.samples == 32  # 32 batches of 1, not 4


# --- TorchScript with a non-tensor argument -------------------------------------------------------


def test_torchscript_forward_with_an_int_argument(tmp_path: Path) -> None:
    import torch

    class Resample(torch.nn.Module):
        def forward(self, x: torch.Tensor, sr: int) -> torch.Tensor:
            if sr == 16000:
                return x * 2.0
            return x - 1.0

    path = tmp_path / "resample.pt"
    with pytest.warns(DeprecationWarning):
        torch.jit.save(torch.jit.script(Resample()), str(path))
    with pytest.raises(UsageError, match=r"argument 'sr' is a Python int, not a tensor") as caught:
        optimize(str(path), OptimizeOptions(variants=["fp32"], benchmark=False, inputs=parse_inputs(["x:1x8"])))
    assert "--input sr=VALUE" in str(caught.value) or "--input sr=16000" in str(caught.value)
    result = optimize(str(path), OptimizeOptions(variants=["fp32"], benchmark=False, inputs=parse_inputs(["x:1x8", "sr=16000"])))
    assert result.candidates[0].verdict == "chosen", result.candidates[0].reason
    assert [s.name for s in result.source.inputs] == ["x", "sr"] and result.source.inputs[1].python_arg


# --- an ONNX source competes as itself: --auto never hands back something slower -----------------


def _cand(name: str, precision: str, p50: float | None, verdict: str = "passed") -> Candidate:
    latency = Latency(p50_ms=p50, p90_ms=p50, mean_ms=p50, min_ms=p50, iterations=3, harness="test") if p50 is not None else None
    return Candidate(name=name, precision=precision, verdict=verdict, latency=latency)  # type: ignore[arg-type]


def _speedup(ratio: float, low: float, high: float) -> Any:
    from mlserve.optimize.models import Speedup

    return Speedup(ratio=ratio, ci_low=low, ci_high=high, confidence=0.95, rounds=10, threads=1, source_threads=1)


def test_the_original_file_wins_when_nothing_is_faster(cli: Any, mlp_onnx: Path) -> None:
    # fp32 is slower than the file it was built from, beyond the noise of the rounds (0.63x, as in the issue)
    fp32, original, int8 = _cand("fp32", "fp32", 1.6), _cand("original", "fp32", 1.0), _cand("int8-dynamic", "int8", 0.98)
    fp32.speedup = _speedup(0.63, 0.60, 0.66)
    assert _choose([fp32, original, int8], OptimizeOptions(auto=True)) is original  # int8 is not 5% faster than the original
    assert fp32.verdict == "slower" and int8.verdict == "slower"
    # within the noise (the interval holds 1), the built fp32 graph is kept
    fp32, original = _cand("fp32", "fp32", 1.02), _cand("original", "fp32", 1.0)
    fp32.speedup = _speedup(0.98, 0.93, 1.04)
    assert _choose([fp32, original], OptimizeOptions(auto=True)) is fp32
    result = cli("optimize", "--dry-run", mlp_onnx, "--auto", *FAST, "--threads", "1", "--json")
    assert result.exit_code == 0, result.stderr
    by_name = {c["name"]: c for c in doc_of(result)["candidates"]}
    assert by_name["original"]["parity"]["passed"] and by_name["original"]["latency"]["p50_ms"] > 0
    chosen = by_name[doc_of(result)["chosen"]]
    assert chosen["name"] == "original" or chosen["speedup"]["ci_high"] >= 1.0  # never significantly slower than the input


# --- outputs: the umask, nothing written silently --------------------------------------------------


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_respect_the_umask(mlp_onnx: Path, tmp_path: Path, umask: int, mode: int) -> None:
    previous = os.umask(umask)
    try:
        out, report = tmp_path / "out.onnx", tmp_path / "report.json"
        optimize(str(mlp_onnx), OptimizeOptions(variants=["fp32"], benchmark=False, output=out, report=report, output_dir=tmp_path / "all"))
    finally:
        os.umask(previous)
    for path in (out, report, *(tmp_path / "all").iterdir()):
        assert stat.S_IMODE(path.stat().st_mode) == mode, path


def test_nothing_to_write_is_refused_before_any_work(cli: Any, tmp_path: Path) -> None:
    result = cli("optimize", tmp_path / "does-not-exist.onnx", "--variant", "fp32")
    assert result.exit_code == 2  # the missing model is not even looked at
    assert result.stderr.strip() == ("error: nothing would be written: give --output FILE, --output-dir DIR or --register NAME"
                                     " (or --dry-run to check and measure without writing an artifact)")


def test_bad_option_values_are_usage_errors_before_the_model_is_touched(cli: Any, tmp_path: Path) -> None:
    missing = tmp_path / "missing.onnx"
    for args, message in ((["--input", "x:1xq"], "bad --input"), (["--threads", "0"], "bad --threads"),
                          (["--tolerance", "y:bogus=1"], "unknown field"), (["--parity-on", "random"], "bad --parity-on"),
                          (["--padding-mask", "=y"], "bad --padding-mask")):
        result = cli("optimize", missing, "--auto", "--dry-run", *args)
        assert result.exit_code == 2 and message in result.stderr, (args, result.stderr)
    bench = cli("benchmark", missing, "--threads", "x")
    assert bench.exit_code == 2 and "bad --threads" in bench.stderr


# --- the measurement is like for like and says so --------------------------------------------------


def test_source_and_candidates_run_at_the_same_threads_and_the_report_says_how(model_dir: Path) -> None:
    from mlserve.optimize.timing import TimingSettings

    result = optimize("mlserve_optimize_test_models:mlp", OptimizeOptions(
        variants=["fp32"], threads=[1, 2], timing=TimingSettings(warmup_s=0, min_iterations=4, min_seconds=0, rounds=4)))
    c = result.candidates[0]
    assert [lat.threads for lat in result.source.latency_by_threads] == [1, 2]
    assert [lat.threads for lat in c.latency_by_threads] == [1, 2]
    assert c.speedup is not None and c.speedup.source_threads == c.speedup.threads == c.latency.threads
    assert c.speedup.rounds == 4 and c.speedup.ci_low <= c.speedup.ratio <= c.speedup.ci_high
    m = result.measurement
    assert m is not None and m.threads == [1, 2] and m.rounds == 4 and "torch.set_num_threads" in m.source_threads
    assert "median over rounds" in m.ratio


def test_failed_baseline_hint_points_to_docs(mlp_onnx: Path, broken_mlp_onnx: Path) -> None:
    with pytest.raises(ParityError) as caught:
        optimize(str(mlp_onnx), OptimizeOptions(candidates=[broken_mlp_onnx], benchmark=False))
    assert "Accepting a lossy model" in (caught.value.hint or "") and "--tolerance '" not in (caught.value.hint or "")
