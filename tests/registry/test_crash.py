"""Processes killed with SIGKILL at random instants leave a registry that loads and repairs clean."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from mlserve.registry import Registry

WORKER = Path(__file__).with_name("worker.py")


def test_sigkill_during_register_promote_rollback(tmp_path: Path) -> None:
    root = tmp_path / "reg"
    rng = random.Random(1234)
    for round_ in range(12):
        proc = subprocess.Popen([sys.executable, str(WORKER), str(root), "churn", str(round_), "0"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        # let it get past start-up (imports) most of the time, then kill it mid-flight
        time.sleep(0.35 + rng.random() * 0.6)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL, proc.stderr.read() if proc.stderr else ""

        reg = Registry(root, lock_timeout=10)
        if not (root / "models" / "shared" / "model.json").exists():
            continue  # killed before the first registration finished
        # the registry loads and every pointer leads to a complete version
        versions = {v.version for v in reg.list_versions("shared").versions}
        production = root / "models" / "shared" / "stages" / "production"
        if production.is_symlink():
            target = os.readlink(production)
            assert target.startswith("../versions/") and Path(target).name in versions
            assert (production / "version.json").is_file()
            assert reg.resolve("shared").artifact_path.is_file()
        reg.verify(repair=True)
        after = reg.verify()
        assert after.problems == [], after.problems
        assert after.versions_checked == len(versions)
    assert len(Registry(root).list_versions("shared").versions) > 0, "the workers made progress"
