"""The environment fingerprint: CPU model, ISA flags and cores from /proc/cpuinfo, library versions."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from mlserve.benchmark.fingerprint import collect

CPUINFO = """processor\t: 0
model name\t: Intel(R) Xeon(R) Platinum 8480+
physical id\t: 0
core id\t\t: 0
flags\t\t: fpu sse4_2 avx avx2 fma avx512f avx512_vnni amx_tile amx_int8 amx_bf16 ht

processor\t: 1
model name\t: Intel(R) Xeon(R) Platinum 8480+
physical id\t: 0
core id\t\t: 0
flags\t\t: fpu sse4_2 avx avx2 fma avx512f avx512_vnni amx_tile amx_int8 amx_bf16 ht

processor\t: 2
model name\t: Intel(R) Xeon(R) Platinum 8480+
physical id\t: 0
core id\t\t: 1
flags\t\t: fpu sse4_2 avx avx2 fma avx512f avx512_vnni amx_tile amx_int8 amx_bf16 ht
"""


def test_cpuinfo_is_parsed(tmp_path: Path) -> None:
    path = tmp_path / "cpuinfo"
    path.write_text(CPUINFO)
    fp = collect(path)
    assert fp.cpu_model == "Intel(R) Xeon(R) Platinum 8480+"
    assert fp.isa_flags == ["sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_vnni", "amx_tile", "amx_int8", "amx_bf16"]
    assert fp.physical_cores == 2  # two distinct (physical id, core id) pairs; three hyperthreads
    assert fp.summary().startswith("Intel(R) Xeon(R) Platinum 8480+ (2C/")
    assert "avx512_vnni" in fp.summary() and "amx_int8" in fp.summary()


def test_this_machine(tmp_path: Path) -> None:
    fp = collect()
    assert fp.logical_cores == os.cpu_count()
    assert fp.usable_cores == len(os.sched_getaffinity(0))
    assert fp.python == ".".join(map(str, sys.version_info[:3]))
    assert fp.packages["numpy"]
    assert fp.cpu_model
    assert collect(tmp_path / "no-such-file").isa_flags == []


def test_collecting_imports_no_heavy_module() -> None:
    code = "import sys; from mlserve.benchmark.fingerprint import collect; collect(); " \
           "print(sorted(m for m in ('torch', 'onnxruntime', 'tensorrt', 'scipy', 'onnx') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_cli_module_imports_no_heavy_module() -> None:
    code = "import sys; import mlserve.cli.benchmark; " \
           "print(sorted(m for m in ('torch', 'onnxruntime', 'tensorrt', 'scipy', 'onnx', 'numpy') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_gpu_name_and_clocks_come_from_nvidia_smi(tmp_path: Path, monkeypatch) -> None:
    """A stand-in nvidia-smi on PATH answers the query the way the real one does (csv, noheader, nounits)."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "args"
    script = bindir / "nvidia-smi"
    script.write_text(f"#!/bin/sh\necho \"$@\" > {log}\necho 'NVIDIA H100 80GB HBM3, 550.54.15, 81559, 1980, 1980, 2619'\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    fp = collect()
    (gpu,) = fp.gpus
    assert gpu.name == "NVIDIA H100 80GB HBM3" and gpu.driver == "550.54.15"
    assert (gpu.memory_total_mib, gpu.sm_clock_mhz, gpu.max_sm_clock_mhz, gpu.memory_clock_mhz) == (81559, 1980, 1980, 2619)
    assert "--format=csv,noheader,nounits" in log.read_text()
    assert fp.summary().endswith(", GPU NVIDIA H100 80GB HBM3")


def test_a_failing_nvidia_smi_means_no_gpu(tmp_path: Path, monkeypatch) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    script = bindir / "nvidia-smi"
    script.write_text("#!/bin/sh\necho 'NVIDIA-SMI has failed because it could not communicate with the NVIDIA driver' >&2\nexit 9\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    assert collect().gpus == []
