"""What a version accepts: names, metadata, artifact links, and one transaction for set-meta with metrics."""

from __future__ import annotations

import json

import os
from pathlib import Path

import pytest

from mlserve import errors, exitcodes
from mlserve.registry import Registry, parse_ref


def art(tmp_path: Path, name: str = "a", body: str = "a") -> Path:
    path = tmp_path / name
    path.write_text(body)
    return path


@pytest.mark.parametrize("bad", ["m\n", "m\r\n", "\nm"])
def test_names_versions_and_stages_with_a_newline_are_refused(reg: Registry, tmp_path: Path, bad: str) -> None:
    with pytest.raises(errors.InvalidNameError):
        reg.register(bad, art(tmp_path))
    with pytest.raises(errors.InvalidNameError):
        reg.register("m", art(tmp_path), version=bad)
    reg.register("m", art(tmp_path))
    with pytest.raises(errors.InvalidNameError):
        reg.promote("m", "1", stage=bad.replace("m", "production"))
    with pytest.raises(errors.InvalidNameError):
        reg.tag("m", "1", [bad])
    assert parse_ref(f"{bad}@production") is None and parse_ref(f"m:{bad}") is None
    assert [m.name for m in reg.list_models().models] == ["m"]


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf"), {"deep": [1, float("nan")]}])
def test_non_finite_metadata_is_refused_anywhere_in_the_value(reg: Registry, tmp_path: Path, value) -> None:
    with pytest.raises(errors.UsageError, match="not a finite number"):
        reg.register("m", art(tmp_path), meta={"k": value})
    reg.register("m", art(tmp_path))
    with pytest.raises(errors.UsageError, match="not a finite number"):
        reg.set_meta("m", "1", {"k": value})
    with pytest.raises(errors.UsageError, match="not a finite number"):
        reg.record_metrics("m", "1", {"auc": 0.5}, meta={"k": value})
    assert reg.version_info("m", "1").meta == {} and [e.kind for e in reg.events("m")] == ["register"]


@pytest.mark.parametrize("text", ["NaN", "Infinity", "-Infinity", "1e309", '{"a": NaN}'])
def test_the_cli_refuses_non_finite_meta_values(cli, registry_dir: Path, tmp_path: Path, text: str) -> None:
    r = cli("register", "m", art(tmp_path), "--meta", f"k={text}")
    assert r.exit_code == exitcodes.USAGE and "not a finite number" in r.stderr, r.stderr
    assert cli("register", "m", art(tmp_path)).exit_code == 0
    r = cli("set-meta", "m:1", f"k={text}")
    assert r.exit_code == exitcodes.USAGE and r.stderr.count("\n") == 1, r.stderr
    assert cli("register", "m", art(tmp_path, "b", "b"), "--meta", "k=1e308").exit_code == 0, "large finite is fine"


def test_a_directory_link_that_leaves_and_re_enters_is_refused_at_register(reg: Registry, tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "w.bin").write_text("w")
    os.symlink("../bundle/w.bin", bundle / "latest.bin")  # resolves inside, but only through the parent
    with pytest.raises(errors.UsageError, match="leaves the artifact directory"):
        reg.register("b", bundle)
    assert not reg.root.joinpath("models", "b", "versions").exists()
    assert not [p for p in (reg.root / ".staging").iterdir()], "nothing left in staging"
    os.unlink(bundle / "latest.bin")
    (bundle / "sub").mkdir()
    os.symlink("../w.bin", bundle / "sub" / "up.bin")  # up one level, still inside: fine
    version = reg.register("b", bundle).version
    assert reg.promote("b", version).version == version


def test_set_meta_with_metrics_is_one_transaction(reg: Registry, tmp_path: Path) -> None:
    reg.register("m", art(tmp_path))
    reg.set_meta("m", "1", {"old": 1})
    info = reg.set_meta("m", "1", {"owner": "team"}, unset=["old"], metrics={"latency_p50_ms": 1.8})
    assert (info.meta, info.metrics) == ({"owner": "team"}, {"latency_p50_ms": 1.8})
    last = reg.events("m")[-1]
    assert (last.kind, last.details) == ("set-meta", {"meta": {"owner": "team"}, "unset": ["old"],
                                                      "metrics": {"latency_p50_ms": 1.8}})
    assert [e.kind for e in reg.events("m")] == ["register", "set-meta", "set-meta"]
    with pytest.raises(errors.UsageError, match="not a finite number"):
        reg.set_meta("m", "1", {"x": 1}, metrics={"bad": float("nan")})
    assert len(reg.events("m")) == 3, "a refused change journals nothing"


def test_unset_hides_registration_metadata_and_survives_repair(reg: Registry, tmp_path: Path) -> None:
    reg.register("m", art(tmp_path), meta={"team": "a", "owner": "b"})
    info = reg.set_meta("m", "1", {}, unset=["team"])
    assert (info.meta, info.warnings) == ({"owner": "b"}, [])
    assert reg.resolve("m:1").meta == {"owner": "b"}
    record = json.loads((reg.root / "models/m/versions/1/version.json").read_text())
    assert record["meta"] == {"team": "a", "owner": "b"}, "the registration record itself never changes"
    info = reg.set_meta("m", "1", {}, unset=["nothere"])
    assert info.warnings == ["m:1 has no metadata key 'nothere'; nothing to unset"]
    assert [e.kind for e in reg.events("m")] == ["register", "set-meta"], "an unset of nothing journals nothing"
    with pytest.raises(errors.UsageError, match="both set and unset"):
        reg.set_meta("m", "1", {"team": "c"}, unset=["team"])
    assert reg.set_meta("m", "1", {"team": "c"}).meta == {"owner": "b", "team": "c"}
    assert reg.set_meta("m", "1", {}, unset=["team"]).meta == {"owner": "b"}
    (reg.root / "models/m/versions/1/state.json").unlink()
    assert [p.kind for p in reg.verify().problems] == ["state-mismatch"]
    reg.verify(repair=True)
    assert reg.version_info("m", "1").meta == {"owner": "b"}, "the journal replays the unset"
    assert reg.verify().problems == []
