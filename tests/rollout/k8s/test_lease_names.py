"""One Lease per exact model name: `IRIS`, `Iris` and `iris` must never share a rollout record."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime, timedelta, timezone

import pytest

from mlserve import exitcodes
from mlserve.errors import ConflictError
from mlserve.rollout.state import MODEL_LABEL, STATE_ANNOTATION, LeaseStateStore, RolloutState, lease_name
from rollout.k8s.k8s_support import NS, STABLE_DEPLOYMENT, ScriptedJudge, config, engine

DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)


def state_of(model: str) -> RolloutState:
    return RolloutState(model=model, version="2", strategy="canary", namespace=NS, router="gateway", steps=[100],
                        pause_seconds=1, owner="someone@host:1", started_at=T0, deadline=T0 + timedelta(hours=1),
                        lease_seconds=30, stable="iris", canary="iris-canary", traffic_object="HTTPRoute/iris",
                        phase="succeeded", outcome="promoted")


def test_plain_names_keep_their_lease_and_others_get_a_hash_of_the_exact_name():
    # Plain lowercase DNS names are unchanged: Leases written before keep being found.
    assert lease_name("iris") == "mlserve-rollout-iris"
    assert lease_name("churn-v2") == "mlserve-rollout-churn-v2"
    # Anything else: the sanitized name plus 8 hex digits of the exact name's sha256.
    for model, slug in (("IRIS", "iris"), ("Iris", "iris"), ("my_model", "my-model"), ("iris.v2", "iris-v2"), ("a+b", "a-b")):
        assert lease_name(model) == f"mlserve-rollout-{slug}-{hashlib.sha256(model.encode()).hexdigest()[:8]}"
    names = ["iris", "IRIS", "Iris", "iRiS", "my_model", "my.model", "my+model", "my-model"]
    assert len({lease_name(n) for n in names}) == len(names)
    for model in names + ["X" * 128, "x" * 128, "_a_"]:
        assert DNS_SUBDOMAIN.match(lease_name(model)) and len(lease_name(model)) <= 253


def test_lease_label_is_a_valid_label_value_even_for_long_names(store, cluster):
    states = LeaseStateStore(store, NS)
    for model in ("x" * 128, "Model_" + "y" * 120):
        states.create(state_of(model))
        label = cluster.get("Lease", lease_name(model), NS)["metadata"]["labels"][MODEL_LABEL]
        assert len(label) <= 63 and LABEL_VALUE.match(label), label


def test_names_that_differ_only_in_case_have_separate_leases(store, cluster):
    states = LeaseStateStore(store, NS)
    states.create(state_of("iris"))
    assert states.load("IRIS") is None and states.load("Iris") is None
    states.create(state_of("IRIS"))  # no 409: it is another model's lock
    assert states.load("iris").state.model == "iris"
    assert states.load("IRIS").state.model == "IRIS"
    assert cluster.get("Lease", "mlserve-rollout-iris", NS) is not None


def test_a_lease_holding_another_models_state_is_refused(store, cluster):
    """A Lease written by an older mlserve, which named IRIS's Lease mlserve-rollout-iris, is never taken for iris's."""
    states = LeaseStateStore(store, NS)
    states.create(state_of("IRIS"))
    legacy = cluster.get("Lease", lease_name("IRIS"), NS)
    cluster.put({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                 "metadata": {"name": "mlserve-rollout-iris", "namespace": NS,
                              "annotations": {STATE_ANNOTATION: legacy["metadata"]["annotations"][STATE_ANNOTATION]}},
                 "spec": legacy["spec"]})
    with pytest.raises(ConflictError) as info:
        states.load("iris")
    assert info.value.message == f"Lease {NS}/mlserve-rollout-iris holds the rollout state of model 'IRIS', not 'iris'"
    assert "\n" not in str(info.value)


def test_status_and_undo_of_another_case_do_not_touch_the_rollout(seeded, store, registry, cli):
    result = engine(store, registry, ScriptedJudge()).run(config(steps=[100]))
    assert result.outcome == "promoted", result.message
    before = seeded.get("Deployment", "iris", NS)
    writes = len(seeded.writes())
    for command in ("status", "undo"):
        for name in ("IRIS", "Iris"):
            registry_opt = ["--registry", str(registry.root)] if command == "undo" else []
            out = cli("rollout", command, name, "-n", NS, "--server", seeded.url, *registry_opt, "--json")
            assert out.exit_code == exitcodes.NOT_FOUND, (command, name, out.stdout, out.stderr)
            assert json.loads(out.stdout)["error"]["message"] == f"no rollout of {name} recorded in namespace {NS}"
    assert len(seeded.writes()) == writes
    assert seeded.get("Deployment", "iris", NS)["spec"] == before["spec"]
    assert STABLE_DEPLOYMENT["spec"]["template"]["spec"]["containers"][0]["image"] != \
        before["spec"]["template"]["spec"]["containers"][0]["image"]  # iris really was moved to version 2
    status = cli("rollout", "status", "iris", "-n", NS, "--server", seeded.url, "--json")
    assert status.exit_code == exitcodes.OK, status.stderr
