"""Kubernetes manifests for serving a registry version with ``mlserve serve`` (``mlserve deploy``)."""

from mlserve.deploy.manifests import DeployManifests, DeploySpec, build_manifests

__all__ = ["DeployManifests", "DeploySpec", "build_manifests"]
