"""The local rollout state: Lease documents kept as records in the registry directory, with the API server's rules."""

from __future__ import annotations

import threading

import pytest

from mlserve import exitcodes
from mlserve.errors import ConflictError, IntegrityError, NotFoundError, UsageError
from mlserve.registry import Registry
from mlserve.rollout.local.state import RegistryLeases


def lease(name: str = "mlserve-rollout-churn", holder: str = "a") -> dict:
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": name},
            "spec": {"holderIdentity": holder}}


def test_create_is_the_lock_and_every_write_bumps_the_resource_version(registry):
    leases = RegistryLeases(Registry(registry))
    first = leases.create(lease())
    assert first["metadata"]["resourceVersion"] == "1"
    with pytest.raises(ConflictError, match="already exists"):
        leases.create(lease(holder="b"))
    guard = {"op": "test", "path": "/metadata/resourceVersion", "value": "1"}
    changed = leases.patch("Lease", "mlserve-rollout-churn", "local",
                           [guard, {"op": "replace", "path": "/spec/holderIdentity", "value": "b"}])
    assert (changed["metadata"]["resourceVersion"], changed["spec"]["holderIdentity"]) == ("2", "b")
    with pytest.raises(ConflictError):  # a writer that read version 1 loses
        leases.patch("Lease", "mlserve-rollout-churn", "local",
                     [guard, {"op": "replace", "path": "/spec/holderIdentity", "value": "c"}])
    assert leases.get("Lease", "mlserve-rollout-churn", "local")["spec"]["holderIdentity"] == "b"
    assert (registry / "rollouts" / "mlserve-rollout-churn.json").exists()
    leases.delete("Lease", "mlserve-rollout-churn", "local")
    assert leases.get("Lease", "mlserve-rollout-churn", "local") is None
    with pytest.raises(NotFoundError):
        leases.delete("Lease", "mlserve-rollout-churn", "local")


def test_concurrent_guarded_writers_never_both_win(registry):
    leases = RegistryLeases(Registry(registry))
    leases.create(lease())
    wins, losses = [], []

    def writer(who: str) -> None:
        for _ in range(20):
            seen = leases.get("Lease", "mlserve-rollout-churn", "local")
            ops = [{"op": "test", "path": "/metadata/resourceVersion", "value": seen["metadata"]["resourceVersion"]},
                   {"op": "replace", "path": "/spec/holderIdentity", "value": who}]
            try:
                leases.patch("Lease", "mlserve-rollout-churn", "local", ops)
                wins.append(who)
            except ConflictError:
                losses.append(who)

    threads = [threading.Thread(target=writer, args=(w,)) for w in ("x", "y", "z")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    final = leases.get("Lease", "mlserve-rollout-churn", "local")
    assert int(final["metadata"]["resourceVersion"]) == 1 + len(wins)  # every win is one version, none lost
    assert len(wins) + len(losses) == 60


def test_bad_records_and_other_kinds_are_refused(registry):
    leases = RegistryLeases(Registry(registry))
    with pytest.raises(UsageError, match="Leases only"):
        leases.get("Deployment", "x", "local")
    with pytest.raises(UsageError, match="invalid record name"):
        leases.get("Lease", "../escape", "local")
    (registry / "rollouts").mkdir()
    (registry / "rollouts" / "mlserve-rollout-churn.json").write_text("{half")
    with pytest.raises(IntegrityError, match="not valid JSON"):
        leases.get("Lease", "mlserve-rollout-churn", "local")


def test_the_registry_tolerates_the_rollouts_folder(registry, cli):
    RegistryLeases(Registry(registry)).create(lease())
    result = cli("verify", "--registry", str(registry))
    assert result.exit_code == exitcodes.OK, result.stdout + result.stderr
    assert Registry(registry).resolve("churn@production").version == "1"
