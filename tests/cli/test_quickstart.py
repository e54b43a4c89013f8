"""`mlserve quickstart` runs the main job end to end in its own directory, and can run again."""

from __future__ import annotations

import json
from pathlib import Path


def test_quickstart_end_to_end_prints_a_script_that_replays(cli, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    from mlserve.quickstart import MANIFESTS

    workdir = tmp_path / "demo"
    result, doc = cli.json("quickstart", "--workdir", workdir)
    assert result.exit_code == 0
    steps = doc["result"]["steps"]
    names = [s["name"] for s in steps]
    assert names == ["train", "register", "register", "promote", "promote", "rollback", "history", "optimize",
                     "rollout", "verify"]
    assert steps[0]["command"] == "" and all(s["command"].startswith("mlserve ") for s in steps[1:])
    assert steps[3]["command"] == "mlserve promote churn:1 --require 'accuracy>=0.5' --reason 'first production model'"
    assert steps[5]["outcome"] == "production: 2 -> 1" and steps[-1]["outcome"] == "clean"
    assert "parity with the source passed, registered churn:3" in steps[7]["outcome"]
    assert steps[8]["outcome"].startswith("promoted: canary 10% -> 50% -> 100%")
    assert doc["result"]["production"] == "3", "the canary of the optimized version promoted it"
    route = (workdir / "manifests" / "route.yaml").read_text()
    assert "# Public traffic for the churn model" in route, "comments survive the rollout"
    registry = Path(doc["result"]["registry"])
    journal = registry / "models" / "churn" / "journal.jsonl"
    kinds = [json.loads(line)["kind"] for line in journal.read_text().splitlines()]

    text = cli("quickstart", "--workdir", workdir)
    assert text.exit_code == 0, text.stderr
    script = text.stdout
    lines = script.splitlines()
    assert lines[0] == f"# started clean: removed the previous quickstart's files in {workdir}"
    assert lines[4:7] == [f"cd {workdir}", f"export MLSERVE_REGISTRY={registry}", "export MLSERVE_ACTOR=quickstart"]
    assert script.rstrip().endswith("# churn@production is version 3")
    assert [json.loads(line)["kind"] for line in journal.read_text().splitlines()] == kinds, "a rerun starts clean"

    # replay the printed script in a real shell, on a fresh registry and the original manifests
    from mlserve.registry.fsio import remove_tree

    remove_tree(registry)
    remove_tree(workdir / "manifests")
    (workdir / "manifests").mkdir()
    for name, body in MANIFESTS.items():
        (workdir / "manifests" / name).write_text(body)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLSERVE_")}
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    replay = subprocess.run(["bash", "-e", "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert replay.returncode == 0, replay.stderr
    replayed = [json.loads(line) for line in journal.read_text().splitlines()]
    assert [e["kind"] for e in replayed] == kinds and {e["actor"] for e in replayed} == {"quickstart"}
    assert (registry / "models" / "churn" / "current").resolve().name == "3"


def test_quickstart_refuses_a_directory_it_did_not_make(cli, tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    r = cli("quickstart", "--workdir", mine)
    assert r.exit_code == 2 and r.stderr.startswith(f"error: --workdir {mine} is not empty and was not made by")
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]


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
