"""`mlserve optimize` end to end through the CLI: exit codes, JSON documents, files written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

FACTORY = "mlserve_optimize_test_models"
FAST = ("--warmup", "0", "--iterations", "3", "--duration", "0", "--rounds", "3")
"""Tiny measurement settings: these tests check behaviour, never speed."""


def doc_of(result: Any) -> dict:
    doc = json.loads(result.stdout)
    assert doc["kind"] == "optimize" and doc["schema_version"] == 1
    return doc["result"]


def test_auto_picks_a_passing_candidate_no_slower_than_fp32(cli: Any, model_dir: Path, tmp_path: Path) -> None:
    out, report = tmp_path / "best.onnx", tmp_path / "report.json"
    every = tmp_path / "all"
    result = cli(
        "optimize", f"{FACTORY}:mlp", "--auto", *FAST, "--threads", "1", "--output", out, "--report", report, "--output-dir", every, "--json"
    )
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    doc = doc_of(result)
    by_name = {c["name"]: c for c in doc["candidates"]}
    chosen = by_name[doc["chosen"]]
    assert chosen["verdict"] == "chosen" and chosen["parity"]["passed"] is True
    assert chosen["latency"]["p50_ms"] <= by_name["fp32"]["latency"]["p50_ms"]
    assert by_name["fp16"]["verdict"] == "skipped" and "CUDA" in by_name["fp16"]["reason"]
    assert by_name["trt-fp16"]["verdict"] == "skipped"
    assert doc["source"]["latency"]["p50_ms"] > 0 and chosen["speedup_vs_source"] > 0
    assert doc["output"] == str(out)
    built = [c for c in doc["candidates"] if c["verdict"] != "skipped"]
    assert {c["name"] for c in built} == {"fp32", "int8-dynamic", "int8-static"}
    assert sorted(p.name for p in every.iterdir()) == sorted(f"{FACTORY}-mlp.{c['name']}.onnx" for c in built)
    assert all(Path(c["path"]).parent == every for c in built)
    assert chosen["recipe"]["session"] == {"intra_op_num_threads": 1, "inter_op_num_threads": 1}
    # like for like: the source ran at the same thread count as every candidate, interleaved, and the report says so
    assert doc["source"]["latency"]["threads"] == 1 and chosen["speedup"]["source_threads"] == chosen["speedup"]["threads"] == 1
    assert doc["measurement"]["threads"] == [1] and doc["measurement"]["method"] == "interleaved rounds"
    assert chosen["speedup"]["ci_low"] <= chosen["speedup"]["ratio"] <= chosen["speedup"]["ci_high"]
    # the report file holds the same result; the artifact runs
    assert json.loads(report.read_text())["chosen"] == doc["chosen"]
    import onnxruntime as ort

    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert session.run(None, {"input": np.zeros((3, 32), np.float32)})[0].shape == (3, 5)


def test_auto_table_for_people(cli: Any, mlp_onnx: Path, broken_mlp_onnx: Path) -> None:
    result = cli("optimize", "--dry-run", mlp_onnx, "--auto", *FAST, "--threads", "1", "--candidate", broken_mlp_onnx)
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"source: onnx {mlp_onnx} (the ONNX file as given, nothing exported)"
    assert lines[1] == "inputs: x:Nx32:float32"
    assert lines[2].startswith("source p50: ") and lines[2].endswith(" ms at 1 threads")
    assert lines[3].startswith("measured: batch 1, threads 1 for the source and every candidate, 3 interleaved rounds")
    # stdout is not a terminal here: the table is tab-separated, one row per line, nothing cut
    header = lines[4].split("\t")
    assert header == ["candidate", "verdict", "p50 ms", "threads", "vs source", "vs fp32", "size", "max abs err", "rel L2", "cosine", "top-1"]
    rows = {line.split("\t")[0]: line.split("\t") for line in lines[5:] if line.count("\t") == 10}
    assert rows["file:mlp-broken.onnx"][1] == "failed-parity"
    assert rows["original"][1] in ("chosen", "slower") and rows["original"][3] == "1"  # the source file itself competes
    assert any(line.startswith("file:mlp-broken.onnx: logits: ") and "max abs err" in line for line in lines)
    assert any(line.startswith("skipped fp16") and "no CUDA here" in line for line in lines)
    assert "…" not in result.stdout
    assert "calibrated on generated random data" in result.stderr


def test_broken_candidate_is_rejected_with_exit_6(cli: Any, model_dir: Path, broken_mlp_onnx: Path) -> None:
    # the source is the PyTorch model itself; the candidate's weights were perturbed after export
    result = cli("optimize", "--dry-run", mlp_onnx_source(model_dir), "--candidate", broken_mlp_onnx, "--no-benchmark", "--json")
    assert result.exit_code == 6, result.stdout
    line = result.stderr.strip()
    assert line.startswith("error: file:mlp-broken.onnx does not compute the same function as the source: logits:")
    assert "elements outside atol=0.0001 and rtol=0.001 (max abs err" in line
    assert "Traceback" not in result.stderr
    assert json.loads(result.stdout)["error"]["code"] == "parity_failed"


def test_an_export_that_changed_the_function_is_caught(cli: Any, model_dir: Path) -> None:
    """The dynamo exporter refuses a data-dependent branch; the fallback traces one side only."""
    result = cli("optimize", "--dry-run", f"{FACTORY}:branchy", "--variant", "fp32", "--no-benchmark")
    assert result.exit_code == 6
    assert result.stderr.startswith("error: fp32 does not compute the same function as the source: output: ")
    kept = cli("optimize", "--dry-run", f"{FACTORY}:branchy", "--variant", "fp32", "--no-benchmark", "--allow-mismatch", "--json")
    assert kept.exit_code == 0
    doc = doc_of(kept)
    assert doc["source"]["exporter"] == "torchscript"
    assert any(w.startswith("the dynamo exporter failed, the TorchScript exporter was used instead (dynamo: ") for w in doc["warnings"])
    assert doc["candidates"][0]["verdict"] == "mismatch-allowed"


def mlp_onnx_source(model_dir: Path) -> Path:
    return model_dir / "mlp.onnx"


def test_allow_mismatch_is_loud(cli: Any, mlp_onnx: Path, broken_mlp_onnx: Path, tmp_path: Path) -> None:
    out = tmp_path / "kept.onnx"
    result = cli("optimize", mlp_onnx, "--candidate", broken_mlp_onnx, "--no-benchmark", "--allow-mismatch", "--output", out)
    assert result.exit_code == 0, result.stderr
    assert "warning: PARITY FAILED for file:mlp-broken.onnx and was ignored because of --allow-mismatch" in result.stderr
    assert out.is_file()


def test_tolerance_override_accepts_a_known_error_once_every_criterion_is_loosened(cli: Any, mlp_onnx: Path, broken_mlp_onnx: Path) -> None:
    result = cli("optimize", "--dry-run", mlp_onnx, "--candidate", broken_mlp_onnx, "--no-benchmark", "--tolerance", "logits:10:10", "--json")
    assert result.exit_code == 6  # atol/rtol alone: the relative L2 error and the cosine still fail the tight fp32 defaults
    assert "relative L2 error" in result.stderr and "cosine similarity" in result.stderr
    accepted = cli("optimize", "--dry-run", mlp_onnx, "--candidate", broken_mlp_onnx, "--no-benchmark",
                   "--tolerance", "logits:10:10:0.5:0.5", "--tolerance", "logits:rel_l2=1:row_cosine=0", "--json")
    assert accepted.exit_code == 0, accepted.stderr
    parity = doc_of(accepted)["candidates"][0]["parity"]
    assert parity["passed"] is True and parity["outputs"][0]["atol"] == 10.0
    assert parity["outputs"][0]["limits"]["max_rel_l2"] == 1.0 and parity["outputs"][0]["limits"]["min_cosine"] == 0.5


def test_pickle_needs_trust(cli: Any, sklearn_joblib: Path) -> None:
    refused = cli("optimize", "--dry-run", sklearn_joblib, "--variant", "fp32", "--no-benchmark")
    assert refused.exit_code == 2
    assert refused.stderr.strip() == (
        "error: refusing to load clf.joblib: unpickling runs any code the file contains "
        "(pass --trust-pickle only if you trust where the file comes from)"
    )
    trusted = cli("optimize", "--dry-run", sklearn_joblib, "--variant", "fp32", "--trust-pickle", *FAST, "--json")
    assert trusted.exit_code == 0, trusted.stderr
    doc = doc_of(trusted)
    assert doc["source"]["exporter"] == "skl2onnx"
    outputs = {o["name"]: o for o in doc["candidates"][0]["parity"]["outputs"]}
    assert outputs["label"]["top1_agreement"] == 1.0


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("does-not-exist.onnx", "--auto"), 3, "error: model file does-not-exist.onnx does not exist"),
        (("{mlp}", "--auto", "--input", "x:1xbad"), 2, "error: bad --input 'x:1xbad'"),
        (("{mlp}", "--auto", "--input", "y:1x32:float32"), 2, "error: --input names y, which is not an input of mlp.onnx (its inputs: x)"),
        (("{mlp}", "--variant", "int4"), 2, "error: unknown variant 'int4'"),
        (("{mlp}", "--auto", "--tolerance", "logits:x:1"), 2, "error: bad --tolerance 'logits:x:1'"),
        (("{mlp}",), 2, "error: nothing to build"),
        (("{mlp}", "--auto", "--variant", "fp32"), 2, "error: --auto chooses the variants itself"),
        (("{mlp}", "--variant", "fp32,int8-dynamic", "--output", "x.onnx"), 2, "error: --output takes one artifact"),
        (("{mlp}", "--auto", "--data", "missing.npz"), 3, "error: data file missing.npz does not exist"),
        (("{mlp}", "--auto", "--threads", "0"), 2, "error: bad --threads '0'"),
        (("{factory}:not_a_model", "--auto"), 2, "must return (torch.nn.Module, example_inputs)"),
    ],
)
def test_bad_input_exits_2_or_3_without_traceback(cli: Any, mlp_onnx: Path, model_dir: Path, args: tuple, code: int, message: str) -> None:
    argv = [a.format(mlp=mlp_onnx, factory=FACTORY) for a in args]
    result = cli("optimize", "--dry-run", *argv)
    assert result.exit_code == code, (result.stdout, result.stderr)
    assert message in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_torchscript_without_shapes_asks_for_input(cli: Any, factory: Any, tmp_path: Path) -> None:
    import torch

    net, _ = factory.mlp()
    path = tmp_path / "mlp.pt"
    with pytest.warns(DeprecationWarning):
        torch.jit.save(torch.jit.script(net), str(path))
    result = cli("optimize", "--dry-run", path, "--variant", "fp32")
    assert result.exit_code == 2
    assert "does not declare its input shapes" in result.stderr and "--input input:1x3x64x64:float32" in result.stderr


def test_static_batch_pins_the_exported_batch(cli: Any, model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "pinned.onnx"
    result = cli(
        "optimize", f"{FACTORY}:mlp", "--variant", "fp32", "--input", "input:4x32:float32", "--static-batch", "--no-benchmark",
        "--output", out, "--json",
    )
    assert result.exit_code == 0, result.stderr
    import onnx

    dims = onnx.load(str(out)).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims] == [4, 32]
    assert doc_of(result)["candidates"][0]["parity"]["samples"] == 32  # --min-parity-samples: 8 batches of the pinned 4


def test_tensorrt_without_gpu_exits_7(cli: Any, mlp_onnx: Path) -> None:
    from mlserve.optimize.tensorrt import tensorrt_unavailable_reason

    if tensorrt_unavailable_reason() is None:
        pytest.skip("TensorRT is usable here")
    result = cli("optimize", "--dry-run", mlp_onnx, "--variant", "trt-fp16", "--no-benchmark")
    assert result.exit_code == 7
    assert result.stderr.startswith("error: no variant could be built here (trt-fp16: ")


def test_register_result_and_optimize_a_registry_reference(cli: Any, mlp_onnx: Path, tmp_path: Path) -> None:
    registry = tmp_path / "registry"
    first = cli("optimize", mlp_onnx, "--variant", "fp32", *FAST, "--register", "mlp", "--registry", registry, "--json")
    assert first.exit_code == 0, first.stderr
    registered = doc_of(first)["registered"]
    from mlserve.registry import Registry

    stored = Registry(root=registry).resolve(f"mlp:{registered['version']}")
    lineage = stored.meta["optimize"]
    assert lineage["variant"] == "fp32"
    assert lineage["source"]["kind"] == "onnx" and len(lineage["source"]["sha256"]) == 64
    assert lineage["tools"]["onnxruntime"]
    assert lineage["parity"]["passed"] is True
    assert stored.metrics["parity_max_abs_err"] < 1e-4 and stored.metrics["latency_p50_ms"] > 0
    # the registered version is itself a valid SOURCE
    second = cli("optimize", "--dry-run", f"mlp:{registered['version']}", "--variant", "int8-dynamic", "--no-benchmark", "--registry", registry, "--json")
    assert second.exit_code == 0, second.stderr
    src = doc_of(second)["source"]
    assert (src["registry_model"], src["registry_version"]) == ("mlp", registered["version"])
    Registry(root=registry).promote("mlp", registered["version"], stage="production")
    third = cli("optimize", "--dry-run", "mlp@production", "--variant", "fp32", "--no-benchmark", "--registry", registry, "--json")
    assert third.exit_code == 0, third.stderr
    assert doc_of(third)["source"]["registry_version"] == registered["version"]
    missing = cli("optimize", "--dry-run", "mlp@staging", "--variant", "fp32", "--registry", registry)
    assert missing.exit_code == 3 and missing.stderr.startswith("error: ")


def test_json_run_in_a_real_process_keeps_stderr_empty(model_dir: Path, tmp_path: Path) -> None:
    """Library chatter (exporter banners, quantizer logging) must not reach the real stderr."""
    env = {**os.environ, "NO_COLOR": "1", "MLSERVE_NO_PROGRESS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "mlserve", "optimize", "--dry-run", f"{FACTORY}:mlp", "--variant", "fp32,int8-dynamic,int8-static",
         "--calibration-data", str(_calibration(tmp_path)), *FAST, "--json"],
        cwd=model_dir, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert json.loads(proc.stdout)["result"]["source"]["exporter"] == "dynamo"


def _calibration(tmp_path: Path) -> Path:
    path = tmp_path / "calib.npy"
    np.save(path, np.random.default_rng(0).standard_normal((64, 32)).astype(np.float32))
    return path


def test_unreadable_model_files_exit_2(cli: Any, tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"this is not a protobuf")
    result = cli("optimize", "--dry-run", corrupt, "--auto")
    assert result.exit_code == 2 and result.stderr.startswith("error: cannot read corrupt.onnx as an ONNX model")
    unknown = tmp_path / "weights.bin"
    unknown.write_bytes(b"\0")
    result = cli("optimize", "--dry-run", unknown, "--auto")
    assert result.exit_code == 2 and "cannot tell what kind of model weights.bin is" in result.stderr
    not_torchscript = tmp_path / "model.pt"
    not_torchscript.write_bytes(b"PK not really")
    result = cli("optimize", "--dry-run", not_torchscript, "--variant", "fp32", "--input", "x:1x4")
    assert result.exit_code == 2 and "model.pt is not a TorchScript archive" in result.stderr


def test_auto_json_lists_a_rejected_candidate(cli: Any, mlp_onnx: Path, broken_mlp_onnx: Path) -> None:
    result = cli("optimize", "--dry-run", mlp_onnx, "--auto", "--no-benchmark", "--candidate", broken_mlp_onnx, "--json")
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    doc = doc_of(result)
    by_name = {c["name"]: c for c in doc["candidates"]}
    assert doc["chosen"] == "fp32"  # without measurements nothing proves a lossy variant is faster
    broken = by_name["file:mlp-broken.onnx"]
    assert broken["verdict"] == "failed-parity" and broken["parity"]["passed"] is False
    assert broken["parity"]["outputs"][0]["max_abs_err"] > 0.05
    assert doc["warnings"] == [
        "int8-static was calibrated on generated random data: activation ranges may not match real inputs; "
        "give real samples with --calibration-data FILE.npz"
    ]
