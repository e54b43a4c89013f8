"""ManifestStore on a realistic GitOps directory: the seed's Deployment+Service and canary Ingress,
and a Gateway API HTTPRoute with two weighted backends, all with comments."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mlserve.errors import ConflictError, NotFoundError, UsageError
from mlserve.rollout.manifests import ManifestStore
from mlserve.rollout.store import ResourceStore

WEIGHTS = "/spec/rules/0/backendRefs"
CANARY_WEIGHT = "/metadata/annotations/nginx.ingress.kubernetes.io~1canary-weight"
IMAGE = "/spec/template/spec/containers/0/image"


def route_weights(stable: int, canary: int, *, was: tuple[int, int]) -> list[dict]:
    """The guarded patch a Gateway API router sends: test the old weights, then replace them."""
    return [
        {"op": "test", "path": f"{WEIGHTS}/0/name", "value": "churn-api"},
        {"op": "test", "path": f"{WEIGHTS}/0/weight", "value": was[0]},
        {"op": "test", "path": f"{WEIGHTS}/1/weight", "value": was[1]},
        {"op": "replace", "path": f"{WEIGHTS}/0/weight", "value": stable},
        {"op": "replace", "path": f"{WEIGHTS}/1/weight", "value": canary},
    ]


def test_store_speaks_the_resource_store_protocol_and_is_not_live(repo: Path) -> None:
    store = ManifestStore(repo)
    assert isinstance(store, ResourceStore)
    assert store.is_live is False
    assert [(o.kind, o.namespace, o.name, o.path, o.line) for o in store.objects()] == [
        ("Deployment", "ml", "churn-api", "churn/deployment.yaml", 1),
        ("Service", "ml", "churn-api", "churn/deployment.yaml", 41),
        ("HTTPRoute", "ml", "churn-api", "churn/httproute.yaml", 1),
        ("Ingress", "ml", "churn-api-canary", "churn/ingress-canary.yaml", 1),
    ]


def test_get_returns_a_plain_deep_copy(repo: Path) -> None:
    store = ManifestStore(repo)
    service = store.get("Service", "churn-api", "ml")
    assert service == {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "churn-api", "namespace": "ml"},
        "spec": {"selector": {"app": "churn-api", "track": "stable"}, "ports": [{"port": 80, "targetPort": 8000}]},
    }
    assert type(service) is dict and type(service["spec"]["ports"]) is list
    ingress = store.get("Ingress", "churn-api-canary", "ml")
    weight = ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/canary-weight"]
    assert weight == "10" and type(weight) is str  # not ruamel's DoubleQuotedScalarString
    service["spec"]["selector"]["track"] = "canary"  # changing the copy changes nothing stored
    assert store.get("Service", "churn-api", "ml")["spec"]["selector"]["track"] == "stable"
    assert store.get("Service", "churn-api", "default") is None
    assert store.get("Service", "nope", "ml") is None


def test_httproute_weights_land_and_comments_survive(repo: Path, expected: Path, snapshot) -> None:
    before = snapshot(repo)
    store = ManifestStore(repo)
    result = store.patch("HTTPRoute", "churn-api", "ml", route_weights(75, 25, was=(90, 10)))
    assert [b["weight"] for b in result["spec"]["rules"][0]["backendRefs"]] == [75, 25]
    assert (repo / "churn/httproute.yaml").read_text() == (expected / "httproute-75-25.yaml").read_text()
    after = snapshot(repo)
    assert set(after) == set(before)  # no temporary file left behind
    assert {k for k in after if after[k] != before[k]} == {"churn/httproute.yaml"}
    # a second store (a later CI job) reads the new weights from the file
    route = ManifestStore(repo).get("HTTPRoute", "churn-api", "ml")
    assert [b["weight"] for b in route["spec"]["rules"][0]["backendRefs"]] == [75, 25]


def test_nginx_canary_weight_keeps_its_double_quotes(repo: Path, expected: Path, snapshot) -> None:
    before = snapshot(repo)
    store = ManifestStore(repo)
    store.patch(
        "Ingress",
        "churn-api-canary",
        "ml",
        [
            {"op": "test", "path": CANARY_WEIGHT, "value": "10"},
            {"op": "replace", "path": CANARY_WEIGHT, "value": "25"},
        ],
    )
    text = (repo / "churn/ingress-canary.yaml").read_text()
    assert text == (expected / "ingress-canary-25.yaml").read_text()
    assert '    nginx.ingress.kubernetes.io/canary-weight: "25"  # percent of requests sent to the canary\n' in text
    assert "  - host: api.example.com\n" in text  # the file's own sequence style (offset 0) is kept
    after = snapshot(repo)
    assert {k for k in after if after[k] != before[k]} == {"churn/ingress-canary.yaml"}


def test_patch_in_a_multi_document_file_keeps_the_other_document_verbatim(repo: Path, expected: Path) -> None:
    original = (repo / "churn/deployment.yaml").read_text()
    service_part = original[original.index("---\n") :]
    store = ManifestStore(repo)
    store.patch(
        "Deployment",
        "churn-api",
        "ml",
        [
            {"op": "test", "path": "/spec/template/spec/containers/0/name", "value": "api"},
            {"op": "replace", "path": IMAGE, "value": "registry.example.com/churn-api:1.5.0"},
            {"op": "replace", "path": "/spec/template/spec/containers/0/env/0/value", "value": "4"},
        ],
    )
    text = (repo / "churn/deployment.yaml").read_text()
    assert text == (expected / "deployment-1.5.0.yaml").read_text()
    assert text.endswith(service_part)


def test_failed_test_operation_changes_neither_memory_nor_file(repo: Path, snapshot) -> None:
    before = snapshot(repo)
    mtime = (repo / "churn/httproute.yaml").stat().st_mtime_ns
    store = ManifestStore(repo)
    with pytest.raises(ConflictError, match=r"test failed at /spec/rules/0/backendRefs/1/weight: expected 20, found 10"):
        # the weight replace comes first: it must be undone when the later test fails
        store.patch(
            "HTTPRoute",
            "churn-api",
            "ml",
            [{"op": "replace", "path": f"{WEIGHTS}/0/weight", "value": 80}, {"op": "test", "path": f"{WEIGHTS}/1/weight", "value": 20}],
        )
    with pytest.raises(ConflictError, match=r"no member 'nope'"):
        store.patch("HTTPRoute", "churn-api", "ml", [{"op": "remove", "path": "/spec/nope"}])
    assert snapshot(repo) == before
    assert (repo / "churn/httproute.yaml").stat().st_mtime_ns == mtime
    assert [b["weight"] for b in store.get("HTTPRoute", "churn-api", "ml")["spec"]["rules"][0]["backendRefs"]] == [90, 10]
    assert store.changes() == []


def test_patch_that_changes_nothing_does_not_rewrite(repo: Path) -> None:
    store = ManifestStore(repo)
    path = repo / "churn/httproute.yaml"
    stat = path.stat()
    result = store.patch("HTTPRoute", "churn-api", "ml", route_weights(90, 10, was=(90, 10)))
    assert result["spec"]["rules"][0]["backendRefs"][1]["weight"] == 10
    assert path.stat().st_ino == stat.st_ino and path.stat().st_mtime_ns == stat.st_mtime_ns
    assert store.changes() == []


def test_dry_run_computes_without_writing(repo: Path, snapshot) -> None:
    before = snapshot(repo)
    store = ManifestStore(repo)
    result = store.patch("HTTPRoute", "churn-api", "ml", route_weights(50, 50, was=(90, 10)), dry_run=True)
    assert [b["weight"] for b in result["spec"]["rules"][0]["backendRefs"]] == [50, 50]
    canary = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "churn-api-canary", "namespace": "ml"}}
    assert store.create(canary, dry_run=True) == canary
    assert snapshot(repo) == before
    assert store.get("Service", "churn-api-canary", "ml") is None
    assert store.changes() == []


def test_create_canary_from_stable_writes_a_new_file_in_the_directory_style(repo: Path) -> None:
    store = ManifestStore(repo)
    canary = store.get("Deployment", "churn-api", "ml")
    canary["metadata"]["name"] = "churn-api-canary"
    for labels in (canary["metadata"]["labels"], canary["spec"]["selector"]["matchLabels"], canary["spec"]["template"]["metadata"]["labels"]):
        labels["track"] = "canary"
    canary["spec"]["replicas"] = 1
    canary["spec"]["template"]["spec"]["containers"][0]["image"] = "registry.example.com/churn-api:1.5.0"
    created = store.create(canary)
    assert created == canary
    path = repo / "deployment-churn-api-canary.yaml"
    assert path.read_text() == (Path(__file__).parent / "fixtures/expected/deployment-churn-api-canary.yaml").read_text()
    assert ManifestStore(repo).get("Deployment", "churn-api-canary", "ml") == canary
    with pytest.raises(ConflictError, match=r"Deployment 'churn-api-canary' in namespace 'ml' already exists in deployment-churn-api-canary.yaml:1"):
        store.create(canary)
    assert [c.action for c in store.changes()] == ["created"]
    assert store.changes()[0].diff.startswith("--- /dev/null\n+++ b/deployment-churn-api-canary.yaml\n")


def test_create_into_a_configured_file_appends_documents(repo: Path) -> None:
    store = ManifestStore(repo, create_file="churn/canary.yaml")
    store.create({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "churn-api-canary", "namespace": "ml"},
                  "spec": {"selector": {"app": "churn-api", "track": "canary"}, "ports": [{"port": 80, "targetPort": 8000}]}})
    store.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "churn-api-canary"}, "data": {"MODEL_VERSION": "4"}})
    assert (repo / "churn/canary.yaml").read_text() == (
        "apiVersion: v1\n"
        "kind: Service\n"
        "metadata:\n"
        "  name: churn-api-canary\n"
        "  namespace: ml\n"
        "spec:\n"
        "  selector:\n"
        "    app: churn-api\n"
        "    track: canary\n"
        "  ports:\n"
        "    - port: 80\n"
        "      targetPort: 8000\n"
        "---\n"
        "apiVersion: v1\n"
        "kind: ConfigMap\n"
        "metadata:\n"
        "  name: churn-api-canary\n"
        "data:\n"
        "  MODEL_VERSION: '4'\n"
    )
    # no namespace in the document: it lives in the store's default namespace
    assert store.get("ConfigMap", "churn-api-canary", "default")["data"] == {"MODEL_VERSION": "4"}
    assert [(o.kind, o.line) for o in store.objects() if o.path == "churn/canary.yaml"] == [("Service", 1), ("ConfigMap", 14)]


@pytest.mark.parametrize("bad", ["../outside.yaml", ".hidden.yaml", "notes.txt", "/etc/x.yaml"])
def test_create_refuses_a_file_outside_the_manifests(repo: Path, bad: str) -> None:
    store = ManifestStore(repo, create_file=bad)
    with pytest.raises(UsageError):
        store.create({"kind": "ConfigMap", "metadata": {"name": "x"}})


def test_create_needs_kind_and_name(repo: Path) -> None:
    with pytest.raises(UsageError, match="without 'kind' and 'metadata.name'"):
        ManifestStore(repo).create({"kind": "ConfigMap", "metadata": {}})


def test_delete_a_document_keeps_the_rest_and_an_emptied_file_goes(repo: Path) -> None:
    original = (repo / "churn/deployment.yaml").read_text()
    store = ManifestStore(repo)
    store.delete("Service", "churn-api", "ml")
    assert (repo / "churn/deployment.yaml").read_text() == original[: original.index("---\n")]
    store.delete("Deployment", "churn-api", "ml")
    assert not (repo / "churn/deployment.yaml").exists()
    with pytest.raises(NotFoundError, match="Deployment 'churn-api' in namespace 'ml' is not defined"):
        store.delete("Deployment", "churn-api", "ml")
    assert [(c.path, c.action) for c in store.changes()] == [("churn/deployment.yaml", "deleted")]


def test_delete_the_first_document_leaves_a_valid_stream(repo: Path) -> None:
    original = (repo / "churn/deployment.yaml").read_text()
    store = ManifestStore(repo)
    store.delete("Deployment", "churn-api", "ml")
    assert (repo / "churn/deployment.yaml").read_text() == original[original.index("---\n") :]
    assert ManifestStore(repo).get("Service", "churn-api", "ml")["spec"]["ports"][0]["port"] == 80


def test_create_then_delete_removes_the_new_file(repo: Path, snapshot) -> None:
    before = snapshot(repo)
    store = ManifestStore(repo)
    store.create({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "churn-api-canary", "namespace": "ml"}})
    assert (repo / "service-churn-api-canary.yaml").exists()
    store.delete("Service", "churn-api-canary", "ml")
    assert snapshot(repo) == before
    assert store.changes() == []


def test_plan_mode_keeps_changes_in_memory_and_shows_a_diff(repo: Path, snapshot) -> None:
    before = snapshot(repo)
    plan = ManifestStore(repo, write=False)
    plan.patch("HTTPRoute", "churn-api", "ml", route_weights(75, 25, was=(90, 10)))
    plan.patch("HTTPRoute", "churn-api", "ml", route_weights(50, 50, was=(75, 25)))  # builds on the first
    plan.create({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "churn-api-canary", "namespace": "ml"}})
    plan.delete("Ingress", "churn-api-canary", "ml")
    assert snapshot(repo) == before
    assert [(c.path, c.action) for c in plan.changes()] == [
        ("churn/httproute.yaml", "modified"),
        ("churn/ingress-canary.yaml", "deleted"),
        ("service-churn-api-canary.yaml", "created"),
    ]
    diff = plan.diff()
    assert (
        "--- a/churn/httproute.yaml\n+++ b/churn/httproute.yaml\n"
        "@@ -19,8 +19,8 @@\n"
        "         # the stable model version\n"
        "         - name: churn-api\n"
        "           port: 80\n"
        "-          weight: 90\n"
        "+          weight: 50\n"
        "         # the canary (mlserve rollout moves this weight step by step)\n"
        "         - name: churn-api-canary\n"
        "           port: 80\n"
        "-          weight: 10\n"
        "+          weight: 50\n"
    ) in diff
    assert "--- a/churn/ingress-canary.yaml\n+++ /dev/null\n" in diff
    assert "--- /dev/null\n+++ b/service-churn-api-canary.yaml\n@@ -0,0 +1,5 @@\n+apiVersion: v1\n" in diff
    assert plan.get("Ingress", "churn-api-canary", "ml") is None
    assert plan.get("HTTPRoute", "churn-api", "ml")["spec"]["rules"][0]["backendRefs"][1]["weight"] == 50


def test_diff_applies_with_patch_to_give_the_written_result(repo: Path, tmp_path: Path) -> None:
    """What plan shows is what a real run writes: git apply of the diff gives the same bytes."""
    import shutil
    import subprocess

    other = tmp_path / "other"
    shutil.copytree(repo, other)
    plan = ManifestStore(repo, write=False)
    real = ManifestStore(other)
    for store in (plan, real):
        store.patch("HTTPRoute", "churn-api", "ml", route_weights(75, 25, was=(90, 10)))
        store.patch("Deployment", "churn-api", "ml", [{"op": "replace", "path": IMAGE, "value": "registry.example.com/churn-api:1.5.0"}])
        store.create({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "churn-api-canary", "namespace": "ml"}})
    (tmp_path / "plan.diff").write_text(plan.diff())
    subprocess.run(["git", "apply", "--unsafe-paths", f"--directory={repo.relative_to(tmp_path)}", str(tmp_path / "plan.diff")],
                   cwd=tmp_path, check=True, capture_output=True)
    for name in ("churn/httproute.yaml", "churn/deployment.yaml", "service-churn-api-canary.yaml"):
        assert (repo / name).read_bytes() == (other / name).read_bytes(), name


def test_namespace_defaults_to_the_store_default(tmp_path: Path) -> None:
    (tmp_path / "cm.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  a: '1'\n")
    assert ManifestStore(tmp_path).get("ConfigMap", "settings", "default") is not None
    assert ManifestStore(tmp_path).get("ConfigMap", "settings", "ml") is None
    assert ManifestStore(tmp_path, default_namespace="ml").get("ConfigMap", "settings", "ml")["data"] == {"a": "1"}


def test_duplicate_objects_are_refused_naming_both_files(repo: Path) -> None:
    overlay = repo / "overlays/prod"
    overlay.mkdir(parents=True)
    (overlay / "patch.yml").write_text(
        "# kustomize overlay\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: churn-api\n  namespace: ml\nspec:\n  replicas: 4\n"
    )
    with pytest.raises(UsageError) as err:
        ManifestStore(repo).get("Service", "churn-api", "ml")
    assert str(err.value).startswith(
        "Deployment 'churn-api' in namespace 'ml' is defined twice: in churn/deployment.yaml:1 and in overlays/prod/patch.yml:1"
    )
    assert "not a base and its overlays" in str(err.value)


def test_invalid_yaml_is_reported_with_file_and_line(repo: Path) -> None:
    (repo / "churn/values.yaml").write_text("# ok\nreplicas: 2\n---\nimage:\n  tag: [1.4.0\n  pull: Always\n")
    with pytest.raises(UsageError, match=r"^churn/values.yaml:6:\d+: invalid YAML: "):
        ManifestStore(repo).objects()


def test_duplicate_keys_are_invalid_yaml(repo: Path) -> None:
    (repo / "dup.yaml").write_text("kind: ConfigMap\nmetadata:\n  name: a\n  name: b\n")
    with pytest.raises(UsageError, match=r"^dup.yaml:4:\d+: invalid YAML: "):
        ManifestStore(repo).objects()


def test_missing_directory_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="does not exist"):
        ManifestStore(tmp_path / "nope").get("Service", "a", "default")


def test_patch_of_an_unknown_object_is_not_found(repo: Path) -> None:
    with pytest.raises(NotFoundError, match="HTTPRoute 'other' in namespace 'ml' is not defined in any manifest"):
        ManifestStore(repo).patch("HTTPRoute", "other", "ml", [{"op": "test", "path": "/kind", "value": "HTTPRoute"}])


def test_patch_cannot_rename_onto_an_existing_object(repo: Path) -> None:
    store = ManifestStore(repo)
    with pytest.raises(ConflictError, match="already exists"):
        store.patch("Ingress", "churn-api-canary", "ml", [{"op": "replace", "path": "/kind", "value": "HTTPRoute"},
                                                         {"op": "replace", "path": "/metadata/name", "value": "churn-api"}])
    with pytest.raises(UsageError, match="without 'kind' or 'metadata.name'"):
        store.patch("Ingress", "churn-api-canary", "ml", [{"op": "remove", "path": "/metadata/name"}])


def test_hidden_paths_temporary_files_and_other_suffixes_are_not_manifests(repo: Path) -> None:
    # what a writer killed between creating its temporary file and renaming it leaves behind
    (repo / "churn/.tmp-httproute.yaml-0123456789ab").write_text("kind: HTTPRoute\nmetadata:\n  name: churn-api\n  namespace: ml\n")
    (repo / ".git").mkdir()
    (repo / ".git/config.yaml").write_text("kind: Service\nmetadata:\n  name: churn-api\n  namespace: ml\n")
    (repo / "churn/.httproute.yaml.swp").write_text("\x00garbage")
    (repo / "README.md").write_text("# not yaml: [\n")
    store = ManifestStore(repo)
    assert len(store.objects()) == 4
    store.patch("HTTPRoute", "churn-api", "ml", route_weights(75, 25, was=(90, 10)))
    assert (repo / "churn/.tmp-httproute.yaml-0123456789ab").exists()  # not ours to remove, not read


def test_file_changed_on_disk_after_reading_is_reread(repo: Path) -> None:
    store = ManifestStore(repo)
    assert store.get("HTTPRoute", "churn-api", "ml")["spec"]["rules"][0]["backendRefs"][1]["weight"] == 10
    path = repo / "churn/httproute.yaml"
    path.write_text(path.read_text().replace("weight: 10", "weight: 0") + "# reverted by Argo CD\n")
    assert store.get("HTTPRoute", "churn-api", "ml")["spec"]["rules"][0]["backendRefs"][1]["weight"] == 0
    with pytest.raises(ConflictError, match="expected 10, found 0"):
        store.patch("HTTPRoute", "churn-api", "ml", route_weights(75, 25, was=(90, 10)))


def test_plan_refuses_when_a_file_it_changed_moves_underneath(repo: Path) -> None:
    plan = ManifestStore(repo, write=False)
    plan.patch("HTTPRoute", "churn-api", "ml", route_weights(75, 25, was=(90, 10)))
    path = repo / "churn/httproute.yaml"
    path.write_text(path.read_text() + "# edited by someone else\n")
    with pytest.raises(ConflictError, match="churn/httproute.yaml changed on disk"):
        plan.get("HTTPRoute", "churn-api", "ml")


def test_file_mode_crlf_and_bom_survive_a_write(tmp_path: Path) -> None:
    text = "\ufeff# windows file\r\napiVersion: v1\r\nkind: ConfigMap\r\nmetadata:\r\n  name: cfg  # keep\r\ndata:\r\n  weight: \"10\"\r\n"
    path = tmp_path / "cfg.yaml"
    path.write_bytes(text.encode())
    os.chmod(path, 0o600)
    ManifestStore(tmp_path).patch("ConfigMap", "cfg", "default", [{"op": "replace", "path": "/data/weight", "value": "20"}])
    assert path.read_bytes() == text.replace('"10"', '"20"').encode()
    assert path.stat().st_mode & 0o777 == 0o600


def test_documents_with_end_markers_and_comment_only_documents(tmp_path: Path) -> None:
    text = (
        "# header-only document: nothing but comments\n"
        "---\n"
        "kind: ConfigMap\n"
        "metadata: {name: a}  # flow style kept\n"
        "data:\n"
        "  x: '1'\n"
        "...\n"
        "--- # second\n"
        "kind: ConfigMap\n"
        "metadata:\n"
        "  name: b\n"
        "data:\n"
        "  x: '1'\n"
    )
    (tmp_path / "two.yaml").write_text(text)
    store = ManifestStore(tmp_path)
    store.patch("ConfigMap", "b", "default", [{"op": "add", "path": "/data/y", "value": "2"}])
    assert (tmp_path / "two.yaml").read_text() == text + "  y: '2'\n"
    store.patch("ConfigMap", "a", "default", [{"op": "replace", "path": "/data/x", "value": "3"}])
    assert (tmp_path / "two.yaml").read_text() == text.replace("x: '1'", "x: '3'", 1) + "  y: '2'\n"
    store.delete("ConfigMap", "a", "default")
    store.delete("ConfigMap", "b", "default")
    assert not (tmp_path / "two.yaml").exists()  # only a comment was left


def test_non_object_documents_and_lists_are_left_alone(tmp_path: Path) -> None:
    (tmp_path / "misc.yaml").write_text("- just\n- a list\n---\nkind: List\nitems: []\n---\nplain: mapping\n")
    store = ManifestStore(tmp_path)
    assert store.objects() == []
    assert store.warnings == ["misc.yaml:4: a 'kind: List' document is not looked into"]


def test_a_whole_canary_walk_and_back_leaves_the_files_byte_identical(repo: Path, snapshot) -> None:
    before = snapshot(repo)
    store = ManifestStore(repo)
    was = (90, 10)
    for canary in (25, 50, 100, 10):
        store.patch("HTTPRoute", "churn-api", "ml", route_weights(100 - canary, canary, was=was))
        store.patch("Ingress", "churn-api-canary", "ml", [{"op": "replace", "path": CANARY_WEIGHT, "value": str(canary)}])
        was = (100 - canary, canary)
        route = ManifestStore(repo).get("HTTPRoute", "churn-api", "ml")  # what the next CI job would read
        assert [b["weight"] for b in route["spec"]["rules"][0]["backendRefs"]] == [100 - canary, canary]
    assert snapshot(repo) == before
    assert store.changes() == []


def test_removing_a_backend_takes_its_comment_along(repo: Path) -> None:
    original = (repo / "churn/httproute.yaml").read_text()
    canary_block = (
        "        # the canary (mlserve rollout moves this weight step by step)\n"
        "        - name: churn-api-canary\n"
        "          port: 80\n"
        "          weight: 10\n"
    )
    stable_block = "        # the stable model version\n        - name: churn-api\n          port: 80\n          weight: 90\n"
    store = ManifestStore(repo)
    store.patch("HTTPRoute", "churn-api", "ml", [{"op": "test", "path": f"{WEIGHTS}/1/name", "value": "churn-api-canary"},
                                               {"op": "remove", "path": f"{WEIGHTS}/1"},
                                               {"op": "replace", "path": f"{WEIGHTS}/0/weight", "value": 1}])
    assert (repo / "churn/httproute.yaml").read_text() == original.replace(canary_block, "").replace("weight: 90", "weight: 1")
    ManifestStore(repo).patch("HTTPRoute", "churn-api", "ml", [{"op": "remove", "path": f"{WEIGHTS}/0"},
                                                              {"op": "add", "path": f"{WEIGHTS}/-", "value": {"name": "churn-api-v2", "port": 80}}])
    assert (repo / "churn/httproute.yaml").read_text() == original.replace(canary_block, "").replace(
        stable_block, "        - name: churn-api-v2\n          port: 80\n"
    )


def test_a_hand_written_file_keeps_its_quirks_on_every_line_the_patch_does_not_touch(tmp_path: Path) -> None:
    """Extra spaces, a flow list and two list styles in one document: only changed lines differ."""
    original = (Path(__file__).parent / "fixtures/quirky-deployment.yaml").read_text()
    (tmp_path / "quirky.yaml").write_text(original)
    store = ManifestStore(tmp_path)
    env = "/spec/template/spec/containers/0/env"
    store.patch("Deployment", "quirky", "default", [{"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "example/api:2"}])
    assert (tmp_path / "quirky.yaml").read_text() == original.replace('"example/api:1"', '"example/api:2"')
    store.patch("Deployment", "quirky", "default", [{"op": "replace", "path": f"{env}/0/value", "value": "4"},
                                                    {"op": "replace", "path": f"{env}/1/value", "value": "debug"},
                                                    {"op": "add", "path": f"{env}/-", "value": {"name": "NEW", "value": "x"}}])
    assert (tmp_path / "quirky.yaml").read_text() == (
        original.replace('"example/api:1"', '"example/api:2"')
        .replace('value: "3"', 'value: "4"')
        .replace("            value:    info\n", "            value: debug\n          - name: NEW\n            value: x\n")
    )
    store.patch("Deployment", "quirky", "default", [{"op": "remove", "path": f"{env}/0"}])
    text = (tmp_path / "quirky.yaml").read_text()
    assert "MODEL_VERSION" not in text
    assert "  name:   quirky        # extra spaces before the value\n" in text
    assert '        args: ["--port",   "8000"]\n\n\n' in text
    assert "      - name: api\n" in text and "          - name: LOG_LEVEL\n" in text


@pytest.mark.parametrize(
    ("theirs", "merged"),
    [
        # the change is elsewhere: the file's uneven stretch (a flow mapping on two lines) is kept whole
        ("a: 1\nb: {x: 1, y: 2}\nc: 4\n", "a:  1\nb: {x: 1,\n  y: 2}\nc: 4\n# end\n"),
        # the change is inside the uneven stretch: the emitter's lines for all of it
        ("a: 1\nb: {x: 1, y: 3}\nc: 3\n", "a: 1\nb: {x: 1, y: 3}\nc: 3\n# end\n"),
        # a new last line goes before the file's closing comment
        ("a: 1\nb: {x: 1, y: 2}\nc: 3\nd: 5\n", "a:  1\nb: {x: 1,\n  y: 2}\nc: 3\nd: 5\n# end\n"),
    ],
)
def test_keep_local_lines(theirs: str, merged: str) -> None:
    from mlserve.rollout.manifests import keep_local_lines

    base = "a: 1\nb: {x: 1, y: 2}\nc: 3\n"
    ours = "a:  1\nb: {x: 1,\n  y: 2}\nc: 3\n# end\n"
    assert keep_local_lines(base, ours, theirs) == merged


@pytest.mark.parametrize(
    ("text", "mapping", "sequence", "offset"),
    [
        ("spec:\n  containers:\n  - name: api\n    args:\n    - a\n", 2, 2, 0),
        ("spec:\n  containers:\n    - name: api\n      args:\n        - a\n", 2, 4, 2),
        ("spec:\n    containers:\n        -   name: api\n", 4, 8, 4),
        # a block scalar's text does not count, however it is indented
        ("data:\n  script: |\n      - not: a list\n      more\n  list:\n  - x\n", 2, 2, 0),
        ("a: 1\nb: [x, y]\n", None, None, None),
    ],
)
def test_guess_indent(text: str, mapping, sequence, offset) -> None:
    from mlserve.rollout.manifests import guess_indent

    guess = guess_indent(text)
    assert (guess.mapping, guess.sequence, guess.offset) == (mapping, sequence, offset)


def test_files_without_a_final_newline_diff_and_append_cleanly(tmp_path: Path) -> None:
    import subprocess

    text = "kind: ConfigMap\nmetadata:\n  name: a\ndata:\n  w: '10'"
    for name in ("plan", "real"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "a.yaml").write_text(text)
    plan, real = ManifestStore(tmp_path / "plan", write=False), ManifestStore(tmp_path / "real", create_file="a.yaml")
    plan.patch("ConfigMap", "a", "default", [{"op": "replace", "path": "/data/w", "value": "20"}])
    real.patch("ConfigMap", "a", "default", [{"op": "replace", "path": "/data/w", "value": "20"}])
    assert (tmp_path / "real/a.yaml").read_text() == text.replace("10", "20")  # still no final newline
    assert plan.diff().endswith("+  w: '20'\n\\ No newline at end of file\n")
    (tmp_path / "plan.diff").write_text(plan.diff())
    subprocess.run(["git", "apply", "--directory=plan", "plan.diff"], cwd=tmp_path, check=True, capture_output=True)
    assert (tmp_path / "plan/a.yaml").read_text() == (tmp_path / "real/a.yaml").read_text()
    real.create({"kind": "ConfigMap", "metadata": {"name": "b"}})
    assert (tmp_path / "real/a.yaml").read_text() == text.replace("10", "20") + "\n---\nkind: ConfigMap\nmetadata:\n  name: b\n"
    assert [(o.name, o.line) for o in real.objects()] == [("a", 1), ("b", 7)]


def test_a_change_the_file_signature_misses_is_still_not_overwritten(repo: Path) -> None:
    """Same size, same mtime (a coarse-clock file system): the byte check before writing catches it."""
    store = ManifestStore(repo)
    assert store.get("HTTPRoute", "churn-api", "ml") is not None
    path = repo / "churn/httproute.yaml"
    stat = path.stat()
    edited = path.read_text().replace("weight: 90", "weight: 80")
    with open(path, "r+") as fh:  # in place: same inode, same size
        fh.write(edited)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    with pytest.raises(ConflictError, match="churn/httproute.yaml changed on disk since it was read; not overwriting it"):
        store.patch("HTTPRoute", "churn-api", "ml", [{"op": "replace", "path": f"{WEIGHTS}/1/weight", "value": 25}])
    assert path.read_text() == edited
    # the next read sees the file as it is now, so a retry works from the real values
    assert [b["weight"] for b in store.get("HTTPRoute", "churn-api", "ml")["spec"]["rules"][0]["backendRefs"]] == [80, 10]
    store.patch("HTTPRoute", "churn-api", "ml", [{"op": "replace", "path": f"{WEIGHTS}/1/weight", "value": 20}])
    assert path.read_text() == edited.replace("weight: 10", "weight: 20")


def test_when_ruamel_cannot_write_the_comments_back_the_file_lines_are_merged_in(repo: Path) -> None:
    """An empty `{}` first item under a commented list makes ruamel.yaml write broken YAML."""
    original = (repo / "churn/httproute.yaml").read_text()
    store = ManifestStore(repo)
    store.patch("HTTPRoute", "churn-api", "ml", [{"op": "replace", "path": f"{WEIGHTS}/0", "value": {}}])
    assert (repo / "churn/httproute.yaml").read_text() == original.replace(
        "        - name: churn-api\n          port: 80\n          weight: 90\n", "        - {}\n"
    )  # comments and the quoted hostname come back from the file's own lines
    assert ManifestStore(repo).get("HTTPRoute", "churn-api", "ml")["spec"]["rules"][0]["backendRefs"][0] == {}
