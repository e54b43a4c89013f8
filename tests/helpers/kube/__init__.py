"""A Kubernetes API server emulator for the rollout tests (see :mod:`helpers.kube.server`)."""

from __future__ import annotations

import pytest


def start_cluster():
    """A started :class:`~helpers.kube.server.Cluster`; skips (or fails under MLSERVE_REQUIRE_GO=1) without the Go checker."""
    from helpers.kube import gojsonpatch
    from helpers.kube.server import Cluster

    try:
        return Cluster().start()
    except gojsonpatch.CheckerUnavailable as exc:
        message = f"the Kubernetes emulator applies JSON patches with the real Go library: {exc}"
        if gojsonpatch.required():
            pytest.fail(f"{message} ({gojsonpatch.REQUIRE_ENV}=1)")
        pytest.skip(message)
