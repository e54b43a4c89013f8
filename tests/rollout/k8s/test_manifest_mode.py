"""`--manifests DIR`: the same rollout applied to YAML files (GitOps), comments and key order kept."""

from __future__ import annotations

import json
from pathlib import Path

from mlserve import exitcodes

DEPLOYMENT = """\
# The stable model server. Owned by the ML platform team.
apiVersion: apps/v1
kind: Deployment
metadata:
  name: iris
  namespace: ml
spec:
  replicas: 3   # sized for peak traffic
  selector:
    matchLabels:
      app: iris
  template:
    metadata:
      labels:
        app: iris
    spec:
      containers:
        - name: server
          image: registry.local/iris-server:1  # bumped by mlserve
          env:
            - name: MLSERVE_MODEL_VERSION
              value: "1"
---
apiVersion: v1
kind: Service
metadata:
  name: iris
  namespace: ml
spec:
  selector:
    app: iris
  ports:
    - port: 80
      targetPort: 8080
"""

ROUTE = """\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: iris
  namespace: ml
spec:
  parentRefs:
    - name: public-gw  # the shared gateway
  rules:
    - backendRefs:
        - name: iris
          port: 80
          weight: 100  # stable
"""


def test_canary_in_manifest_mode_edits_files_and_keeps_comments(tmp_path: Path, registry, cli):
    repo = tmp_path / "gitops"
    repo.mkdir()
    (repo / "iris.yaml").write_text(DEPLOYMENT)
    (repo / "route.yaml").write_text(ROUTE)
    result = cli("rollout", "canary", "iris", "--to", "2", "-n", "ml", "--manifests", str(repo), "--steps", "25,100",
                 "--pause", "0s", "--registry", str(registry.root), "--json")
    assert result.exit_code == exitcodes.OK, result.stderr
    doc = json.loads(result.stdout)["result"]
    assert doc["outcome"] == "promoted"
    assert [s["verdict"] for s in doc["steps"]] == ["skipped", "skipped"]

    text = (repo / "iris.yaml").read_text()
    assert "# The stable model server. Owned by the ML platform team." in text
    assert "replicas: 3   # sized for peak traffic" in text
    assert "image: registry.local/iris-server:2  # bumped by mlserve" in text
    route = (repo / "route.yaml").read_text()
    assert "- name: public-gw  # the shared gateway" in route
    assert "weight: 100  # stable" in route  # all traffic back on stable at the end
    assert "name: iris-canary" in route
    # The canary objects are new files beside them; the rollout record stays out of what GitOps applies.
    assert (repo / "deployment-iris-canary.yaml").is_file()
    assert "replicas: 0" in (repo / "deployment-iris-canary.yaml").read_text()
    assert not (repo / "lease-mlserve-rollout-iris.yaml").exists()
    assert "kind: Lease" in (repo / ".mlserve" / "lease-mlserve-rollout-iris.yaml").read_text()
    assert registry.resolve("iris@production").version == "2"


def test_plan_and_undo_in_manifest_mode(tmp_path: Path, registry, cli):
    repo = tmp_path / "gitops"
    repo.mkdir()
    (repo / "iris.yaml").write_text(DEPLOYMENT)
    (repo / "route.yaml").write_text(ROUTE)
    plan = cli("rollout", "plan", "iris", "--to", "2", "-n", "ml", "--manifests", str(repo), "--registry",
               str(registry.root), "--json")
    assert plan.exit_code == 0, plan.stderr
    assert (repo / "iris.yaml").read_text() == DEPLOYMENT  # plan writes nothing
    assert sorted(p.name for p in repo.iterdir()) == ["iris.yaml", "route.yaml"]

    done = cli("rollout", "canary", "iris", "--to", "2", "-n", "ml", "--manifests", str(repo), "--steps", "100",
               "--pause", "0s", "--registry", str(registry.root))
    assert done.exit_code == 0, done.stderr
    undone = cli("rollout", "undo", "iris", "-n", "ml", "--manifests", str(repo), "--registry", str(registry.root))
    assert undone.exit_code == 0, undone.stderr
    # Undo restores the files byte for byte (comments, quoting, order) and removes what the rollout created.
    assert (repo / "iris.yaml").read_text() == DEPLOYMENT
    assert (repo / "route.yaml").read_text() == ROUTE
    assert not (repo / "deployment-iris-canary.yaml").exists()
    assert not (repo / "service-iris-canary.yaml").exists()
    assert registry.resolve("iris@production").version == "1"


def test_plan_in_manifest_mode_shows_the_diff_of_the_files(tmp_path: Path, registry, cli):
    repo = tmp_path / "gitops"
    repo.mkdir()
    (repo / "iris.yaml").write_text(DEPLOYMENT)
    (repo / "route.yaml").write_text(ROUTE)
    plan = cli("rollout", "plan", "iris", "--to", "2", "-n", "ml", "--manifests", str(repo), "--steps", "25,100",
               "--registry", str(registry.root), "--json")
    assert plan.exit_code == 0, plan.stderr
    diff = json.loads(plan.stdout)["result"]["diff"]
    assert "--- a/iris.yaml\n+++ b/iris.yaml\n" in diff
    assert "-          image: registry.local/iris-server:1  # bumped by mlserve\n" in diff
    assert "+          image: registry.local/iris-server:2  # bumped by mlserve\n" in diff
    assert "+++ b/deployment-iris-canary.yaml" in diff and "Lease" not in diff
    assert (repo / "iris.yaml").read_text() == DEPLOYMENT and sorted(p.name for p in repo.iterdir()) == [
        "iris.yaml", "route.yaml"], "plan writes nothing"
    text = cli("rollout", "plan", "iris", "--to", "2", "-n", "ml", "--manifests", str(repo), "--steps", "25,100",
               "--registry", str(registry.root))
    assert "diff of the manifest files after the whole rollout (nothing was written):" in text.stdout
