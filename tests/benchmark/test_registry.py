"""Registry references as models and as gate references; recording figures on a version."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlserve import exitcodes
from mlserve.registry import Registry


@pytest.fixture
def reg(registry_dir: Path) -> Registry:
    return Registry(registry_dir)


def test_registry_reference_as_the_model(cli, reg: Registry, tiny_onnx: Path, quick) -> None:
    reg.register("tiny", tiny_onnx, stage="production")
    result, doc = cli.json("benchmark", "tiny@production", *quick)
    assert result.exit_code == 0
    (row,) = doc["result"]["results"]
    assert row["ref"] == "tiny:1" and row["model"] == "tiny@production"
    assert row["label"] == "tiny@production (ort-cpu b1 c1)"
    assert Path(row["path"]).name == "tiny.onnx" and Path(row["path"]).is_relative_to(reg.root)


def test_unknown_reference_and_empty_stage(cli, reg: Registry, tiny_onnx: Path) -> None:
    reg.register("tiny", tiny_onnx)
    result = cli("benchmark", "nosuch@production")
    assert result.exit_code == exitcodes.NOT_FOUND and result.stderr.startswith("error: ")
    result = cli("benchmark", "tiny@production")
    assert result.exit_code == exitcodes.NOT_FOUND
    assert "tiny@production is empty" in result.stderr


def test_record_writes_metrics_on_the_version(cli, reg: Registry, tiny_onnx: Path, quick) -> None:
    reg.register("tiny", tiny_onnx)
    result, doc = cli.json("benchmark", tiny_onnx, "--batch-size", "1,2", "--record", "tiny:1", *quick)
    assert result.exit_code == 0
    assert doc["result"]["recorded"] == "tiny:1"
    first, second = doc["result"]["results"]
    metrics = reg.resolve("tiny:1").metrics
    assert metrics["latency_p50_ms"] == pytest.approx(first["stats"]["median_ms"])
    assert metrics["latency_p99_ms"] == pytest.approx(first["stats"]["p99_ms"])
    assert metrics["throughput_per_s"] == pytest.approx(first["stats"]["throughput_per_s"])
    assert metrics["ort-cpu.b2.c1.latency_p50_ms"] == pytest.approx(second["stats"]["median_ms"])
    meta = reg.resolve("tiny:1").meta["benchmark"]
    assert meta["cpu"].startswith(doc["result"]["fingerprint"]["cpu_model"] + " (")
    assert meta["model"] == str(tiny_onnx)
    kinds = [e.kind for e in reg.events("tiny")]
    assert kinds[-1] == "record-metrics"


def test_plain_keys_stand_for_batch_one(cli, reg: Registry, tiny_onnx: Path, quick) -> None:
    reg.register("tiny", tiny_onnx)
    result, doc = cli.json("benchmark", tiny_onnx, "--batch-size", "2", "--record", "tiny:1", *quick)
    assert result.exit_code == 0
    metrics = reg.resolve("tiny:1").metrics
    assert metrics["ort-cpu.b2.c1.latency_p50_ms"] == pytest.approx(doc["result"]["results"][0]["stats"]["median_ms"])
    assert "latency_p50_ms" not in metrics


def test_record_on_a_missing_version_fails_before_measuring(cli, reg: Registry, tiny_onnx: Path) -> None:
    reg.register("tiny", tiny_onnx)
    result = cli("benchmark", tiny_onnx, "--record", "tiny:9", "--duration", "600")
    assert result.exit_code == exitcodes.NOT_FOUND
    assert result.stderr.startswith("error: ")


def test_record_needs_a_version(cli, reg: Registry, tiny_onnx: Path, quick) -> None:
    reg.register("tiny", tiny_onnx)
    result = cli("benchmark", tiny_onnx, "--record", "tiny@production", *quick)
    assert result.exit_code == exitcodes.USAGE
    assert result.stderr.startswith("error: bad --record 'tiny@production': expected NAME:VERSION")


@pytest.mark.parametrize(("stored_ms", "code", "passed"), [(1e-6, exitcodes.GATE_FAILED, False), (1e6, exitcodes.OK, True)])
def test_gate_against_stored_figures(cli, reg: Registry, tiny_onnx: Path, quick, stored_ms: float, code: int, passed: bool) -> None:
    reg.register("tiny", tiny_onnx, metrics={"latency_p50_ms": stored_ms}, stage="production")
    result = cli("benchmark", tiny_onnx, "--fail-if-slower-than", "tiny@production:10", "--json", *quick)
    assert result.exit_code == code, result.stderr
    doc = json.loads(result.stdout)["result"]
    assert [r["role"] for r in doc["results"]] == ["candidate"]  # the stored figure is used, nothing is re-measured
    (check,) = doc["gate"]["checks"]
    assert check["source"] == "stored-metrics" and check["reference_median_ms"] == stored_ms
    assert check["passed"] is passed and doc["gate"]["passed"] is passed
    assert any("stored latency was measured on an unrecorded machine" in w for w in doc["warnings"])


def test_gate_against_a_reference_without_figures_measures_its_artifact(cli, reg: Registry, tiny_onnx: Path, slow_onnx: Path, quick) -> None:
    reg.register("slow", slow_onnx, stage="production")
    result, doc = cli.json("benchmark", tiny_onnx, "--fail-if-slower-than", "slow:1:25", *quick)
    assert result.exit_code == 0
    gate = doc["result"]["gate"]
    assert gate["reference"] == "slow:1" and gate["passed"] is True
    assert gate["checks"][0]["source"] == "measured" and gate["checks"][0]["ratio"] < 1
    reference = doc["result"]["results"][1]
    assert reference["role"] == "reference" and reference["ref"] == "slow:1"


def test_stored_figures_are_matched_by_batch_size(cli, reg: Registry, tiny_onnx: Path, quick) -> None:
    # the plain latency_p50_ms stands for batch 1: it says nothing about batch 4
    reg.register("tiny", tiny_onnx, metrics={"latency_p50_ms": 1e6}, stage="production")
    result = cli("benchmark", tiny_onnx, "--batch-size", "4", "--fail-if-slower-than", "tiny@production:10", "--json", *quick)
    assert result.exit_code == exitcodes.GATE_FAILED
    doc = json.loads(result.stdout)["result"]
    assert doc["gate"]["checks"] == []
    assert "nothing to compare" in doc["failures"][0]
    reg.record_metrics("tiny", "1", {"ort-cpu.b4.c1.latency_p50_ms": 1e6})
    result = cli("benchmark", tiny_onnx, "--batch-size", "4", "--fail-if-slower-than", "tiny@production:10", "--json", *quick)
    assert result.exit_code == exitcodes.OK, result.stderr
    (check,) = json.loads(result.stdout)["result"]["gate"]["checks"]
    assert check["reference_median_ms"] == 1e6 and check["passed"] is True
