"""Rollouts against the API server's real rules: JSON-patch bytes, limits, status lag, stalled Deployments, transient faults."""

from __future__ import annotations

import copy
import json

import pytest

from mlserve import exitcodes
from mlserve.rollout.analysis import AnalysisResult, MetricResult
from mlserve.rollout.engine import RolloutEngine
from mlserve.rollout.registry_link import RegistryLink
from mlserve.rollout.state import STATE_ANNOTATION
from rollout.k8s.k8s_support import (
    HTTP_ROUTE,
    NS,
    STABLE_BACKENDS,
    STABLE_DEPLOYMENT,
    STABLE_SERVICE,
    ScriptedJudge,
    config,
    engine,
    env_of,
    lease_state,
    weights,
)

REASON = "success-rate: canary median 0.998 >= 0.99 & p99 0.21 <= 0.5 <ok>; latence: café naïve"
ENV = [{"name": "DB_URL", "value": "postgres://db/churn?sslmode=require&target_session_attrs=read-write"},
       {"name": "GREETING", "value": "héllo <wörld> & co"}]


class ReasonedJudge:
    """Real AnalysisResult objects whose reasons hold what Prometheus analyses write: <=, >=, &, non-ASCII."""

    def __init__(self, *verdicts: str, metrics: int = 2, pad: int = 0) -> None:
        self.verdicts = list(verdicts)
        self.metrics, self.pad = metrics, pad
        self.windows = []

    def __call__(self, window):
        self.windows.append(window)
        verdict = self.verdicts.pop(0) if self.verdicts else "pass"
        metrics = [MetricResult(name=f"métrique-{i}", verdict="pass" if verdict == "pass" else "fail", critical=True,
                                direction="max", queries={"canary": 'x{a="<b>"}' + "y" * self.pad}, canary_points=10,
                                stable_points=10, reason=REASON) for i in range(self.metrics)]
        return AnalysisResult(verdict=verdict, score=100.0 if verdict == "pass" else 0.0, reason=REASON, metrics=metrics,
                              start=window.start, end=window.end, pass_score=95.0, marginal_score=75.0)


@pytest.fixture
def textual(cluster):
    """The seed objects, with env values a real service has: '&' in a URL, non-ASCII and '<>' in a greeting."""
    dep = copy.deepcopy(STABLE_DEPLOYMENT)
    dep["spec"]["template"]["spec"]["containers"][0]["env"] = copy.deepcopy(ENV)  # no version variable yet
    for obj in (dep, STABLE_SERVICE, HTTP_ROUTE):
        cluster.put(copy.deepcopy(obj))
    return cluster


def test_a_judged_canary_with_html_characters_and_non_ascii_is_promoted(textual, store, registry):
    """Before the fix every judged step failed on a real server: the Lease update tested the old state's text."""
    judge = ReasonedJudge("pass", "pass", "pass")
    result = engine(store, registry, judge).run(config())
    assert result.outcome == "promoted", result.message
    assert [s.reason for s in result.steps] == [REASON] * 3
    assert lease_state(textual)["record"][0]["reason"] == REASON
    assert env_of(textual.get("Deployment", "iris", NS)) == {**{e["name"]: e["value"] for e in ENV}, "MLSERVE_MODEL_VERSION": "2"}
    lease_patches = [r for r in textual.emulator.seen if r.method == "PATCH" and "/leases/" in r.path]
    assert lease_patches and all(r.status == 200 for r in lease_patches)
    assert all(op["path"] == "/metadata/resourceVersion" for r in lease_patches for op in r.data if op["op"] == "test")


def test_a_failed_canary_restores_an_env_list_holding_html_characters(textual, store, registry):
    """The revert puts back the whole env list (the version variable was not there): no value test on it."""
    result = engine(store, registry, ReasonedJudge("fail")).run(config())
    assert (result.outcome, result.reverted) == ("rolled-back", True)
    assert textual.get("Deployment", "iris", NS)["spec"]["template"]["spec"]["containers"][0]["env"] == ENV
    assert textual.get("Deployment", "iris-canary", NS) is None
    assert lease_state(textual)["phase"] == "rolled-back"


def test_a_refused_change_says_what_the_server_said(seeded, store, registry):
    """A 422 Invalid names the field and the rule; it is not reported as another writer."""
    from mlserve.rollout.workload import VersionSpec

    result = engine(store, registry, ScriptedJudge()).run(config(version=VersionSpec(env_name="MODEL VERSION")))
    assert (result.outcome, result.exit_code) == ("failed", exitcodes.INFRASTRUCTURE)
    assert 'Deployment.apps "iris-canary" is invalid: spec.template.spec.containers[0].env[2].name: Invalid value: ' \
           '"MODEL VERSION": a valid environment variable name' in result.message
    assert "another writer" not in result.message and "GitOps" not in result.message
    assert result.reverted and seeded.get("HTTPRoute", "iris", NS)["spec"]["rules"][0]["backendRefs"] == STABLE_BACKENDS


