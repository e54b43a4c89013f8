"""The emulator is at least as strict as kube-apiserver where a rollout depends on it (through the official client).

Each test shows one rule of the real server that the first emulator did not have, so a test of the
rollout that passes against this emulator is not passing only because the stand-in is lenient.
Still more lenient than a real server: see :mod:`helpers.kube.schema` (pod specs beyond
containers, probes and Ingress paths are not typed; no admission webhooks besides Istio's weight
sum; strategic-merge patches are applied as merge patches).
"""

from __future__ import annotations

import copy

import pytest

from mlserve.errors import ApiRejectedError, NotFoundError, PatchNotAppliedError
from mlserve.rollout.kube import KubernetesStore
from rollout.k8s.k8s_support import HTTP_ROUTE, NS, STABLE_DEPLOYMENT, STABLE_SERVICE

TEXT = "p99 0.2 <= 0.5 & success >= 0.99 <ok>"
NON_ASCII = "café, naïve ünïcode"


def config_map(**data: str) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "notes", "namespace": NS}, "data": data}


def test_a_value_test_on_text_with_html_characters_or_non_ascii_fails_as_on_kube_apiserver(cluster, store):
    """evanphx/json-patch compares raw bytes: the stored "\\u003c" is not the client's "<", nor raw "é" its "\\u00e9"."""
    stored = store.create(config_map(text=TEXT, word=NON_ASCII, plain="abc"))
    for key, value in (("text", TEXT), ("word", NON_ASCII)):
        with pytest.raises(PatchNotAppliedError):
            store.patch("ConfigMap", "notes", NS, [{"op": "test", "path": f"/data/{key}", "value": value},
                                                  {"op": "replace", "path": "/data/plain", "value": "x"}])
    assert cluster.get("ConfigMap", "notes", NS)["data"]["plain"] == "abc"
    # A value without such characters compares equal, and the resourceVersion test always does.
    store.patch("ConfigMap", "notes", NS, [{"op": "test", "path": "/data/plain", "value": "abc"}])
    after = store.patch("ConfigMap", "notes", NS, [
        {"op": "test", "path": "/metadata/resourceVersion", "value": stored["metadata"]["resourceVersion"]},
        {"op": "replace", "path": "/data/text", "value": TEXT + "!"}, {"op": "replace", "path": "/data/word", "value": NON_ASCII + "!"}])
    assert (after["data"]["text"], after["data"]["word"]) == (TEXT + "!", NON_ASCII + "!")
    assert cluster.emulator.checker.calls >= 4  # every JSON patch went through the Go library
    # a stale resourceVersion is refused the same way (422, no detail), which the engine reads as a conflict
    with pytest.raises(PatchNotAppliedError):
        store.patch("ConfigMap", "notes", NS, [
            {"op": "test", "path": "/metadata/resourceVersion", "value": stored["metadata"]["resourceVersion"]},
            {"op": "replace", "path": "/data/plain", "value": "y"}])


def test_label_values_over_63_characters_are_refused_with_the_servers_message(cluster, store):
    dep = copy.deepcopy(STABLE_DEPLOYMENT)
    dep["metadata"]["name"] = "long"
    long_value = "x" * 64
    dep["spec"]["selector"]["matchLabels"]["app"] = long_value
    dep["spec"]["template"]["metadata"]["labels"]["app"] = long_value
    with pytest.raises(ApiRejectedError) as info:
        store.create(dep)
    assert f'Deployment.apps "long" is invalid: [spec.template.metadata.labels: Invalid value: "{long_value}": must be no more ' \
           f"than 63 characters" in info.value.message
    assert {c["field"] for c in info.value.details["causes"]} == {"spec.template.metadata.labels", "spec.selector.matchLabels"}
    assert cluster.get("Deployment", "long", NS) is None


def test_names_and_annotations_have_the_real_limits(cluster, store):
    svc = copy.deepcopy(STABLE_SERVICE)
    svc["metadata"]["name"] = "s" * 64  # a Service name is a DNS-1035 label
    with pytest.raises(ApiRejectedError, match=r"metadata.name: Invalid value: .*must be no more than 63 characters"):
        store.create(svc)
    big = config_map(a="b")
    big["metadata"]["annotations"] = {"example.com/blob": "x" * (256 * 1024)}
    with pytest.raises(ApiRejectedError, match=r"metadata.annotations: Too long: must have at most 262144 bytes"):
        store.create(big)
    big["metadata"]["annotations"] = {"example.com/blob": "x" * (255 * 1024)}
    assert store.create(big)["metadata"]["annotations"]["example.com/blob"]


