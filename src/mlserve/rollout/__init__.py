"""Progressive delivery of registry versions on Kubernetes: canary and blue-green, judged by metrics.

* :mod:`mlserve.rollout.engine` drives rollouts on any :class:`~mlserve.rollout.store.ResourceStore`
  (:class:`~mlserve.rollout.kube.KubernetesStore` for a cluster, ``ManifestStore`` for YAML files);
* :mod:`mlserve.rollout.routers` computes the guarded traffic patches, :mod:`.state` keeps the state
  and lock in a Lease, :mod:`.workload` derives canaries and tells workloads their version;
* :mod:`mlserve.rollout.analysis` is the judge (Prometheus thresholds and Mann-Whitney comparison);
* :mod:`mlserve.rollout.api` wires them together for the CLI. Nothing here is imported by ``mlserve --help``.
"""
