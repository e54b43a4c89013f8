"""The `serve` and `deploy manifests` commands: help, env vars in --help, usage errors before any
heavy import or bind, and the serving libraries never loaded by other commands."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mlserve import config, exitcodes

SERVE_HEAVY = {"uvicorn", "uvloop", "httptools", "grpc", "prometheus_client", "orjson", "onnxruntime", "onnx"}

PROBE = """
import sys, json
sys.argv = ["mlserve", *json.loads(sys.argv[1])]
try:
    from mlserve.cli.app import main
    main()
except SystemExit as exc:
    code = exc.code
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in {heavy})), file=sys.stderr)
"""


def _probe(tmp_path: Path, args: list[str]) -> tuple[subprocess.CompletedProcess, list[str]]:
    code = PROBE.replace("{heavy}", repr(SERVE_HEAVY))
    env = {"MLSERVE_REGISTRY": str(tmp_path / "reg"), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(args)], capture_output=True, text=True, env=env,
                          timeout=60)
    return proc, json.loads(proc.stderr.strip().splitlines()[-1])


@pytest.mark.parametrize("args", [["--help"], ["serve", "--help"], ["deploy", "manifests", "--help"], ["list"],
                                  ["serve", "bad name@x"], ["serve", "m.onnx", "--http-port", "70000"],
                                  ["serve", "m.onnx", "--metrics-label", "code=1"],
                                  ["serve", "m.onnx", "--max-batch-size", "0"],
                                  ["serve", "m.onnx", "--canary", "m2.onnx", "--canary-weight", "500"],
                                  ["serve", "--split", "missing.json"]])
def test_serving_libraries_load_only_when_a_server_starts(tmp_path: Path, args: list[str]) -> None:
    proc, loaded = _probe(tmp_path, args)
    assert loaded == [], f"mlserve {' '.join(args)} imported {loaded}"


@pytest.mark.parametrize("extra, words", [
    (["--http-port", "70000"], "--http-port 70000"),
    (["--grpc-port", "8000", "--http-port", "8000"], "same as --http-port"),
    (["--metrics-label", "code=500"], "set by the server"),
    (["--metrics-label", "nolabel"], "KEY=VALUE"),
    (["--metrics-label", "bad-name=1"], "not a Prometheus label name"),
    (["--max-batch-size", "0"], "--max-batch-size 0"),
    (["--drain-timeout", "-1"], "--drain-timeout"),
    (["--device", "tpu"], "--device"),
    (["--workers", "0"], "--workers 0"),
    (["b.onnx", "--canary", "c.onnx"], "exactly one REF"),
    (["--canary", "c.onnx", "--canary-weight", "150"], "0 to 100"),
    (["--canary", "other@staging"], "not of 'model'"),
    (["--canary", "c.onnx", "--split", "s.json"], "do not go together"),
    (["--sticky-header", "X User"], "not an HTTP header"),
    (["--sticky-parameter", "1x"], "not a usable parameter"),
    (["--experiment", "e", "b.onnx"], "one served model"),
    (["--assignment-log", "a.jsonl"], "sticky key"),
    (["--admin-token", "short"], "at least 16"),
    (["--admin-token", "x" * 20, "--workers", "2"], "one server process"),
    (["--admin-token", "x" * 20, "--admin-port", "8000"], "already the REST or gRPC port"),
    (["--admin-port", "70000"], "--admin-port 70000"),
    (["--canary-weight", "20"], "--canary-weight needs --canary REF"),
])
def test_bad_options_are_usage_errors(cli, extra: list[str], words: str) -> None:  # noqa: ANN001
    result = cli("serve", "model.onnx", *extra)
    assert result.exit_code == exitcodes.USAGE, result.stderr
    assert result.stderr.startswith("error: ") and words in result.stderr and result.stderr.count("\n") == 1


def test_bad_refs(cli, tmp_path: Path) -> None:  # noqa: ANN001
    r = cli("serve", "Bad Name@production", "--registry", str(tmp_path / "r"))
    assert r.exit_code == exitcodes.USAGE
    r = cli("serve", str(tmp_path / "missing.onnx"))
    assert r.exit_code == exitcodes.NOT_FOUND and "no such file" in r.stderr
    r = cli("serve", "a.onnx", "b/a.onnx")
    assert r.exit_code == exitcodes.USAGE and "both be served as model 'a'" in r.stderr


def test_bad_split_files(cli, tmp_path: Path) -> None:  # noqa: ANN001
    r = cli("serve", "--split", str(tmp_path / "missing.json"))
    assert r.exit_code == exitcodes.NOT_FOUND and "no such file" in r.stderr
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    r = cli("serve", "--split", str(bad))
    assert r.exit_code == exitcodes.USAGE and "not valid JSON" in r.stderr and r.stderr.count("\n") == 1
    bad.write_text(json.dumps({"variants": [{"name": "a", "ref": "m:1", "weight": 0}]}))
    r = cli("serve", "--split", str(bad))
    assert r.exit_code == exitcodes.USAGE and "weight above 0" in r.stderr and str(bad) in r.stderr
    bad.write_text(json.dumps({"variants": [{"name": "a", "ref": "m:1", "weight": 1}, {"name": "b", "ref": "n:1",
                                                                                       "weight": 1}]}))
    r = cli("serve", "--split", str(bad))
    assert r.exit_code == exitcodes.USAGE and "not of 'm'" in r.stderr
    ok = tmp_path / "m.json"
    ok.write_text(json.dumps({"variants": [{"name": "a", "ref": "m:1", "weight": 1}]}))
    r = cli("serve", "m:2", "--split", str(ok))
    assert r.exit_code == exitcodes.USAGE and "given twice" in r.stderr
    toml = tmp_path / "m.toml"
    toml.write_text("variants = [")
    r = cli("serve", "--split", str(toml))
    assert r.exit_code == exitcodes.USAGE and "not valid TOML" in r.stderr


def test_env_vars_are_settings_and_shown_in_help(cli, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    text = cli("serve", "--help").stdout
    for key, setting in config.SETTINGS.items():
        if key.startswith("serve."):
            assert setting.env in text, setting.env
    assert "MLSERVE_SERVE_METRICS_LABELS" in text and "MLSERVE_ADMIN_TOKEN" in text and "Examples:" in text
    monkeypatch.setenv("MLSERVE_SERVE_HTTP_PORT", "99999")
    r = cli("serve", "model.onnx")
    assert r.exit_code == exitcodes.USAGE and "99999" in r.stderr  # the env var is read


def test_deploy_help(cli) -> None:  # noqa: ANN001
    text = cli("deploy", "manifests", "--help").stdout
    assert "Example:" in text and "MLSERVE_NAMESPACE" in text


def _has_cuda() -> bool:
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


def test_cuda_asked_for_where_there_is_none_exits_7(tmp_path: Path, model_files) -> None:  # noqa: ANN001
    if _has_cuda():
        pytest.skip("this machine has CUDA")
    r = subprocess.run([sys.executable, "-m", "mlserve", "serve", str(model_files["mlp"]), "--device", "cuda",
                        "--http-port", "18997", "--grpc-port", "0"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == exitcodes.MISSING_DEPENDENCY, r.stderr
    assert "CUDAExecutionProvider" in r.stderr and "--device cpu" in r.stderr


@pytest.mark.cuda
def test_serves_on_cuda(tmp_path: Path, model_files) -> None:  # noqa: ANN001
    if not _has_cuda():
        pytest.skip("needs onnxruntime with CUDAExecutionProvider and an NVIDIA GPU")
    from serve.support import ServerProcess

    with ServerProcess([str(model_files["mlp"])], tmp_path, "--device", "cuda", "--drain-delay", "0") as srv:
        body = {"inputs": [{"name": "x", "shape": [1, 256], "datatype": "FP32", "data": [0.1] * 256}]}
        assert srv.post("/v2/models/mlp/infer", body)[0] == 200
        loaded = [e for e in srv.log_events() if e.get("event") == "model_loaded"]
        assert loaded[0]["providers"][0] == "CUDAExecutionProvider"


def test_the_admin_token_is_never_shown(cli, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    secret = "do-not-print-this-token-42"
    monkeypatch.setenv("MLSERVE_ADMIN_TOKEN", secret)
    for args in (["config"], ["config", "--json"], ["serve", "--help"], ["--help"]):
        r = cli(*args)
        assert r.exit_code == 0, r.output
        assert secret not in r.stdout and secret not in r.stderr, args
    r = cli("serve", "model.onnx", "--admin-token", "short-secret")  # refused: the message names no token
    assert r.exit_code == exitcodes.USAGE and "short-secret" not in r.stderr
    from mlserve.serve.options import ServeOptions

    assert secret not in repr(ServeOptions(refs=("m.onnx",), admin_token=secret))