def test_defaults_unknown_fields_and_immutable_fields(cluster, store):
    created = store.create({**copy.deepcopy(STABLE_SERVICE), "spec": {"selector": {"app": "iris"}, "ports": [{"port": 80}],
                                                                      "typo": True}})
    assert created["spec"]["type"] == "ClusterIP" and created["spec"]["clusterIP"].startswith("10.96.")
    assert created["spec"]["ports"] == [{"port": 80, "protocol": "TCP", "targetPort": 80}]
    assert "typo" not in created["spec"]  # unknown fields are dropped, as typed objects drop them
    with pytest.raises(ApiRejectedError, match=r"spec.clusterIPs\[0\]: Invalid value: .*may not change once set"):
        store.patch("Service", "iris", NS, [{"op": "replace", "path": "/spec/clusterIP", "value": "10.96.9.9"}])
    dep = store.create(copy.deepcopy(STABLE_DEPLOYMENT))
    assert dep["spec"]["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}
    assert (dep["spec"]["progressDeadlineSeconds"], dep["spec"]["revisionHistoryLimit"]) == (600, 10)
    assert dep["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] == "IfNotPresent"
    with pytest.raises(ApiRejectedError, match=r"spec.selector: Invalid value: .*field is immutable"):
        store.patch("Deployment", "iris", NS, [{"op": "add", "path": "/spec/selector/matchLabels/tier", "value": "web"},
                                              {"op": "add", "path": "/spec/template/metadata/labels/tier", "value": "web"}])
    with pytest.raises(ApiRejectedError, match="`selector` does not match template `labels`"):
        store.patch("Deployment", "iris", NS, [{"op": "replace", "path": "/spec/template/metadata/labels/app", "value": "other"}])
    with pytest.raises(ApiRejectedError, match=r"replicas: Invalid value: \"2\": .*must be of type integer"):
        store.patch("Deployment", "iris", NS, [{"op": "replace", "path": "/spec/replicas", "value": "2"}])
    route = store.create(copy.deepcopy(HTTP_ROUTE))
    assert route["spec"]["rules"][0]["backendRefs"] == [{"group": "", "kind": "Service", "name": "iris", "port": 80, "weight": 1}]
    assert "status" not in route  # status is a subresource: a client's create does not set it


def test_a_no_op_write_keeps_the_resource_version_and_status_writes_change_it(cluster, store):
    created = store.create(copy.deepcopy(STABLE_DEPLOYMENT))
    same = store.patch("Deployment", "iris", NS, [{"op": "replace", "path": "/spec/replicas", "value": 2}])
    assert same["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
    read = store.get("Deployment", "iris", NS)  # the deployment controller reports on it: a status write
    assert read["status"]["observedGeneration"] == 1
    assert read["metadata"]["resourceVersion"] != created["metadata"]["resourceVersion"]


def test_route_status_lags_behind_a_new_generation(cluster, store):
    cluster.put(copy.deepcopy(STABLE_SERVICE))
    cluster.put(copy.deepcopy(HTTP_ROUTE))
    cluster.emulator.gateway.lag_reads = 2
    patched = store.patch("HTTPRoute", "iris", NS, [{"op": "replace", "path": "/spec/rules/0/backendRefs/0/weight", "value": 5}])
    generations = [c["observedGeneration"] for c in patched["status"]["parents"][0]["conditions"]]
    assert patched["metadata"]["generation"] == 2 and generations == [1, 1]  # the answer to the patch: old conditions
    seen = [[c["observedGeneration"] for c in store.get("HTTPRoute", "iris", NS)["status"]["parents"][0]["conditions"]]
            for _ in range(3)]
    assert seen == [[1, 1], [1, 1], [2, 2]]
    # a backendRef to a Service that does not exist is reported as the controller does
    store.patch("HTTPRoute", "iris", NS, [{"op": "add", "path": "/spec/rules/0/backendRefs/-", "value": {"name": "ghost", "port": 80}}])
    for _ in range(3):
        conditions = store.get("HTTPRoute", "iris", NS)["status"]["parents"][0]["conditions"]
    assert conditions[1]["status"] == "False" and conditions[1]["reason"] == "BackendNotFound"


def test_a_stalled_deployment_reports_progress_deadline_exceeded(cluster, store):
    dep = copy.deepcopy(STABLE_DEPLOYMENT)
    dep["spec"]["progressDeadlineSeconds"] = 1
    cluster.emulator.deployments.stalled.add("iris")
    store.create(dep)
    progressing = next(c for c in store.get("Deployment", "iris", NS)["status"]["conditions"] if c["type"] == "Progressing")
    assert (progressing["status"], progressing["reason"]) == ("True", "ReplicaSetUpdated")
    import time

    time.sleep(1.1)  # the deployment's own progressDeadlineSeconds
    progressing = next(c for c in store.get("Deployment", "iris", NS)["status"]["conditions"] if c["type"] == "Progressing")
    assert (progressing["status"], progressing["reason"]) == ("False", "ProgressDeadlineExceeded")
    assert progressing["message"].endswith("has timed out progressing.")


def test_faults_carry_retry_after_and_can_be_slow(cluster):
    store = KubernetesStore.connect(server=cluster.url)
    store.request_timeout = 0.5
    store.retry_budget = 5.0
    cluster.put(config_map(a="1"))
    cluster.emulator.fail("/configmaps/notes", method="GET", status=429, retry_after=1)
    assert store.get("ConfigMap", "notes", NS)["data"] == {"a": "1"}
    first, second = [r for r in cluster.emulator.seen if r.path.endswith("/configmaps/notes")][-2:]
    assert first.status == 429 and second.status == 200
    assert second.at - first.at >= 1.0  # Retry-After was honoured
    cluster.emulator.fail("/configmaps/notes", method="GET", status=None, delay=1.0)  # slower than the client waits
    assert store.get("ConfigMap", "notes", NS)["data"] == {"a": "1"}
    store.retry_budget = 0.0
    cluster.emulator.fail("/configmaps/notes", method="GET", status=503, times=1)
    from mlserve.errors import InfrastructureError

    with pytest.raises(InfrastructureError, match=r"\(503\)"):
        store.get("ConfigMap", "notes", NS)


def test_served_versions_are_discovered(cluster):
    """Istio before 1.22 serves networking.istio.io v1beta1 but not v1: the store asks discovery which to use."""
    from rollout.k8s.k8s_support import VIRTUAL_SERVICE

    cluster.emulator.serve_versions("networking.istio.io", ["v1beta1", "v1alpha3"])
    store = KubernetesStore.connect(server=cluster.url)
    vs = copy.deepcopy(VIRTUAL_SERVICE)
    vs["apiVersion"] = "networking.istio.io/v1beta1"
    created = store.create(vs)
    assert created["apiVersion"] == "networking.istio.io/v1beta1"
    assert store.get("VirtualService", "iris", NS)["metadata"]["name"] == "iris"
    assert any(r.path == "/apis/networking.istio.io/v1beta1/namespaces/ml/virtualservices/iris" for r in cluster.emulator.seen)
    cluster.emulator.serve_versions("networking.istio.io", [])
    with pytest.raises(NotFoundError, match="does not serve the API group networking.istio.io"):
        KubernetesStore.connect(server=cluster.url).get("VirtualService", "iris", NS)


def test_without_the_go_library_the_tests_skip_or_fail_under_mlserve_require_go(tmp_path, monkeypatch):
    """CI sets MLSERVE_REQUIRE_GO=1: a machine that cannot build the checker must fail there, not pass by skipping."""
    from helpers.kube import gojsonpatch, start_cluster

    monkeypatch.setattr(gojsonpatch, "LIBRARY", tmp_path / "no-such-library")
    monkeypatch.delenv(gojsonpatch.REQUIRE_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception, match="golang-github-evanphx-json-patch-dev"):
        start_cluster()
    monkeypatch.setenv(gojsonpatch.REQUIRE_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match="MLSERVE_REQUIRE_GO=1"):
        start_cluster()
