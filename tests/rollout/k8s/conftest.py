"""Fixtures for rollout tests against the Kubernetes API emulator over real HTTP."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from helpers.kube import start_cluster
from helpers.kube.server import Cluster
from mlserve.rollout.kube import KubernetesStore
from rollout.k8s.k8s_support import HTTP_ROUTE, STABLE_DEPLOYMENT, STABLE_SERVICE


@pytest.fixture
def cluster():
    c = start_cluster()
    yield c
    c.stop()


@pytest.fixture
def seeded(cluster: Cluster) -> Cluster:
    for obj in (STABLE_DEPLOYMENT, STABLE_SERVICE, HTTP_ROUTE):
        cluster.put(copy.deepcopy(obj))
    return cluster


@pytest.fixture
def store(cluster: Cluster) -> KubernetesStore:
    """The store a rollout with --lease-duration 2s gets: transient errors retried for 1 s."""
    store = KubernetesStore.connect(server=cluster.url)
    store.retry_budget = 1.0
    return store


@pytest.fixture
def registry(tmp_path: Path):
    """A real registry holding iris versions 1 (in production) and 2."""
    from mlserve.registry import Registry

    reg = Registry(tmp_path / "registry", lock_timeout=5)
    for content in (b"model one", b"model two"):
        artifact = tmp_path / "model.bin"
        artifact.write_bytes(content)
        reg.register("iris", artifact)
    reg.promote("iris", "1")
    return reg


