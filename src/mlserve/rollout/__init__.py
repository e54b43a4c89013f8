"""Progressive delivery of registry versions on Kubernetes: canary and blue-green, judged by metrics.

* :mod:`mlserve.rollout.engine` drives rollouts on any :class:`~mlserve.rollout.store.ResourceStore`
  (:class:`~mlserve.rollout.kube.KubernetesStore` for a cluster, ``ManifestStore`` for YAML files):
  :mod:`.strategies` build each rollout once as a list of :mod:`.steps`, :mod:`.executor` runs them,
  :mod:`.planner` renders them, :mod:`.commands` are status/abort/promote/undo, :mod:`.revert` puts
  the snapshot back, :mod:`.world` is the injected clock, HTTP and subprocesses;
* :mod:`mlserve.rollout.routers` computes the guarded traffic patches, :mod:`.state` keeps the state
  and lock in a Lease, :mod:`.workload` derives canaries and tells workloads their version;
* :mod:`mlserve.rollout.analysis` is the judge (Prometheus thresholds and Mann-Whitney comparison);
* :mod:`mlserve.rollout.api` wires them together for the CLI. Nothing here is imported by ``mlserve --help``.
"""
