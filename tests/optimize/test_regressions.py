"""Regressions found in the review of `mlserve optimize`: each test fails on the code before its fix."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlserve.errors import ParityError, UsageError
from mlserve.optimize.models import Candidate, Latency
from mlserve.optimize.pipeline import OptimizeOptions, _choose
from mlserve.optimize.specs import parse_tolerance, tolerance_for

FACTORY = "mlserve_optimize_test_models"
FAST = ("--warmup", "0", "--iterations", "3", "--duration", "0", "--rounds", "3")


def doc_of(result: Any) -> dict:
    return json.loads(result.stdout)["result"]


# --- 1. --register on content the registry already holds ------------------------------------


def test_register_identical_content_records_figures_on_the_existing_version(cli: Any, mlp_onnx: Path, tmp_path: Path) -> None:
    from mlserve.registry import Registry

    fp32 = tmp_path / "fp32.onnx"
    built = cli("optimize", mlp_onnx, "--variant", "fp32", "--no-benchmark", "--output", fp32)
    assert built.exit_code == 0, built.stderr
    registry = tmp_path / "registry"
    Registry(root=registry).register("churn", fp32)  # no figures, no lineage
    result = cli("optimize", "churn:1", "--variant", "fp32", *FAST, "--register", "churn", "--registry", registry, "--json")
    assert result.exit_code == 0, result.stderr
    doc = doc_of(result)
    assert doc["registered"]["version"] == "1" and doc["registered"]["created"] is False
    assert doc["registered"]["duplicate_of"] == "1"
    assert any("identical to churn:1" in w and "recorded on churn:1" in w for w in doc["warnings"])
    stored = Registry(root=registry).resolve("churn:1")
    assert stored.meta["optimize"]["variant"] == "fp32" and stored.meta["optimize"]["parity"]["passed"] is True
    assert stored.metrics["latency_p50_ms"] > 0 and "parity_max_abs_err" in stored.metrics
    table = cli("optimize", "churn:1", "--variant", "fp32", "--no-benchmark", "--register", "churn", "--registry", registry)
    assert table.exit_code == 0, table.stderr
    assert "registered: churn:1 (identical content was already stored there" in table.stdout


# --- 2. parity at batch 1 ----------------------------------------------------------------------


def test_a_model_that_differs_at_batch_1_fails_parity(cli: Any, model_dir: Path) -> None:
    result = cli("optimize", "--dry-run", f"{FACTORY}:batch_of_one", "--variant", "fp32", "--no-benchmark", "--json")
    assert result.exit_code == 6, result.stdout
    assert result.stderr.startswith("error: fp32 does not compute the same function as the source: output: ")


# --- 3. non-tensor (ZipMap) outputs ------------------------------------------------------------


def test_onnx_with_zipmap_outputs_is_refused_with_a_hint(cli: Any, sklearn_joblib: Path, tmp_path: Path) -> None:
    import joblib
    import skl2onnx
    from skl2onnx.common.data_types import FloatTensorType

    model = joblib.load(sklearn_joblib)
    onx = skl2onnx.convert_sklearn(model, initial_types=[("X", FloatTensorType([None, 12]))], target_opset=17)  # ZipMap on
    path = tmp_path / "zipmap.onnx"
    path.write_bytes(onx.SerializeToString())
    result = cli("optimize", "--dry-run", path, "--auto", "--no-benchmark")
    assert result.exit_code == 2, (result.stdout, result.stderr)
    line = result.stderr.strip()
    assert line.startswith("error: zipmap.onnx has outputs that are not tensors: 'output_probability' (sequence)")
    assert "'zipmap': False" in line and len(result.stderr.strip().splitlines()) == 1


# --- 4. scikit-learn classifiers: string labels, no predict_proba ------------------------------


def _fit_and_save(tmp_path: Path, name: str, estimator: Any, labels: Any = None, classes: int = 3) -> Path:
    import joblib
    from sklearn.datasets import make_classification

    X, y = make_classification(n_samples=200, n_features=6, n_informative=4, n_classes=classes, random_state=0)
    if labels is not None:
        y = np.asarray(labels)[y]
    path = tmp_path / f"{name}.joblib"
    joblib.dump(estimator.fit(X, y), path)
    return path


@pytest.mark.parametrize(
    ("name", "classes", "labels", "outputs"),
    [
        ("strings", 3, ["cat", "dog", "eel"], {"label", "probabilities"}),
        ("linearsvc", 3, None, {"label", "scores"}),
        ("linearsvc-binary", 2, ["no", "yes"], {"label", "scores"}),
    ],
)
def test_common_classifiers_pass_parity(cli: Any, tmp_path: Path, name: str, classes: int, labels: Any, outputs: set) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import LinearSVC

    estimator = LogisticRegression(max_iter=500) if name == "strings" else LinearSVC()
    path = _fit_and_save(tmp_path, name, estimator, labels, classes)
    result = cli("optimize", "--dry-run", path, "--trust-pickle", "--auto", "--no-benchmark", "--json")
    assert result.exit_code == 0, result.stderr
    fp32 = next(c for c in doc_of(result)["candidates"] if c["name"] == "fp32")
    assert fp32["verdict"] == "chosen" and fp32["parity"]["passed"] is True
    by_output = {o["name"]: o for o in fp32["parity"]["outputs"]}
    assert set(by_output) == outputs
    assert by_output["label"]["top1_agreement"] == 1.0


def test_string_labels_compare_by_equality() -> None:
    from mlserve.optimize.parity import compare_output

    ref = np.array(["cat", "dog", "eel", "dog"])
    same = compare_output("label", ref, np.array(["cat", "dog", "eel", "dog"], dtype=object), "fp32", [])
    assert same.passed and same.top1_agreement == 1.0
    wrong = compare_output("label", ref, np.array(["cat", "cat", "eel", "dog"], dtype=object), "fp32", [])
    assert not wrong.passed and wrong.top1_agreement == 0.75 and wrong.failed_checks == ["labels"]


# --- 5. / 6. factories and registry references -------------------------------------------------


def test_a_factory_that_raises_is_a_usage_error(cli: Any, model_dir: Path) -> None:
    result = cli("optimize", "--dry-run", f"{FACTORY}:raises", "--auto")
    assert result.exit_code == 2, result.stderr
    assert result.stderr.startswith(f"error: factory {FACTORY}:raises raised RuntimeError: weights file missing")
    assert "bug" not in result.stderr and "Traceback" not in result.stderr


def test_registry_reference_wins_over_a_module_of_the_same_name(cli: Any, mlp_onnx: Path, tmp_path: Path) -> None:
    from mlserve.registry import Registry

    registry = tmp_path / "registry"
    Registry(root=registry).register("calendar", mlp_onnx, version="v1")  # `calendar` is also a stdlib module
    result = cli("optimize", "--dry-run", "calendar:v1", "--variant", "fp32", "--no-benchmark", "--registry", registry, "--json")
    assert result.exit_code == 0, result.stderr
    assert (doc_of(result)["source"]["registry_model"], doc_of(result)["source"]["registry_version"]) == ("calendar", "v1")
    neither = cli("optimize", "--dry-run", "json:v9", "--variant", "fp32", "--registry", registry)
    assert neither.exit_code == 3
    assert "module json has no callable 'v9'" in neither.stderr and "not a registry reference either" in neither.stderr


# --- 7. outputs validated before the work -------------------------------------------------------


def test_bad_register_name_and_report_directory_fail_before_any_work(cli: Any, mlp_onnx: Path, tmp_path: Path) -> None:
    out = tmp_path / "never.onnx"
    bad = cli("optimize", mlp_onnx, "--auto", *FAST, "--register", "bad/name", "--output", out)
    assert bad.exit_code == 2 and "bad/name" in bad.stderr
    assert not out.exists()  # refused up front: nothing was built or written
    report_dir = tmp_path / "reports"
    report_dir.mkdir()
    as_dir = cli("optimize", mlp_onnx, "--variant", "fp32", "--no-benchmark", "--report", report_dir, "--output", out)
    assert as_dir.exit_code == 2 and f"--report {report_dir} is a directory" in as_dir.stderr
    assert list(report_dir.iterdir()) == [] and not out.exists()


def test_report_is_written_even_when_registering_fails(cli: Any, mlp_onnx: Path, tmp_path: Path) -> None:
    not_a_registry = tmp_path / "registry-file"
    not_a_registry.write_text("a file, not a registry")
    report = tmp_path / "report.json"
    result = cli("optimize", mlp_onnx, "--variant", "fp32", "--no-benchmark", "--report", report, "--register", "mlp", "--registry", not_a_registry)
    # a registry path that exists but is no directory is exit 8 for every command (README, "The registry")
    assert result.exit_code == 8 and "is a file, not a directory" in result.stderr
    assert json.loads(report.read_text())["chosen"] == "fp32"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


# --- 8. / 9. / 10. options that were silently ignored or could not work ------------------------


def test_static_batch_without_input_is_refused(cli: Any, model_dir: Path) -> None:
    result = cli("optimize", "--dry-run", f"{FACTORY}:mlp", "--variant", "fp32", "--static-batch")
    assert result.exit_code == 2 and result.stderr.startswith("error: --static-batch pins the batch size given in --input")


def test_tolerance_for_an_unknown_output_is_refused(cli: Any, mlp_onnx: Path) -> None:
    result = cli("optimize", "--dry-run", mlp_onnx, "--variant", "fp32", "--no-benchmark", "--tolerance", "logit:1:1")
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: --tolerance names 'logit', which is not an output of the model (its outputs: logits (or '*' for all))"


def test_tolerance_min_cosine_and_min_top1_fields() -> None:
    override = parse_tolerance("logits:1e-2:1e-2:0.9:0.5")
    assert (override.output, override.min_cosine, override.min_top1) == ("logits", 0.9, 0.5)
    tol = tolerance_for("logits", "fp32", [override])
    assert (tol.atol, tol.rtol, tol.min_cosine, tol.min_top1) == (1e-2, 1e-2, 0.9, 0.5)
    assert tolerance_for("logits", "fp32", [parse_tolerance("*:1:1")]).min_cosine == 0.99999  # unchanged when not given
    assert parse_tolerance("out:0:1:1:0.5:0.5").output == "out:0"  # names may hold colons
    for bad in ("logits:1:1:2", "logits:1:1:0.9:1.5", "logits:-1:1"):
        with pytest.raises(UsageError):
            parse_tolerance(bad)


def test_hint_names_the_criterion_that_failed_and_never_hands_out_a_passing_tolerance(cli: Any, mlp_onnx: Path, broken_mlp_onnx: Path) -> None:
    """The old hint offered a ready-to-paste --tolerance sized to the failure: pasting it accepted the broken model."""
    failed = cli("optimize", "--dry-run", mlp_onnx, "--candidate", broken_mlp_onnx, "--no-benchmark", "--tolerance", "logits:10:10")
    assert failed.exit_code == 6
    line = failed.stderr.strip()
    assert "cosine similarity" in line and "relative L2 error 0.5" in line  # by how much, in figures
    assert "failed on the relative L2 error, the cosine similarity" in line
    assert "ATOL/RTOL" not in line and "elements outside" not in line  # atol/rtol already pass
    assert "--tolerance '" not in line and "e.g. --tolerance" not in line  # no ready-made value
    assert "Accepting a lossy model" in line
    default = cli("optimize", "--dry-run", mlp_onnx, "--candidate", broken_mlp_onnx, "--no-benchmark")
    assert default.exit_code == 6 and "--tolerance '" not in default.stderr


# --- 11. the table outside a terminal -----------------------------------------------------------


def test_table_is_complete_without_a_terminal(cli: Any, mlp_onnx: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)  # as in CI logs and pipes: no terminal width at all
    result = cli("optimize", "--dry-run", mlp_onnx, "--variant", "fp32", *FAST, "--threads", "1")
    assert result.exit_code == 0, result.stderr
    row = next(line for line in result.stdout.splitlines() if line.startswith("fp32\t"))
    assert "…" not in result.stdout
    cells = row.split("\t")
    assert cells[1] == "chosen" and cells[2].count(".") == 1 and len(cells[2].split(".")[1]) == 3  # p50 ms, 3 decimals
    assert cells[9] == "1.000000" or len(cells[9]) == 8  # cosine with 6 decimals


# --- 12. --auto's choice rule -------------------------------------------------------------------


def _candidate(name: str, precision: str, p50: float | None, verdict: str = "passed") -> Candidate:
    latency = Latency(p50_ms=p50, p90_ms=p50, mean_ms=p50, min_ms=p50, iterations=3, harness="test") if p50 is not None else None
    return Candidate(name=name, precision=precision, verdict=verdict, latency=latency)  # type: ignore[arg-type]


def test_choose_keeps_fp32_unless_a_variant_beats_it_by_min_gain() -> None:
    options = OptimizeOptions(auto=True, min_gain=0.05)
    fp32, small_gain, slower = _candidate("fp32", "fp32", 1.0), _candidate("int8-dynamic", "int8", 0.97), _candidate("int8-static", "int8", 1.5)
    assert _choose([fp32, small_gain, slower], options) is fp32
    assert small_gain.verdict == "slower" and "not 5% faster than fp32" in (small_gain.reason or "")
    assert slower.verdict == "slower"
    fast, faster = _candidate("int8-dynamic", "int8", 0.9), _candidate("int8-static", "int8", 0.5)
    failed = _candidate("file:x.onnx", "fp32", 0.1, verdict="failed-parity")
    assert _choose([_candidate("fp32", "fp32", 1.0), fast, faster, failed], options) is faster  # never a failed one
    assert _choose([_candidate("fp32", "fp32", 1.0), _candidate("int8-dynamic", "int8", 0.97)], OptimizeOptions(auto=True, min_gain=0.0)).name == "int8-dynamic"
    assert _choose([_candidate("fp32", "fp32", None), _candidate("int8-dynamic", "int8", None)], options).name == "fp32"  # --no-benchmark
    with pytest.raises(ParityError):
        _choose([_candidate("fp32", "fp32", 1.0, verdict="failed-parity"), fast], options)


def test_auto_never_picks_a_slower_equivalent_candidate(cli: Any, mlp_onnx: Path, tmp_path: Path) -> None:
    import onnx
    from onnx import helper, numpy_helper

    # the same MLP followed by 300 multiplications by the identity matrix: exact, and much slower
    model = onnx.load(str(mlp_onnx))
    out = model.graph.output[0].name
    model.graph.initializer.append(numpy_helper.from_array(np.eye(5, dtype=np.float32), "eye"))
    for node in model.graph.node:
        node.output[:] = ["pre_0" if n == out else n for n in node.output]
    for i in range(300):
        model.graph.node.append(helper.make_node("MatMul", [f"pre_{i}", "eye"], [out if i == 299 else f"pre_{i + 1}"]))
    slow = tmp_path / "slow.onnx"
    onnx.save(model, str(slow))
    result = cli("optimize", "--dry-run", mlp_onnx, "--auto", *FAST, "--threads", "1", "--candidate", slow, "--json")
    assert result.exit_code == 0, result.stderr
    by_name = {c["name"]: c for c in doc_of(result)["candidates"]}
    assert by_name["file:slow.onnx"]["parity"]["passed"] is True
    assert by_name["file:slow.onnx"]["verdict"] == "slower"
    assert doc_of(result)["chosen"] != "file:slow.onnx"


# --- 13. --output-dir keeps failed candidates too, named as such --------------------------------


def test_output_dir_keeps_failed_candidates_with_a_telling_name(cli: Any, mlp_onnx: Path, broken_mlp_onnx: Path, tmp_path: Path) -> None:
    every = tmp_path / "all"
    result = cli("optimize", mlp_onnx, "--auto", "--no-benchmark", "--candidate", broken_mlp_onnx, "--output-dir", every, "--json")
    assert result.exit_code == 0, result.stderr
    names = sorted(p.name for p in every.iterdir())
    assert "mlp.file-mlp-broken.onnx.FAILED-PARITY.onnx" in names and "mlp.fp32.onnx" in names
    broken = next(c for c in doc_of(result)["candidates"] if c["name"] == "file:mlp-broken.onnx")
    assert broken["path"].endswith(".FAILED-PARITY.onnx")


# --- 14. every user row is compared --------------------------------------------------------------


def test_user_rows_that_do_not_fill_a_batch_are_kept(tmp_path: Path) -> None:
    from mlserve.optimize.feeds import load_user_data
    from mlserve.inputs import InputSpec

    path = tmp_path / "rows.npy"
    np.save(path, np.zeros((11, 4), np.float32))
    dynamic = load_user_data(path, [InputSpec(name="x", shape=[None, 4])], batch=8)
    assert [len(f["x"]) for f in dynamic] == [8, 3]
    pinned = load_user_data(path, [InputSpec(name="x", shape=[4, 4], dynamic_batch=False)], batch=8)
    assert [len(f["x"]) for f in pinned] == [4, 4]


# --- 15. an FP32 baseline that cannot be built keeps its own exit code ---------------------------


def test_fp32_build_error_keeps_its_exit_code() -> None:
    from mlserve.optimize.pipeline import _raise_baseline_error

    _raise_baseline_error({"int8-static": UsageError("x")})  # only the baseline matters
    with pytest.raises(UsageError) as caught:
        _raise_baseline_error({"fp32": UsageError("fp32 cannot run: boom", hint="check the export")})
    assert caught.value.exit_code == 2 and not isinstance(caught.value, ParityError)
    assert str(caught.value).startswith("the FP32 ONNX baseline could not be built, so no candidate can be trusted: fp32 cannot run: boom")
    assert caught.value.hint == "check the export"


# --- 16. calibration progress ---------------------------------------------------------------------


def test_calibration_progress_advances_per_batch(mlp_onnx: Path, tmp_path: Path) -> None:
    from contextlib import contextmanager

    from mlserve.inputs import InputSpec
    from mlserve.optimize.variants import BuildContext, build_int8_static
    from mlserve.progress import Progress, Task

    class Recorder(Progress):
        def __init__(self) -> None:
            self.advanced: dict[str, float] = {}

        @contextmanager
        def task(self, description: str, total: float | None = None) -> Any:
            recorder = self

            class Counting(Task):
                def advance(self, amount: float = 1) -> None:
                    recorder.advanced[description] = recorder.advanced.get(description, 0) + amount

            yield Counting()

    progress = Recorder()
    ctx = BuildContext(source_onnx=mlp_onnx, workdir=tmp_path, specs=[InputSpec(name="x", shape=[None, 32])], calibration_batches=5, progress=progress)
    build_int8_static(ctx)
    assert progress.advanced.get("int8-static: calibrating on 5 batches", 0) >= 5
