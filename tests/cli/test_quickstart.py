"""`mlserve quickstart` runs the main job end to end in its own directory, and can run again."""

from __future__ import annotations

import json
from pathlib import Path


def test_quickstart_end_to_end_and_rerun(cli, tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    result, doc = cli.json("quickstart", "--workdir", workdir)
    assert result.exit_code == 0
    steps = doc["result"]["steps"]
    names = [s["name"] for s in steps]
    assert names[:7] == ["train", "register", "register", "promote", "promote", "rollback", "history"]
    assert names[7:] == ["optimize", "rollout", "verify"] and steps[-1]["outcome"] == "clean"
    assert steps[5]["outcome"] == "production: 2 -> 1"
    assert "parity passed), registered churn:3" in steps[7]["outcome"]
    assert steps[8]["outcome"].startswith("promoted: canary 10% -> 50% -> 100%")
    assert doc["result"]["production"] == "3", "the canary of the optimized version promoted it"
    route = (workdir / "manifests" / "route.yaml").read_text()
    assert "# Public traffic for the churn model" in route, "comments survive the rollout"
    registry = Path(doc["result"]["registry"])
    assert (registry / "models" / "churn" / "current").resolve().name == "3"
    history = [json.loads(line) for line in (registry / "models" / "churn" / "journal.jsonl").read_text().splitlines()]
    assert [e["kind"] for e in history][:5] == ["register", "register", "promote", "promote", "rollback"]
    assert [(e["kind"], e.get("to_version")) for e in history if e["kind"] in {"promote", "rollback"}][-1] == (
        "promote", "3")

    again = cli("quickstart", "--workdir", workdir)
    assert again.exit_code == 0, again.stderr
    assert "already registered as churn:1" in again.stdout
    assert "churn@production is version 3" in again.stdout


def test_register_reports_progress_in_bytes(tmp_path: Path) -> None:
    from contextlib import contextmanager

    from mlserve.progress import Progress, Task
    from mlserve.registry import Registry

    class Recorder(Progress):
        def __init__(self) -> None:
            self.tasks: list[list] = []

        @contextmanager
        def task(self, description, total=None):
            record = [description, total, 0]
            self.tasks.append(record)

            class _T(Task):
                def advance(self, amount=1):
                    record[2] += amount

            yield _T()

    art = tmp_path / "big.bin"
    art.write_bytes(b"x" * (3 * 1024 * 1024 + 17))
    progress = Recorder()
    reg = Registry(tmp_path / "reg")
    reg.register("m", art, progress=progress)
    assert progress.tasks == [["copying big.bin", 3 * 1024 * 1024 + 17, 3 * 1024 * 1024 + 17]]
    progress.tasks.clear()
    reg.promote("m", "1", progress=progress)
    assert progress.tasks == [["verifying m:1", 3 * 1024 * 1024 + 17, 3 * 1024 * 1024 + 17]]
