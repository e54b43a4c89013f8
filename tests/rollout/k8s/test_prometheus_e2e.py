"""End to end: `mlserve rollout canary` judged by a real Prometheus scraping simulated workloads.

The healthy canary is promoted; the degraded one (30% errors) is rolled back with exit 10.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers.prometheus import TrafficProfile, WorkloadExporter, start_prometheus
from mlserve import exitcodes
from rollout.k8s.k8s_support import STABLE_BACKENDS, NS

pytestmark = [pytest.mark.prometheus, pytest.mark.slow]

ANALYSIS = {"defaults": {"min_points": 4, "step": "1s", "window": "3s", "scrape_interval": "1s", "max_p99_seconds": 0.5}}


ENV = [{"name": "DB_URL", "value": "postgres://db/iris?sslmode=require&application_name=iris<v1>"},
       {"name": "GREETING", "value": "grüß dich, café"}]


def run_canary(tmp_path: Path, seeded, registry, cli, canary: TrafficProfile):
    """The stable pods' env holds '&', '<>' and non-ASCII, as real ones do; the judge's reasons hold '>=' and '<='."""
    import copy

    from rollout.k8s.k8s_support import STABLE_DEPLOYMENT

    dep = copy.deepcopy(STABLE_DEPLOYMENT)
    dep["spec"]["template"]["spec"]["containers"][0]["env"] = copy.deepcopy(ENV)
    seeded.put(dep)
    analysis = tmp_path / "analysis.json"
    analysis.write_text(json.dumps(ANALYSIS))
    workloads = {"iris": TrafficProfile(), "iris-canary": canary}
    with WorkloadExporter(workloads, namespace=NS) as exporter, start_prometheus([exporter.target], tmp_path / "prom") as prom:
        prom.wait_for_points(f'sum(rate(http_requests_total{{namespace="{NS}",deployment="iris-canary"}}[3s]))', 3)
        return cli("rollout", "canary", "iris", "--to", "2", "-n", NS, "--server", seeded.url, "--steps", "50",
                   "--pause", "14s", "--poll", "0.2s", "--analysis", str(analysis), "--prometheus-url", prom.url,
                   "--registry", str(registry.root), "--json")


def test_healthy_canary_is_promoted(tmp_path, seeded, registry, cli):
    result = run_canary(tmp_path, seeded, registry, cli, TrafficProfile())
    doc = json.loads(result.stdout)["result"]
    assert result.exit_code == exitcodes.OK, (doc["message"], doc["steps"])
    step = doc["steps"][0]
    assert step["verdict"] == "pass"
    assert {m["name"]: m["verdict"] for m in step["analysis"]["metrics"]} == {"success-rate": "pass", "latency-p99": "pass"}
    assert ">=" in step["analysis"]["metrics"][0]["reason"] and "<=" in step["analysis"]["metrics"][1]["reason"]
    assert registry.resolve("iris@production").version == "2"
    env = seeded.get("Deployment", "iris", NS)["spec"]["template"]["spec"]["containers"][0]["env"]
    assert env == ENV + [{"name": "MLSERVE_MODEL_VERSION", "value": "2"}]


def test_degraded_canary_is_rolled_back(tmp_path, seeded, registry, cli):
    result = run_canary(tmp_path, seeded, registry, cli, TrafficProfile(error_ratio=0.3))
    assert result.exit_code == exitcodes.ROLLED_BACK, result.stdout
    doc = json.loads(result.stdout)["result"]
    step = doc["steps"][0]
    assert step["verdict"] == "fail"
    metrics = {m["name"]: m for m in step["analysis"]["metrics"]}
    assert metrics["success-rate"]["verdict"] == "fail"
    assert metrics["success-rate"]["canary_median"] < 0.8
    assert seeded.get("HTTPRoute", "iris", NS)["spec"]["rules"][0]["backendRefs"] == STABLE_BACKENDS
    assert seeded.get("Deployment", "iris", NS)["spec"]["template"]["spec"]["containers"][0]["env"] == ENV  # restored whole
    assert registry.resolve("iris@production").version == "1"
