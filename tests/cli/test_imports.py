"""`mlserve --help` and registry commands must not import heavy libraries (fresh interpreters)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ["torch", "onnx", "onnxruntime", "tensorrt", "scipy", "sklearn", "kubernetes", "skl2onnx", "matplotlib",
         "httpx", "ruamel", "grpc", "uvicorn", "prometheus_client", "transformers", "statsmodels"]

PROBE = """
import sys, json, runpy
sys.argv = ["mlserve", *json.loads(sys.argv[1])]
try:
    from mlserve.cli.entry import main
    main()
except SystemExit:
    pass
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in {heavy})), file=sys.stderr)
"""


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["config"], ["list"], ["promote", "m", "1"], ["register", "m", "{art}"],
                                  ["resolve", "m@production"], ["history", "m"], ["show", "m:1"]])
def test_no_heavy_imports(tmp_path: Path, args: list[str]) -> None:
    art = tmp_path / "a.bin"
    art.write_bytes(b"x")
    args = [a.replace("{art}", str(art)) for a in args]
    code = PROBE.replace("{heavy}", repr(set(HEAVY)))
    env = {"MLSERVE_REGISTRY": str(tmp_path / "reg"), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(args)], capture_output=True, text=True, env=env,
                          timeout=60)
    loaded = json.loads(proc.stderr.strip().splitlines()[-1])
    assert loaded == [], f"mlserve {' '.join(args)} imported {loaded}"


@pytest.mark.parametrize("args", [["--version"], ["resolve", "m@production"], ["show", "m:1", "--field", "sha256"]])
def test_the_fast_path_imports_neither_typer_nor_rich(tmp_path: Path, args: list[str]) -> None:
    from mlserve.registry import Registry

    art = tmp_path / "a.bin"
    art.write_bytes(b"x")
    Registry(tmp_path / "reg").register("m", art, stage="production")
    code = PROBE.replace("{heavy}", repr({"typer", "rich", "click"}))
    env = {"MLSERVE_REGISTRY": str(tmp_path / "reg"), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(args)], capture_output=True, text=True, env=env,
                          timeout=60)
    loaded = json.loads(proc.stderr.strip().splitlines()[-1])
    assert loaded == [], f"mlserve {' '.join(args)} imported {loaded}"