def test_a_label_value_near_63_characters_gets_a_valid_canary_label(cluster, store, registry):
    long_app = "a" * 60
    dep = copy.deepcopy(STABLE_DEPLOYMENT)
    dep["spec"]["selector"]["matchLabels"]["app"] = long_app
    dep["spec"]["template"]["metadata"]["labels"]["app"] = long_app
    svc = copy.deepcopy(STABLE_SERVICE)
    svc["spec"]["selector"]["app"] = long_app
    for obj in (dep, svc, HTTP_ROUTE):
        cluster.put(copy.deepcopy(obj))
    result = engine(store, registry, ScriptedJudge()).run(config(steps=[100]))
    assert result.outcome == "promoted", result.message
    label = cluster.get("Deployment", "iris-canary", NS)["spec"]["template"]["metadata"]["labels"]["app"]
    assert len(label) <= 63 and label.endswith("-canary") and label != long_app
    assert cluster.get("Service", "iris-canary", NS)["spec"]["selector"]["app"] == label


def test_the_lease_state_stays_under_the_annotation_limit(seeded, store, registry):
    """30 judged steps with bulky analyses would pass 256 KiB: the Lease keeps the verdicts, the result keeps all."""
    steps = list(range(3, 91, 3))
    result = engine(store, registry, ReasonedJudge(*["pass"] * len(steps), metrics=4, pad=2000)).run(
        config(steps=steps, pause=0.0, timeout=120))
    assert result.outcome == "promoted", result.message
    assert len(result.steps) == len(steps) and all(s.analysis for s in result.steps)
    annotation = seeded.get("Lease", "mlserve-rollout-iris", NS)["metadata"]["annotations"][STATE_ANNOTATION]
    assert len(annotation.encode()) <= 256 * 1024
    stored = json.loads(annotation)
    assert [r["verdict"] for r in stored["record"]] == ["pass"] * len(steps)
    assert stored["record"][0]["analysis"] is None and stored["record"][-1]["reason"] == REASON


def test_route_conditions_of_an_older_generation_are_not_trusted(cluster, store, registry):
    """The last generation's ResolvedRefs=False must not fail a change its controller has not looked at yet."""
    route = copy.deepcopy(HTTP_ROUTE)
    route["status"]["parents"][0]["conditions"][1].update(status="False", reason="BackendNotFound", message="old problem")
    for obj in (STABLE_DEPLOYMENT, STABLE_SERVICE, route):
        cluster.put(copy.deepcopy(obj))
    cluster.emulator.gateway.lag_reads = 3
    result = engine(store, registry, ScriptedJudge()).run(config(steps=[50, 100]))
    assert result.outcome == "promoted", result.message
    assert not any("has not reported" in w for w in result.warnings)
    route_reads_after_first_patch = [r for r in cluster.emulator.seen if r.path.endswith("/httproutes/iris")]
    first_patch = next(i for i, r in enumerate(route_reads_after_first_patch) if r.method == "PATCH")
    assert sum(r.method == "GET" for r in route_reads_after_first_patch[first_patch:first_patch + 5]) >= 3


def test_a_deployment_past_its_progress_deadline_fails_at_once(cluster, store, registry):
    dep = copy.deepcopy(STABLE_DEPLOYMENT)
    dep["spec"]["progressDeadlineSeconds"] = 1
    for obj in (dep, STABLE_SERVICE, HTTP_ROUTE):
        cluster.put(copy.deepcopy(obj))
    cluster.emulator.deployments.stalled.add("iris-canary")
    result = engine(store, registry, ScriptedJudge()).run(config(ready_timeout=120, timeout=300))
    assert result.outcome == "rolled-back"
    assert "canary iris-canary will not become ready" in result.message
    assert "ProgressDeadlineExceeded" in result.message and "has timed out progressing" in result.message
    assert (result.ended_at - result.started_at).total_seconds() < 60  # not the whole --ready-timeout of 120 s
    assert [w for w in cluster.writes() if "httproutes" in w[1]] == []


