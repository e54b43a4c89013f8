"""`mlserve deploy manifests`: its objects, fed to the rollout tests' Kubernetes emulator and driven by
`mlserve rollout canary` and `rollout plan`, keep the labels and the version the server reads."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from helpers.kube import start_cluster
from helpers.kube.server import Cluster
from ruamel.yaml import YAML

from mlserve import exitcodes
from mlserve.registry import Registry

NS = "ml"


@pytest.fixture
def registry(tmp_path: Path, model_files) -> Registry:  # noqa: ANN001
    reg = Registry(tmp_path / "registry")
    reg.register("iris", model_files["mlp"], version="1")
    reg.register("iris", model_files["mlp_b"], version="2")
    reg.promote("iris", "1")
    return reg


def _objects(cli, registry: Registry, *extra: str) -> list[dict]:  # noqa: ANN001
    result = cli("deploy", "manifests", "iris@production", "--image", "ghcr.io/acme/iris-serve:{version}", "-n", NS,
                 "--registry", str(registry.root), *extra)
    assert result.exit_code == 0, result.stderr
    docs = [d for d in YAML(typ="safe").load_all(result.stdout) if d]
    _, doc = cli.json("deploy", "manifests", "iris@production", "--image", "ghcr.io/acme/iris-serve:{version}",
                      "-n", NS, "--registry", str(registry.root), *extra)
    assert doc["result"]["objects"] == docs  # the YAML and the JSON document say the same
    return docs


def test_objects(cli, registry: Registry) -> None:  # noqa: ANN001
    dep, svc, pdb, route = _objects(cli, registry, "--drain-delay", "5", "--drain-timeout", "30")
    assert [d["kind"] for d in (dep, svc, pdb, route)] == ["Deployment", "Service", "PodDisruptionBudget", "HTTPRoute"]
    pod = dep["spec"]["template"]
    c = pod["spec"]["containers"][0]
    env = {e["name"]: e for e in c["env"]}
    assert c["image"] == "ghcr.io/acme/iris-serve:1"
    assert c["command"] == ["mlserve"] and c["args"][:2] == ["serve", "iris:$(MLSERVE_MODEL_VERSION)"]
    assert env["MLSERVE_MODEL_VERSION"]["value"] == "1"
    assert env["MLSERVE_SERVE_HOST"]["value"] == "0.0.0.0"
    assert env["MLSERVE_DEPLOYMENT"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.labels['mlserve.dev/deployment']"
    assert "deployment=$(MLSERVE_DEPLOYMENT)" in c["args"] and "namespace=$(MLSERVE_POD_NAMESPACE)" in c["args"]
    assert pod["metadata"]["annotations"]["rollout.mlserve.dev/version"] == "1"
    assert c["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert c["startupProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert c["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert "preStop" in c["lifecycle"]
    assert pod["spec"]["terminationGracePeriodSeconds"] > 5 + 5 + 30  # preStop + drain delay + drain timeout
    assert c["resources"]["requests"]["cpu"] and c["resources"]["limits"]["memory"]
    assert svc["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"] == pdb["spec"]["selector"]["matchLabels"]
    assert svc["spec"]["selector"]["mlserve.dev/deployment"] == dep["metadata"]["name"] == "iris"
    assert route["spec"]["rules"][0]["backendRefs"] == [{"name": "iris", "port": 8000, "weight": 100}]
    assert pdb["spec"]["minAvailable"] == 1


def test_not_onnx_and_bad_options_are_usage_errors(cli, registry: Registry, tmp_path: Path) -> None:  # noqa: ANN001
    blob = tmp_path / "m.joblib"
    blob.write_bytes(b"x")
    registry.register("churn", blob, version="1")
    registry.promote("churn", "1")
    r = cli("deploy", "manifests", "churn@production", "--image", "x", "--registry", str(registry.root))
    assert r.exit_code == exitcodes.USAGE and "mlserve optimize" in r.stderr
    r = cli("deploy", "manifests", "iris@production", "--image", "x", "--replicas", "1", "--registry", str(registry.root))
    assert r.exit_code == exitcodes.USAGE and "--min-available" in r.stderr


def _seed(cluster: Cluster, objects: list[dict]) -> None:
    for obj in objects:
        if obj["kind"] == "PodDisruptionBudget":
            continue  # rollout never touches it (and the emulator does not serve policy/v1)
        obj = copy.deepcopy(obj)
        if obj["kind"] == "HTTPRoute":  # what a Gateway controller reports once it accepted the route
            obj["status"] = {"parents": [{"parentRef": obj["spec"]["parentRefs"][0], "controllerName": "example.com/gw",
                                          "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted",
                                                          "observedGeneration": 1},
                                                         {"type": "ResolvedRefs", "status": "True",
                                                          "reason": "ResolvedRefs", "observedGeneration": 1}]}]}
        cluster.put(obj)


def test_rollout_plan_and_canary_drive_the_generated_objects(cli, registry: Registry) -> None:  # noqa: ANN001
    objects = _objects(cli, registry)
    cluster = start_cluster()
    try:
        _seed(cluster, objects)
        plan = cli("rollout", "plan", "iris", "--to", "2", "-n", NS, "--server", cluster.url, "--registry",
                   str(registry.root), "--json")
        assert plan.exit_code == 0, plan.stderr
        changes = json.loads(plan.stdout)["result"]["changes"]
        created = [c["object"] for c in changes if c["action"] == "create" and c["kind"] == "Deployment"]
        assert created and created[0]["metadata"]["name"] == "iris-canary"
        run = cli("rollout", "canary", "iris", "--to", "2", "--steps", "50,100", "--pause", "0.1s", "--no-analysis",
                  "--poll", "0.05s", "-n", NS, "--server", cluster.url, "--registry", str(registry.root), "--json")
        assert run.exit_code == exitcodes.OK, run.stderr
        canary = cluster.get("Deployment", "iris-canary", NS)
        stable = cluster.get("Deployment", "iris", NS)
    finally:
        cluster.stop()
    # The canary's pods label themselves with the canary Deployment's own name: its metrics are
    # selected by the default analysis as deployment="iris-canary".
    labels = canary["spec"]["template"]["metadata"]["labels"]
    assert labels["mlserve.dev/deployment"] == canary["metadata"]["name"] == "iris-canary"
    for dep in (canary, stable):  # both told version 2 the way the server reads it
        c = dep["spec"]["template"]["spec"]["containers"][0]
        assert {e["name"]: e.get("value") for e in c["env"]}["MLSERVE_MODEL_VERSION"] == "2"
        assert c["image"] == "ghcr.io/acme/iris-serve:2"
        assert dep["spec"]["template"]["metadata"]["annotations"]["rollout.mlserve.dev/version"] == "2"
    assert stable["spec"]["template"]["metadata"]["labels"]["mlserve.dev/deployment"] == "iris"
    assert registry.resolve("iris@production").version == "2"
