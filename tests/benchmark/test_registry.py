"""Registry references as models and as gate references; recording figures on a version."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlserve import exitcodes
from mlserve.registry import Registry


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


def test_stored_figures_are_matched_by_batch_size(cli, reg: Registry, tiny_onnx: Path, slow_onnx: Path, quick) -> None:
    # the plain latency_p50_ms stands for batch 1: it says nothing about batch 4, so the artifact is measured
    reg.register("slow", slow_onnx, metrics={"latency_p50_ms": 1e-6}, stage="production")  # would fail any run
    result = cli("benchmark", tiny_onnx, "--batch-size", "4", "--fail-if-slower-than", "slow@production:10", "--json", *quick)
    assert result.exit_code == exitcodes.OK, result.stderr
    doc = json.loads(result.stdout)["result"]
    (check,) = doc["gate"]["checks"]
    assert check["source"] == "measured" and check["reference"] == "reference slow@production (ort-cpu b4 c1)" and check["ratio"] < 1
    assert [(r["role"], r["batch_size"]) for r in doc["results"]] == [("candidate", 4), ("reference", 4)]
    reg.record_metrics("slow", "1", {"ort-cpu.b4.c1.latency_p50_ms": 1e6})
    result = cli("benchmark", tiny_onnx, "--batch-size", "4", "--fail-if-slower-than", "slow@production:10", "--json", *quick)
    assert result.exit_code == exitcodes.OK, result.stderr
    doc = json.loads(result.stdout)["result"]
    (check,) = doc["gate"]["checks"]
    assert check["source"] == "stored-metrics" and check["reference_median_ms"] == 1e6 and check["passed"] is True
    assert [r["role"] for r in doc["results"]] == ["candidate"]


@pytest.mark.parametrize(("stored_ms", "code"), [(1e6, exitcodes.OK), (1e-6, exitcodes.GATE_FAILED)])
def test_every_run_is_gated_against_a_stored_or_a_measured_figure(
    cli, reg: Registry, tiny_onnx: Path, slow_onnx: Path, quick, stored_ms: float, code: int,
) -> None:
    # only batch 1, one stream has a stored figure: the other three runs are gated against the artifact, measured now
    reg.register("slow", slow_onnx, metrics={"latency_p50_ms": stored_ms})
    result = cli("benchmark", tiny_onnx, "--batch-size", "1,2", "--concurrency", "1,2",
                 "--fail-if-slower-than", "slow:1:10", "--json", *quick)
    assert result.exit_code == code, result.stderr
    doc = json.loads(result.stdout)["result"]
    checks = doc["gate"]["checks"]
    assert [c["candidate"] for c in checks] == [f"tiny.onnx (ort-cpu b{b} c{c})" for b in (1, 2) for c in (1, 2)]
    assert [c["source"] for c in checks] == ["stored-metrics", "measured", "measured", "measured"]
    assert checks[0]["reference"] == "slow:1 (stored latency_p50_ms)" and checks[0]["reference_median_ms"] == stored_ms
    assert [c["reference"] for c in checks[1:]] == [f"reference slow:1 (ort-cpu b{b} c{c})" for b, c in ((1, 2), (2, 1), (2, 2))]
    assert all(c["passed"] for c in checks[1:]) and checks[0]["passed"] is (code == exitcodes.OK)
    assert [r["label"] for r in doc["results"] if r["role"] == "reference"] == [c["reference"] for c in checks[1:]]
    assert doc["gate"]["uncovered"] == [] and doc["gate"]["passed"] is (code == exitcodes.OK)
    if code != exitcodes.OK:
        assert doc["failures"] == [doc["failures"][0]] and doc["failures"][0].startswith("tiny.onnx (ort-cpu b1 c1) is +")


def test_gate_lines_say_which_reference_each_run_met(cli, reg: Registry, tiny_onnx: Path, slow_onnx: Path, quick) -> None:
    reg.register("slow", slow_onnx, metrics={"latency_p50_ms": 1e6})
    result = cli("benchmark", tiny_onnx, "--batch-size", "1,2", "--fail-if-slower-than", "slow:1:10", *quick)
    assert result.exit_code == 0, result.stderr
    assert "tiny.onnx (ort-cpu b1 c1): 0.000x of slow:1 (stored latency_p50_ms) [stored figure]" in result.stdout
    assert "tiny.onnx (ort-cpu b2 c1): " in result.stdout and "of reference slow:1 (ort-cpu b2 c1) [measured now]" in result.stdout


def test_a_failed_run_records_nothing(cli, reg: Registry, tiny_onnx: Path, quick) -> None:
    reg.register("tiny", tiny_onnx)
    result = cli("benchmark", tiny_onnx, "--record", "tiny:1", *quick, "--max-cv", "0.0001", "--stability-retries", "0",
                 "--fail-unstable", "--json")
    assert result.exit_code == exitcodes.GATE_FAILED
    doc = json.loads(result.stdout)["result"]
    assert doc["recorded"] is None
    assert any(w.startswith("nothing was recorded on tiny:1: the benchmark failed") for w in doc["warnings"])
    assert reg.resolve("tiny:1").metrics == {} and "benchmark" not in reg.resolve("tiny:1").meta
    assert [e.kind for e in reg.events("tiny")][-1] != "record-metrics"
    # in table mode the warning is on stderr, before the error line
    result = cli("benchmark", tiny_onnx, "--record", "tiny:1", *quick, "--max-cv", "0.0001", "--stability-retries", "0", "--fail-unstable")
    assert result.exit_code == exitcodes.GATE_FAILED
    assert "warning: nothing was recorded on tiny:1" in result.stderr and "recorded on" not in result.stdout
    assert reg.resolve("tiny:1").metrics == {}


def _gate_warnings(doc: dict) -> list[str]:
    """The warnings, less the stability verdicts of these deliberately short runs."""
    return [w for w in doc["result"]["warnings"] if not w.startswith("unstable measurement")]


def _optimize_meta(cpu: str, cores: int | None, threads: int | None = None) -> dict:
    """meta.optimize as `mlserve optimize --register` writes it (the parts the gate reads)."""
    recipe: dict = {"variant": "int8-dynamic"}
    if threads:
        recipe["session"] = {"intra_op_num_threads": threads}
    return {"optimize": {"variant": "int8-dynamic", "recipe": recipe,
                         "hardware": {"cpu": cpu, "logical_cores": cores, "avx2": True, "avx512": False, "vnni": False, "cuda": False}}}


def test_figures_stored_by_optimize_carry_their_machine(cli, reg: Registry, tiny_onnx: Path, slow_onnx: Path, quick) -> None:
    from mlserve.benchmark.fingerprint import collect

    here = collect()
    reg.register("slow", slow_onnx, metrics={"latency_p50_ms": 1e6}, meta=_optimize_meta(here.cpu_model, here.logical_cores))
    result, doc = cli.json("benchmark", tiny_onnx, "--fail-if-slower-than", "slow:1:10", *quick)
    assert result.exit_code == 0
    assert doc["result"]["gate"]["checks"][0]["source"] == "stored-metrics"
    assert _gate_warnings(doc) == []  # same machine: nothing to warn about
    reg.register("elsewhere", slow_onnx, metrics={"latency_p50_ms": 1e6}, meta=_optimize_meta("Other CPU 9000", 64))
    result, doc = cli.json("benchmark", tiny_onnx, "--fail-if-slower-than", "elsewhere:1:10", *quick)
    assert result.exit_code == 0
    assert _gate_warnings(doc) == [
        f"elsewhere:1's stored latency was measured on Other CPU 9000 (64 logical cores), not this one ({here.summary()})"]


def test_stored_figures_measured_with_other_threads_are_not_used(cli, reg: Registry, tiny_onnx: Path, slow_onnx: Path, quick) -> None:
    from mlserve.benchmark.fingerprint import collect

    here = collect()
    reg.register("slow", slow_onnx, metrics={"latency_p50_ms": 1e-6}, meta=_optimize_meta(here.cpu_model, here.logical_cores, threads=1))
    result, doc = cli.json("benchmark", tiny_onnx, "--threads", "3", "--fail-if-slower-than", "slow:1:10", *quick)
    assert result.exit_code == 0  # 1e-6 ms would fail: the stored figure was not used, the artifact was measured
    (check,) = doc["result"]["gate"]["checks"]
    assert check["source"] == "measured" and check["ratio"] < 1
    assert _gate_warnings(doc) == [
        "slow:1's stored latency_p50_ms is not comparable with tiny.onnx (ort-cpu b1 c1) (it was measured with 1 intra-op"
        " threads, this run with 3): its artifact was measured instead"]
    result = cli("benchmark", tiny_onnx, "--threads", "1", "--fail-if-slower-than", "slow:1:10", "--json", *quick)
    assert result.exit_code == exitcodes.GATE_FAILED  # same thread count: the (impossible) stored figure is used
    assert json.loads(result.stdout)["result"]["gate"]["checks"][0]["source"] == "stored-metrics"


def test_record_says_how_the_plain_figures_were_measured(cli, reg: Registry, tiny_onnx: Path, slow_onnx: Path, quick) -> None:
    reg.register("slow", slow_onnx)
    result = cli("benchmark", slow_onnx, "--threads", "3", "--record", "slow:1", *quick)
    assert result.exit_code == 0, result.stderr
    meta = reg.resolve("slow:1").meta["benchmark"]
    assert meta["plain"] == {"backend": "ort-cpu", "threads": 3, "batch_size": 1, "concurrency": 1,
                             "latency_p50_ms": reg.resolve("slow:1").metrics["latency_p50_ms"]}
    # the same setup uses the figure, with no machine warning; another thread count measures the artifact
    result, doc = cli.json("benchmark", tiny_onnx, "--threads", "3", "--fail-if-slower-than", "slow:1:10", *quick)
    assert doc["result"]["gate"]["checks"][0]["source"] == "stored-metrics" and _gate_warnings(doc) == []
    result, doc = cli.json("benchmark", tiny_onnx, "--threads", "1", "--fail-if-slower-than", "slow:1:10", *quick)
    assert doc["result"]["gate"]["checks"][0]["source"] == "measured"


def test_a_plain_figure_overwritten_by_optimize_is_described_by_meta_optimize(tiny_onnx: Path) -> None:
    from mlserve.benchmark.fingerprint import collect
    from mlserve.benchmark.harness import LatencyStats, Stability
    from mlserve.benchmark.run import ModelSource, ResultRow, _stored_figure

    here = collect()
    stats = LatencyStats(count=1, min_ms=1, mean_ms=1, median_ms=1, p90_ms=1, p95_ms=1, p99_ms=1, p999_ms=1, max_ms=1,
                         std_ms=0, cv=0, throughput_per_s=1, wall_s=1)
    row = ResultRow(label="r", role="candidate", model="m", path="m", backend="ort-cpu", provider="CPUExecutionProvider",
                    threads=None, batch_size=1, concurrency=1, stats=stats, items_per_s=1, stable=True,
                    stability=Stability(stable=True, reason="", windows=[], tolerance=0.1, median_spread=0,
                                        throughput_spread=0, cv=0, windows_measured=3))
    plain = {"backend": "ort-cpu", "threads": 3, "batch_size": 1, "concurrency": 1, "latency_p50_ms": 0.5}
    meta = {"benchmark": {"plain": plain, "cpu": here.summary()}, **_optimize_meta(here.cpu_model, here.logical_cores, threads=1)}
    source = ModelSource(text="m:1", path=tiny_onnx, kind="onnx", ref="m:1", stored_metrics={"latency_p50_ms": 0.5}, stored_meta=meta)
    fig = _stored_figure(source, row, here)
    assert (fig.origin, fig.threads, fig.same_machine) == ("benchmark", 3, True)
    source.stored_metrics["latency_p50_ms"] = 0.25  # written since by optimize --register (identical content)
    fig = _stored_figure(source, row, here)
    assert (fig.origin, fig.threads, fig.same_machine) == ("optimize", 1, True)