def test_transient_api_errors_are_retried_within_the_lease_duration(seeded, store, registry):
    """One 503 and one 429 (Retry-After 1) on heartbeats, a 429 on a readiness read: the rollout goes on."""
    seeded.emulator.fail("/leases/mlserve-rollout-iris", method="PATCH", times=1, status=503)
    seeded.emulator.fail("/deployments/iris-canary", method="GET", times=1, status=429, retry_after=1)
    judge = ScriptedJudge("pass", "pass", "pass")

    def judging(window):
        if not judge.windows:
            seeded.emulator.fail("/leases/mlserve-rollout-iris", method="PATCH", times=1, status=429, retry_after=1)
        return judge(window)

    result = engine(store, registry, judging).run(config(lease_seconds=4))
    assert result.outcome == "promoted", result.message
    statuses = [r.status for r in seeded.emulator.seen if "/leases/" in r.path and r.method == "PATCH"]
    assert statuses.count(503) == 1 and statuses.count(429) == 1
    refused = next(r for r in seeded.emulator.seen if r.status == 429 and "/leases/" in r.path)
    retried = next(r for r in seeded.emulator.seen if r.at > refused.at and "/leases/" in r.path)
    assert retried.at - refused.at >= 1.0  # Retry-After honoured


def test_the_revert_outlasts_an_api_outage(seeded, store, registry):
    """The API is down for 4 s when the judge says no: the revert retries with backoff until it is back."""

    def judge(window):
        seeded.emulator.outage(4)
        return ScriptedJudge("fail")(window)

    result = engine(store, registry, judge).run(config(revert_timeout=60))
    assert result.reverted, result.message
    assert seeded.get("HTTPRoute", "iris", NS)["spec"]["rules"][0]["backendRefs"] == STABLE_BACKENDS
    assert seeded.get("Deployment", "iris-canary", NS) is None
    assert lease_state(seeded)["reverted"] is True


def test_a_final_state_that_cannot_be_saved_is_loud_and_abort_clears_it(seeded, store, registry, cli):
    def judge(window):
        seeded.emulator.fail("/leases/mlserve-rollout-iris", method="GET", times=10**6)
        return ScriptedJudge("fail")(window)

    result = engine(store, registry, judge).run(config(steps=[10]))
    assert result.exit_code == exitcodes.ROLLED_BACK and result.reverted
    assert any("the outcome could not be saved in Lease ml/mlserve-rollout-iris" in w for w in result.warnings), result.warnings
    assert lease_state(seeded)["phase"] == "progressing"  # the Lease still says so: the next rollout is refused
    seeded.emulator.heal()
    refused = cli("rollout", "canary", "iris", "--to", "2", "-n", NS, "--server", seeded.url, "--no-analysis",
                  "--registry", str(registry.root))
    assert refused.exit_code == exitcodes.CONFLICT
    cleared = cli("rollout", "abort", "iris", "-n", NS, "--server", seeded.url, "--registry", str(registry.root))
    assert cleared.exit_code == 0, cleared.stderr
    lease = seeded.get("Lease", "mlserve-rollout-iris", NS)
    assert lease["spec"]["holderIdentity"] == "" and lease_state(seeded)["phase"] == "aborted"


def test_a_promotion_whose_state_cannot_be_saved_is_not_exit_0(seeded, store, registry):
    class FailsAfterPromotion(RegistryLink):
        def promote(self, model, version, reason, expect_current=None):
            done = super().promote(model, version, reason, expect_current=expect_current)
            seeded.emulator.fail("/leases/mlserve-rollout-iris", method="GET", times=10**6)
            return done

    result = RolloutEngine(store, judge=ScriptedJudge(), registry=FailsAfterPromotion(registry)).run(config(steps=[100]))
    assert result.outcome == "promoted" and result.exit_code == exitcodes.INFRASTRUCTURE
    assert any("could not record it" in w and "--resume" in w for w in result.warnings)


def test_istio_older_than_1_22_is_found_by_discovery(cluster, store, registry):
    from rollout.k8s.k8s_support import VIRTUAL_SERVICE

    cluster.emulator.serve_versions("networking.istio.io", ["v1beta1", "v1alpha3"])
    vs = copy.deepcopy(VIRTUAL_SERVICE)
    vs["apiVersion"] = "networking.istio.io/v1beta1"
    for obj in (STABLE_DEPLOYMENT, STABLE_SERVICE, vs):
        cluster.put(copy.deepcopy(obj))
    result = engine(store, registry, ScriptedJudge()).run(config(router="istio"))
    assert result.outcome == "promoted", result.message
    asked = [r.path for r in cluster.emulator.seen if "virtualservices" in r.path or r.path == "/apis/networking.istio.io"]
    # one try in v1 (404: the version is not served), one discovery, then v1beta1 only
    assert asked[0].startswith("/apis/networking.istio.io/v1/") and asked[1] == "/apis/networking.istio.io"
    assert all("/networking.istio.io/v1beta1/" in p for p in asked[2:]) and len(asked) > 5


def test_weights_are_refreshed_from_the_live_route_after_every_read(seeded, store, registry):
    """Route weights after the rollout are stable 100 / canary 0; the canary entry stays for the next time."""
    assert engine(store, registry, ScriptedJudge()).run(config()).outcome == "promoted"
    assert weights(seeded.get("HTTPRoute", "iris", NS)) == {"iris": 100, "iris-canary": 0}
