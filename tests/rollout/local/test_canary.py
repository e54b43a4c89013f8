"""``mlserve rollout canary --target local`` on a real ``mlserve serve``: judged by the server's own /metrics."""

from __future__ import annotations

import time

import pytest

from mlserve import exitcodes
from rollout.local.local_support import (
    MODEL,
    PAUSE,
    Traffic,
    lease,
    production,
    run_cli,
    split,
    target_args,
    variants,
)

pytestmark = pytest.mark.timeout(120)


def canary(server, registry, analysis, to: str, *extra: str):  # noqa: ANN001, ANN201
    return run_cli("rollout", "canary", MODEL, "--to", to, *target_args(server, registry), "--steps", "20,100",
                   "--pause", PAUSE, "--analysis", str(analysis), *extra)


def test_a_good_canary_is_promoted_by_compare_and_swap_and_stable_follows_production(server, registry, analysis):
    started = time.monotonic()
    with Traffic(server) as traffic:
        rc, doc, err = canary(server, registry, analysis, "2")
    took = time.monotonic() - started
    assert rc == exitcodes.OK, err
    result = doc["result"]
    assert (result["outcome"], result["previous_version"], result["version"]) == ("promoted", "1", "2")
    assert [(s["weight"], s["verdict"]) for s in result["steps"]] == [(20, "pass"), (100, "pass")]
    first = result["steps"][0]["analysis"]["metrics"]
    assert {m["name"] for m in first} == {"success-rate", "latency-p99"}
    assert all(m["canary_points"] >= 3 and m["stable_points"] >= 3 for m in first), first  # compared at 20%
    assert 'variant="canary"' in first[0]["queries"]["canary"] and 'variant="stable"' in first[0]["queries"]["stable"]
    # the registry moved by compare-and-swap, and the stable variant (following @production) swapped to 2
    assert production(registry) == "2"
    assert variants(server) == {"stable": (100.0, "2")}
    assert split(server)["variants"][0]["follows"] == f"{MODEL}@production"
    assert traffic.codes.get(200, 0) > 100 and set(traffic.codes) == {200}, traffic.codes
    assert traffic.variants.get("canary", 0) > 0  # the canary really took traffic
    from mlserve.registry import Registry

    events = [e for e in Registry(registry).history(MODEL, stage="production").events]
    assert (events[-1].from_version, events[-1].to_version) == ("1", "2"), events[-1]
    assert "succeeded" in (events[-1].reason or ""), events[-1]
    stored = lease(registry)
    assert stored is not None and stored["spec"]["holderIdentity"] == ""  # the lock is released
    assert took < 30, took


def test_a_canary_that_fails_on_some_inputs_is_rolled_back_and_the_registry_is_untouched(server, registry, analysis):
    with Traffic(server) as traffic:
        rc, doc, err = canary(server, registry, analysis, "3")
    assert rc == exitcodes.ROLLED_BACK, err
    result = doc["result"]
    assert result["outcome"] == "rolled-back" and result["reverted"] is True
    step = result["steps"][0]
    assert (step["weight"], step["verdict"]) == (20, "fail")
    rate = next(m for m in step["analysis"]["metrics"] if m["name"] == "success-rate")
    assert rate["canary_median"] < 0.9 and rate["stable_median"] == 1.0, rate
    assert production(registry) == "1"
    assert variants(server) == {"stable": (100.0, "1")}  # traffic is back on stable, the canary is gone
    assert traffic.codes.get(500, 0) > 0  # the failures were real answers of the server
    assert err.strip().splitlines()[-1].startswith("error: the judge failed step 1 at 20%")


def test_no_traffic_is_inconclusive_never_a_pass(server, registry, analysis):
    rc, doc, err = canary(server, registry, analysis, "2")
    assert rc == exitcodes.INCONCLUSIVE, err
    result = doc["result"]
    assert result["outcome"] == "inconclusive" and result["reverted"] is True
    assert result["steps"][0]["verdict"] == "inconclusive"
    assert production(registry) == "1"
    assert variants(server) == {"stable": (100.0, "1")}
