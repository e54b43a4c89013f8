"""The environment a benchmark ran in, so that figures from different machines are never mixed up."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from pydantic import BaseModel, Field

# ISA extensions that change inference speed (x86 /proc/cpuinfo names, plus Arm's)
ISA_FLAGS = (
    "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
    "avx512_bf16", "avx512_fp16", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16", "amx_fp16",
    "asimd", "asimddp", "sve", "sve2", "i8mm", "bf16",
)
PACKAGES = ("numpy", "onnxruntime", "onnxruntime-gpu", "onnx", "torch", "tensorrt")


class GpuInfo(BaseModel):
    name: str
    driver: str | None = None
    memory_total_mib: float | None = None
    sm_clock_mhz: float | None = None
    max_sm_clock_mhz: float | None = None
    memory_clock_mhz: float | None = None


class Fingerprint(BaseModel):
    cpu_model: str
    isa_flags: list[str]
    physical_cores: int | None
    logical_cores: int | None
    usable_cores: int | None = Field(description="cores this process may run on (affinity / cgroup cpuset)")
    os: str
    machine: str
    python: str
    packages: dict[str, str] = Field(description="versions of the libraries that matter, as installed")
    execution_providers: list[str] = Field(default_factory=list, description="ONNX Runtime providers available (when ORT ran)")
    gpus: list[GpuInfo] = Field(default_factory=list)

    def summary(self) -> str:
        cores = f"{self.physical_cores or '?'}C/{self.logical_cores or '?'}T"
        isa = ",".join(f for f in self.isa_flags if f.startswith(("avx", "amx"))) or "-"
        gpu = f", GPU {self.gpus[0].name}" if self.gpus else ""
        return f"{self.cpu_model} ({cores}, {isa}){gpu}"


def _cpuinfo(text: str) -> tuple[str, list[str], int | None]:
    model = ""
    flags: set[str] = set()
    cores: set[tuple[str, str]] = set()
    physical_id = core_id = None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key in ("model name", "Model", "cpu model") and not model:
            model = value
        elif key in ("flags", "Features"):
            flags.update(value.split())
        elif key == "physical id":
            physical_id = value
        elif key == "core id":
            core_id = value
        elif not line.strip():
            if physical_id is not None and core_id is not None:
                cores.add((physical_id, core_id))
            physical_id = core_id = None
    if physical_id is not None and core_id is not None:
        cores.add((physical_id, core_id))
    return model, [f for f in ISA_FLAGS if f in flags], len(cores) or None


def _gpus() -> list[GpuInfo]:
    smi = shutil.which("nvidia-smi")
    if not smi:
        return []
    fields = "name,driver_version,memory.total,clocks.sm,clocks.max.sm,clocks.mem"
    try:
        out = subprocess.run(
            [smi, f"--query-gpu={fields}", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []

    def number(text: str) -> float | None:
        try:
            return float(text)
        except ValueError:
            return None

    gpus = []
    for line in out.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 6:
            gpus.append(GpuInfo(name=parts[0], driver=parts[1], memory_total_mib=number(parts[2]),
                                sm_clock_mhz=number(parts[3]), max_sm_clock_mhz=number(parts[4]),
                                memory_clock_mhz=number(parts[5])))
    return gpus


def _packages() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def collect(cpuinfo_path: Path = Path("/proc/cpuinfo")) -> Fingerprint:
    """Describe this machine. Reads package versions from metadata, so it imports no heavy module."""
    try:
        model, flags, physical = _cpuinfo(cpuinfo_path.read_text(errors="replace"))
    except OSError:
        model, flags, physical = "", [], None
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = None
    ort = sys.modules.get("onnxruntime")  # listed only when an ORT backend ran: never import it just for this
    providers = list(ort.get_available_providers()) if ort is not None else []
    return Fingerprint(
        cpu_model=model or platform.processor() or platform.machine(),
        isa_flags=flags,
        physical_cores=physical,
        logical_cores=os.cpu_count(),
        usable_cores=usable,
        os=f"{platform.system()} {platform.release()}",
        machine=platform.machine(),
        python=platform.python_version(),
        packages=_packages(),
        execution_providers=providers,
        gpus=_gpus(),
    )
