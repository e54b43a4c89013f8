"""`plan` renders the same steps `run` executes: the changes it shows are the requests a run sends."""

from __future__ import annotations

import copy
import json
import threading

import pytest

from mlserve.rollout.settings import HeaderRoute
from rollout.k8s.k8s_support import NS, STABLE_DEPLOYMENT, ScriptedJudge, config, engine, wait_for, weights

KINDS = {"deployments": "Deployment", "services": "Service", "httproutes": "HTTPRoute", "ingresses": "Ingress",
         "virtualservices": "VirtualService"}


def sent(cluster) -> list[tuple]:
    """(action, kind, name, ops or object) of every successful create/patch the run sent, Lease writes left out."""
    out = []
    for r in cluster.emulator.seen:
        if r.status >= 300 or r.method not in ("POST", "PATCH"):
            continue
        parts = r.path.strip("/").split("/")
        plural = parts[parts.index("namespaces") + 2]
        if plural == "leases":
            continue
        if r.method == "POST":
            body = copy.deepcopy(r.data)
            body.pop("apiVersion", None)
            out.append(("create", KINDS[plural], body["metadata"]["name"], body))
        else:
            ops = [op for op in r.data if not (op["op"] == "test" and op["path"] == "/metadata/resourceVersion")]
            out.append(("patch", KINDS[plural], parts[-1], ops))
    return out


def planned(plan) -> list[tuple]:
    out = []
    for c in plan.changes:
        if c.kind == "Lease" or c.action not in ("create", "patch"):
            continue
        if c.action == "create":
            body = copy.deepcopy(c.object)
            body.pop("apiVersion", None)
            out.append(("create", c.kind, c.name, body))
        else:
            out.append(("patch", c.kind, c.name, c.ops))
    return out


@pytest.mark.parametrize("extra", [{}, {"header_route": HeaderRoute(header="X-Canary", value="always")}, {"baseline": True, "steps": [10, 50, 100]}],
                         ids=["plain", "header-route", "baseline"])
def test_plan_equals_what_run_sends(seeded, store, registry, extra):
    cfg = dict(steps=[20, 60, 100], **extra) if "steps" not in extra else extra
    plan = engine(store, registry).plan(config(**cfg))
    result = engine(store, registry, ScriptedJudge()).run(config(**cfg))
    assert result.outcome == "promoted", result.message
    assert sent(seeded) == planned(plan)
    assert all(op["op"] != "test" for _, _, _, ops in planned(plan) if isinstance(ops, list) for op in ops)


def test_plan_of_a_blue_green_equals_what_run_sends(cluster, store, registry):
    dep = copy.deepcopy(STABLE_DEPLOYMENT)
    dep["metadata"]["name"] = "iris-blue"
    dep["spec"]["selector"]["matchLabels"]["slot"] = "blue"
    dep["spec"]["template"]["metadata"]["labels"]["slot"] = "blue"
    cluster.put(dep)
    cluster.put({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "iris", "namespace": NS},
                 "spec": {"selector": {"app": "iris", "slot": "blue"}, "ports": [{"port": 80, "targetPort": 8080}]}})
    cfg = dict(strategy="blue-green", keep=0.1)
    plan = engine(store, registry).plan(config(**cfg))
    assert engine(store, registry, ScriptedJudge()).run(config(**cfg)).outcome == "promoted"
    assert sent(cluster) == planned(plan)


def test_plan_warns_that_a_running_rollout_would_refuse_it(seeded, store, registry, cli):
    box = {}
    thread = threading.Thread(target=lambda: box.setdefault("r", engine(store, registry, ScriptedJudge()).run(config(pause=30))))
    thread.start()
    try:
        wait_for(lambda: weights(seeded.get("HTTPRoute", "iris", NS)).get("iris-canary") == 10)
        shown = cli("rollout", "plan", "iris", "--to", "2", "-n", NS, "--server", seeded.url, "--no-analysis",
                    "--registry", str(registry.root), "--json")
        assert shown.exit_code == 0, shown.stderr
        warnings = json.loads(shown.stdout)["result"]["warnings"]
        assert warnings == ["a rollout of iris is progressing (owner test-owner); running this plan would be refused"]
        human = cli("rollout", "plan", "iris", "--to", "2", "-n", NS, "--server", seeded.url, "--no-analysis",
                    "--registry", str(registry.root))
        assert "warning: a rollout of iris is progressing (owner test-owner); running this plan would be refused" in human.stderr
    finally:
        assert cli("rollout", "abort", "iris", "-n", NS, "--server", seeded.url, "--registry", str(registry.root)).exit_code == 0
        thread.join(30)
    assert box["r"].outcome == "aborted"


def test_plan_says_how_many_points_each_step_gives_the_judge(seeded, registry, cli, tmp_path):
    analysis = tmp_path / "analysis.json"
    analysis.write_text(json.dumps({"defaults": {"min_points": 6, "step": "1s", "window": "2s", "scrape_interval": "1s"}}))
    base = ["rollout", "plan", "iris", "--to", "2", "-n", NS, "--server", seeded.url, "--registry", str(registry.root),
            "--analysis", str(analysis)]
    default = json.loads(cli(*base, "--json").stdout)["result"]
    assert default["points_per_step"] == 6 and default["warnings"] == []  # the default pause: 3s warm-up + 5 x 2s
    assert any(c["note"] == "pause 13s, then judge on 6 point(s) per metric and side" for c in default["changes"])
    short = json.loads(cli(*base, "--pause", "8s", "--json").stdout)["result"]
    assert short["points_per_step"] == 3
    assert short["warnings"] == ["--pause 8s gives 3 point(s) per metric and step; the analysis needs 6: "
                                 "every step would be inconclusive"]
    human = cli(*base)
    assert "the judge gets 6 independent point(s) per metric and side after each pause" in human.stdout
    # the default analysis: 10 points, one per 1m window, after 1m15s of warm-up
    plain = json.loads(cli("rollout", "plan", "iris", "--to", "2", "-n", NS, "--server", seeded.url, "--registry",
                           str(registry.root), "--json").stdout)["result"]
    assert plain["points_per_step"] == 10
    assert any(c["note"].startswith("pause 615s, then judge on 10 point(s)") for c in plain["changes"])


def test_status_reads_the_lease_and_each_managed_object_once(seeded, store, registry, cli):
    assert engine(store, registry, ScriptedJudge()).run(config(steps=[100])).outcome == "promoted"
    before = len(seeded.emulator.seen)
    doc = json.loads(cli("rollout", "status", "iris", "-n", NS, "--server", seeded.url, "--json").stdout)["result"]
    requests = [(r.method, r.path.rsplit("/", 2)[-2:]) for r in seeded.emulator.seen[before:]]
    assert requests == [("GET", ["leases", "mlserve-rollout-iris"]), ("GET", ["httproutes", "iris"]),
                        ("GET", ["deployments", "iris-canary"]), ("GET", ["deployments", "iris"])]
    assert [(o["kind"], o["name"], o["role"]) for o in doc["objects"]] == [
        ("HTTPRoute", "iris", "traffic"), ("Deployment", "iris-canary", "canary"), ("Deployment", "iris", "stable")]
    human = cli("rollout", "status", "iris", "-n", NS, "--server", seeded.url)
    assert "HTTPRoute/iris\ttraffic\tstable 100%, canary 0%" in human.stdout  # a plain table off a terminal
