"""Random patches on the realistic fixtures: the files always read back as the patched objects."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import jsonpatch as reference
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlserve.errors import ConflictError
from mlserve.rollout.jsonpatch import make_pointer
from mlserve.rollout.manifests import ManifestStore

FIXTURES = Path(__file__).parent / "fixtures"
OBJECTS = [("Deployment", "churn-api", "ml"), ("Service", "churn-api", "ml"), ("HTTPRoute", "churn-api", "ml"),
           ("Ingress", "churn-api-canary", "ml"), ("Deployment", "quirky", "default")]
SCALARS = st.one_of(st.integers(0, 100), st.sampled_from(["10", "true", "", "a b", "x: y", "# not a comment", "multi\nline"]), st.booleans())
VALUES = st.one_of(SCALARS, st.dictionaries(st.sampled_from(["a", "b/c", "d~e"]), SCALARS, max_size=2), st.lists(SCALARS, max_size=2))
PROTECTED = {("kind",), ("metadata",), ("metadata", "name"), ("metadata", "namespace")}


def _locations(node, prefix=()):
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
    for key, value in items:
        yield (*prefix, str(key))
        yield from _locations(value, (*prefix, str(key)))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_random_patches_read_back_and_leave_other_documents_alone(tmp_path_factory, data) -> None:
    repo = tmp_path_factory.mktemp("repo")
    shutil.copytree(FIXTURES / "gitops", repo, dirs_exist_ok=True)
    shutil.copy(FIXTURES / "quirky-deployment.yaml", repo / "quirky.yaml")  # a hand-written file
    store = ManifestStore(repo, write=data.draw(st.booleans()))
    kind, name, ns = data.draw(st.sampled_from(OBJECTS))
    obj = store.get(kind, name, ns)
    others = {(k, n, s): store.get(k, n, s) for k, n, s in OBJECTS if (k, n, s) != (kind, name, ns)}
    home = next(o.path for o in store.objects() if (o.kind, o.name, o.namespace) == (kind, name, ns))
    service_text = (repo / "churn/deployment.yaml").read_text().split("---\n", 1)[1]
    ops, state = [], copy.deepcopy(obj)
    for _ in range(data.draw(st.integers(1, 4))):
        paths = [p for p in _locations(state) if p not in PROTECTED]
        if not paths:
            break
        op_kind = data.draw(st.sampled_from(["replace", "remove", "add"]))
        path = data.draw(st.sampled_from(paths))
        if op_kind == "add":  # a new member next to an existing one, or an item before it
            path = (*path[:-1], path[-1] + "-new") if not path[-1].isdigit() else path
        op = {"op": op_kind, "path": make_pointer(list(path))}
        if op_kind != "remove":
            op["value"] = data.draw(VALUES)
        ops.append(op)
        state = reference.apply_patch(state, [copy.deepcopy(op)])
    ops.append({"op": "test", "path": "/kind", "value": kind})
    result = store.patch(kind, name, ns, ops)
    assert result == state
    assert store.get(kind, name, ns) == state
    for (k, n, s), before in others.items():
        assert store.get(k, n, s) == before
    assert {c.path for c in store.changes()} <= {home}
    if store.write:
        assert ManifestStore(repo).get(kind, name, ns) == state  # what is on disk, read afresh
        if (kind, name) == ("Deployment", "churn-api"):  # the Service after it in the same file is untouched, byte for byte
            assert (repo / "churn/deployment.yaml").read_text().endswith("---\n" + service_text)
    try:
        store.patch(kind, name, ns, [{"op": "test", "path": "/kind", "value": "Other"}, {"op": "remove", "path": "/spec"}])
    except ConflictError:
        pass
    assert store.get(kind, name, ns) == state
