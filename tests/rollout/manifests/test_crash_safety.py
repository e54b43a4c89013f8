"""A writer killed at any instant leaves every manifest either old or new, never torn."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from mlserve.rollout.manifests import ManifestStore

WRITER = """
import sys
from mlserve.rollout.manifests import ManifestStore

store = ManifestStore(sys.argv[1])
path = "/spec/rules/0/backendRefs"
print("ready", flush=True)
flip = 0
while True:
    flip ^= 1
    stable, canary = (75, 25) if flip else (90, 10)
    store.patch("HTTPRoute", "churn-api", "ml", [
        {"op": "replace", "path": path + "/0/weight", "value": stable},
        {"op": "replace", "path": path + "/1/weight", "value": canary},
    ])
"""


def test_killed_writer_leaves_old_or_new_file_and_no_manifest_from_its_temp_file(repo: Path, expected: Path) -> None:
    original = (repo / "churn/httproute.yaml").read_bytes()
    valid = {original, (expected / "httproute-75-25.yaml").read_bytes()}
    for delay in (0.05, 0.13, 0.21, 0.34, 0.55):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(repo)], stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout.readline() == "ready\n"
            time.sleep(delay)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        assert (repo / "churn/httproute.yaml").read_bytes() in valid
        store = ManifestStore(repo)  # a later job: temporary files a killed writer left are ignored
        assert len(store.objects()) == 4
        weights = [b["weight"] for b in store.get("HTTPRoute", "churn-api", "ml")["spec"]["rules"][0]["backendRefs"]]
        assert weights in ([90, 10], [75, 25])
        leftovers = [p.name for p in (repo / "churn").iterdir() if p.name.startswith(".")]
        assert all(name.startswith(".tmp-httproute.yaml-") for name in leftovers), leftovers
