"""``mlserve rollout ... --target local``: a rollout that drives a running ``mlserve serve`` (docs/rollout.md).

The engine (:mod:`mlserve.rollout.executor`) is the one Kubernetes rollouts use; this package gives it
what a cluster would: :mod:`.store` (the model's traffic split on the server as an object, changed
through the admin endpoint, :mod:`.admin`), :mod:`.router` (the weights of the stable and canary
variants), :mod:`.strategy` (the steps of a local canary or blue-green), :mod:`.state` (the Lease,
kept in the registry directory), and for a judge without Prometheus :mod:`.scrape` and :mod:`.promql`
(its parser: :mod:`.promql_syntax`). :mod:`.connect` puts them together for :mod:`mlserve.rollout.api`.
"""
