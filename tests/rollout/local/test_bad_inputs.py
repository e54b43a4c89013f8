"""What a local rollout says when the server, the token or the model is not what it needs: one line, its exit code."""

from __future__ import annotations

import pytest

from helpers.prometheus import free_port
from mlserve import exitcodes
from rollout.local.local_support import MODEL, TOKEN, lease, production, run_cli, start_server, target_args, variants

pytestmark = pytest.mark.timeout(60)


def one_error_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def test_an_unreachable_server_is_an_infrastructure_error_at_once(registry):
    dead = f"http://127.0.0.1:{free_port()}"
    rc, _, err = run_cli("rollout", "canary", MODEL, "--to", "2", "--target", "local", "--server", dead,
                         "--admin-url", f"http://127.0.0.1:{free_port()}", "--registry", str(registry), "--no-analysis")
    assert rc == exitcodes.INFRASTRUCTURE, err
    line = one_error_line(err)
    assert "did not answer GET /v2/mlserve/split/churn" in line and "Connection refused" in line, line
    assert lease(registry) is None  # nothing was locked
    rc, _, err = run_cli("rollout", "status", MODEL, "--target", "local", "--server", dead, "--registry", str(registry))
    assert rc == exitcodes.NOT_FOUND and "no rollout" in one_error_line(err), err


def test_a_wrong_admin_token_is_refused_without_echoing_it(server, registry):
    wrong = "not-the-right-token-0123456789"
    rc, doc, err = run_cli("rollout", "canary", MODEL, "--to", "2", *target_args(server, registry), "--no-analysis",
                           token=wrong)
    assert rc == exitcodes.INFRASTRUCTURE, err
    line = one_error_line(err)
    assert "refused GET /v2/mlserve/split/churn (403)" in line, line
    assert "MLSERVE_ADMIN_TOKEN" in err  # the hint says what to set
    assert wrong not in err and wrong not in str(doc) and TOKEN not in err
    assert variants(server) == {"stable": (100.0, "1")} and lease(registry) is None


def test_no_admin_token_is_a_usage_error(server, registry):
    rc, _, err = run_cli("rollout", "canary", MODEL, "--to", "2", *target_args(server, registry), "--no-analysis",
                         token=None)
    assert rc == exitcodes.USAGE, err
    assert "needs its token" in one_error_line(err)
    assert lease(registry) is None


def test_a_server_without_the_model_or_without_a_stable_variant(tmp_path, registry):
    import json

    from mlserve.registry import Registry
    from rollout.local.local_support import lookup_model

    split_file = tmp_path / "split.json"
    split_file.write_text(json.dumps({"model": MODEL, "variants": [{"name": "blue", "ref": f"{MODEL}@production",
                                                                     "weight": 100}]}))
    with start_server(tmp_path, registry, "--split", str(split_file)) as srv:
        rc, _, err = run_cli("rollout", "canary", MODEL, "--to", "2", *target_args(srv, registry), "--no-analysis")
        assert rc == exitcodes.USAGE and "has no 'stable' variant (it has blue)" in one_error_line(err), err
        Registry(registry).register("third", lookup_model(tmp_path / "t" / "m.onnx"), version="1")
        rc, _, err = run_cli("rollout", "canary", "third", "--to", "1", *target_args(srv, registry), "--no-analysis")
        assert rc == exitcodes.NOT_FOUND and "does not serve model 'third'" in one_error_line(err), err
    assert production(registry) == "1" and lease(registry) is None


def test_a_third_variant_with_traffic_is_refused(server, registry):
    status, _, _ = server.admin("POST", f"/v2/mlserve/split/{MODEL}", {"refs": {"treatment": "churn:2"},
                                                                      "weights": {"treatment": 10}})
    assert status == 200
    rc, _, err = run_cli("rollout", "canary", MODEL, "--to", "2", *target_args(server, registry), "--no-analysis")
    assert rc == exitcodes.USAGE and "also sends traffic to treatment" in one_error_line(err), err
    assert variants(server) == {"stable": (100.0, "1"), "treatment": (10.0, "2")}


def test_plan_shows_the_admin_requests_and_changes_nothing(server, registry):
    rc, doc, err = run_cli("rollout", "plan", MODEL, "--to", "2", *target_args(server, registry), "--steps", "20,100",
                           "--no-analysis")
    assert rc == exitcodes.OK, err
    notes = [c["note"] for c in doc["result"]["changes"]]
    assert any(n.startswith('POST /v2/mlserve/split/churn {"refs": {"canary": "churn:2"}') for n in notes), notes
    assert any('{"weights": {"canary": 20, "stable": 80}}' in n for n in notes), notes
    assert any("promote churn 2 to production (if it still holds 1)" in n for n in notes), notes
    assert variants(server) == {"stable": (100.0, "1")} and lease(registry) is None


def test_a_canary_variant_that_already_takes_traffic_is_refused_not_taken_over(server, registry):
    """Someone's canary at 30%: a rollout that took it over could not give it back on a revert."""
    status, _, _ = server.admin("POST", f"/v2/mlserve/split/{MODEL}", {"refs": {"canary": "churn:3"},
                                                                      "weights": {"canary": 30}})
    assert status == 200
    before = variants(server)
    rc, _, err = run_cli("rollout", "canary", MODEL, "--to", "2", *target_args(server, registry), "--no-analysis")
    assert rc == exitcodes.USAGE, err
    assert "already sends 30% to a 'canary' variant (churn:3)" in one_error_line(err), err
    assert variants(server) == before and lease(registry) is None and production(registry) == "1"


def test_a_pinned_stable_serving_another_version_than_production_is_refused(tmp_path, registry):
    """The rollout compares with, reverts to and promotes over production's version: a stable variant pinned to
    another one would make it say "1 -> 1" and wait for a version the server was never asked to serve."""
    with start_server(tmp_path, registry, f"{MODEL}:2") as srv:
        rc, _, err = run_cli("rollout", "canary", MODEL, "--to", "3", *target_args(srv, registry), "--no-analysis")
        assert rc == exitcodes.USAGE, err
        line = one_error_line(err)
        assert "pinned to churn:2 and serves 2, but churn@production is 1" in line, line
        assert variants(srv) == {"stable": (100.0, "2")} and lease(registry) is None and production(registry) == "1"


def test_a_judge_that_cannot_read_the_metrics_changes_nothing(server, registry, analysis):
    """A wrong --server with the right --admin-url: the judge's first scrape fails before any weight moves."""
    dead = f"http://127.0.0.1:{free_port()}"
    rc, _, err = run_cli("rollout", "canary", MODEL, "--to", "2", "--target", "local", "--server", dead,
                         "--admin-url", server.admin_url, "--registry", str(registry), "--analysis", str(analysis),
                         "--steps", "20,100")
    assert rc == exitcodes.INFRASTRUCTURE, err
    assert f"cannot scrape {dead}/metrics for the judge" in one_error_line(err), err
    assert variants(server) == {"stable": (100.0, "1")} and lease(registry) is None and production(registry) == "1"
