"""Writing what ``optimize`` produced: artifacts (atomically, with the permissions the umask gives), the
JSON report, and the registry version with its lineage and figures."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from mlserve.errors import UsageError
from mlserve.optimize.models import Candidate, OptimizeResult, Registered

if TYPE_CHECKING:
    from mlserve.optimize.pipeline import OptimizeOptions
    from mlserve.optimize.sources import LoadedSource


def current_umask() -> int:
    """The process umask, read without changing it where Linux says it (/proc), else set-and-restore."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _scratch(target: Path) -> tuple[int, str]:
    """A scratch file next to ``target`` with the mode a plain open() would give it (0666 less the umask):
    mkstemp's 0600 would keep a server running as another user from reading the artifact."""
    fd, scratch = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    os.fchmod(fd, 0o666 & ~current_umask())
    return fd, scratch


def write_outputs(result: OptimizeResult, candidates: list[Candidate], artifacts: dict[str, Path], chosen: Candidate | None,
                  options: "OptimizeOptions", source: "LoadedSource") -> None:
    if options.output_dir:
        options.output_dir.mkdir(parents=True, exist_ok=True)
        for c in candidates:
            if c.name not in artifacts:
                continue
            # every candidate that was built is kept; one that failed parity says so in its name
            tag = ".FAILED-PARITY" if c.verdict == "failed-parity" else ""
            suffix = artifacts[c.name].suffix
            target = options.output_dir / f"{_stem(source)}.{c.name.replace(':', '-')}{tag}{suffix}"
            _atomic_copy(artifacts[c.name], target)
            c.path = str(target)
        result.output_dir = str(options.output_dir)
    chosen_path: Path | None = None
    if chosen is not None:
        chosen_path = artifacts[chosen.name]
        if options.output:
            _atomic_copy(chosen_path, options.output)
            result.output = str(options.output)
            chosen_path = options.output
    elif options.output or options.register_as:
        raise UsageError("no candidate was chosen, so nothing can be written to --output or registered")
    if options.report:
        result.report = str(options.report)
        _write_report(result, options.report)  # before registering: a failed registration keeps the report
    if options.register_as and chosen is not None and chosen_path is not None:
        result.registered = _register(options, result, chosen, chosen_path)
        if options.report:
            _write_report(result, options.report)  # now with the registered version


def _write_report(result: OptimizeResult, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, scratch = _scratch(path)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(result.model_dump_json(indent=2) + "\n")
        os.replace(scratch, path)
    except BaseException:
        Path(scratch).unlink(missing_ok=True)
        raise


def _atomic_copy(source: Path, target: Path) -> None:
    """Copy next to the target, then rename: an interrupted run never leaves a half-written artifact."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, scratch = _scratch(target)
    os.close(fd)
    try:
        shutil.copyfile(source, scratch)
        os.replace(scratch, target)
    except BaseException:
        Path(scratch).unlink(missing_ok=True)
        raise


def _stem(source: "LoadedSource") -> str:
    if source.path:
        return source.path.stem
    return "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in source.location).strip("-") or "model"


def _register(options: "OptimizeOptions", result: OptimizeResult, chosen: Candidate, path: Path) -> Registered:
    from mlserve.registry import Registry

    metrics: dict[str, float] = {}
    if chosen.latency:
        metrics["latency_p50_ms"] = chosen.latency.p50_ms
        metrics["latency_p90_ms"] = chosen.latency.p90_ms
    if chosen.speedup_vs_source:
        metrics["speedup_vs_source"] = chosen.speedup_vs_source
    if chosen.parity:
        metrics["parity_max_abs_err"] = max(o.max_abs_err for o in chosen.parity.outputs)
        metrics["parity_min_cosine"] = min(o.cosine for o in chosen.parity.outputs)
        metrics["parity_max_rel_l2_err"] = max(o.rel_l2_err for o in chosen.parity.outputs)
        top1 = [o.top1_agreement for o in chosen.parity.outputs if o.top1_agreement is not None]
        if top1:
            metrics["parity_top1_agreement"] = min(top1)
    meta = {
        "optimize": {
            "variant": chosen.name,
            "recipe": chosen.recipe,
            "source": result.source.model_dump(mode="json", include={"kind", "location", "sha256", "registry_model", "registry_version", "exporter"}),
            "tools": result.tools,
            "hardware": result.hardware,
            "measurement": result.measurement.model_dump(mode="json") if result.measurement else None,
            "speedup": chosen.speedup.model_dump(mode="json") if chosen.speedup else None,
            "parity": chosen.parity.model_dump(mode="json") if chosen.parity else None,
            "candidates": [
                {"name": c.name, "verdict": c.verdict, "p50_ms": c.latency.p50_ms if c.latency else None, "reason": c.reason}
                for c in result.candidates
            ],
        }
    }
    reg = Registry(root=options.registry_root, lock_timeout=options.lock_timeout)
    done = reg.register(options.register_as, path, metrics=metrics, meta=meta)  # type: ignore[arg-type]
    if done.duplicate_of:
        # identical content is never stored twice: the figures and lineage go on the version that holds it
        reg.record_metrics(done.model, done.version, metrics, meta=meta, reason="mlserve optimize: figures of identical content")
        result.warnings.append(
            f"the chosen artifact is identical to {done.model}:{done.duplicate_of}; no new version was created, "
            f"its figures and lineage were recorded on {done.model}:{done.duplicate_of}"
        )
    else:
        result.warnings.extend(done.warnings)
    return Registered(model=done.model, version=str(done.version), sha256=done.sha256, created=done.created, duplicate_of=done.duplicate_of)
