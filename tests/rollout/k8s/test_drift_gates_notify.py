"""Drift (someone else changes the split mid-step), webhook gates before each step, and the notification hook."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from mlserve import exitcodes
from mlserve.rollout.engine import Clock
from rollout.k8s.k8s_support import NS, STABLE_BACKENDS, ScriptedJudge, config, engine, lease_state, weights


class EditsDuringFirstPause(Clock):
    """Another client edits the route while the rollout pauses at its first step (deterministic: from the sleep)."""

    def __init__(self, cluster, ops, manager: str) -> None:
        self.cluster, self.ops, self.manager, self.done = cluster, ops, manager, False

    def sleep(self, seconds):
        if not self.done and weights(self.cluster.get("HTTPRoute", "iris", NS)).get("iris-canary") == 10 \
                and lease_state(self.cluster)["weight"] == 10:
            self.cluster.patch_as("HTTPRoute", "iris", NS, self.ops, manager=self.manager)
            self.done = True
        super().sleep(seconds)


WEIGHT_TO_ZERO = [{"op": "replace", "path": "/spec/rules/0/backendRefs/1/weight", "value": 0},
                  {"op": "replace", "path": "/spec/rules/0/backendRefs/0/weight", "value": 100}]
CANARY_REMOVED = [{"op": "remove", "path": "/spec/rules/0/backendRefs/1"},
                  {"op": "replace", "path": "/spec/rules/0/backendRefs/0/weight", "value": 1}]


@pytest.mark.parametrize("ops,manager,live", [(WEIGHT_TO_ZERO, "kubectl-edit", "0%"), (CANARY_REMOVED, "argocd-controller", "0%")])
def test_a_split_changed_by_someone_else_is_not_judged_and_says_who(seeded, store, registry, ops, manager, live):
    judge = ScriptedJudge()
    result = engine(store, registry, judge, clock=EditsDuringFirstPause(seeded, ops, manager)).run(config(pause=0.3))
    assert (result.outcome, result.exit_code) == ("aborted", exitcodes.ABORTED)
    assert judge.windows == []  # the step was never judged on traffic the canary did not get
    assert f"now sends {live} to iris-canary; the rollout set 10% (changed by {manager}" in result.message
    assert result.reverted
    assert seeded.get("HTTPRoute", "iris", NS)["spec"]["rules"][0]["backendRefs"] == STABLE_BACKENDS
    assert registry.resolve("iris@production").version == "1"


def test_on_drift_pause_leaves_the_split_as_the_operator_set_it(seeded, store, registry):
    result = engine(store, registry, ScriptedJudge(), clock=EditsDuringFirstPause(seeded, WEIGHT_TO_ZERO, "kubectl-edit")).run(
        config(pause=0.3, on_drift="pause"))
    assert (result.outcome, result.reverted) == ("paused", False)
    assert weights(seeded.get("HTTPRoute", "iris", NS)) == {"iris": 100, "iris-canary": 0}
    assert lease_state(seeded)["phase"] == "paused"


class Hooks:
    """A local HTTP server for gates and notifications: records every JSON POST; the gate says no ``refuse`` times."""

    def __init__(self, refuse: int = 0) -> None:
        self.calls: list[tuple[str, dict]] = []
        self.refuse = refuse
        hooks = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                hooks.calls.append((self.path, body))
                status = 200
                if self.path == "/gate" and hooks.refuse > 0:
                    hooks.refuse -= 1
                    status = 503
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def of(self, path: str) -> list[dict]:
        return [body for p, body in self.calls if p == path]


@pytest.fixture
def hooks():
    h = Hooks(refuse=2)
    yield h
    h.server.shutdown()


def test_a_gate_must_answer_2xx_before_each_step(seeded, store, registry, hooks):
    result = engine(store, registry, ScriptedJudge()).run(config(steps=[10, 100], gates=[hooks.url + "/gate"], gate_interval=0.05))
    assert result.outcome == "promoted", result.message
    gate = hooks.of("/gate")
    assert [(g["step"], g["weight"]) for g in gate] == [(1, 10), (1, 10), (1, 10), (2, 100)]  # refused twice, then yes
    assert all(g["event"] == "confirm-traffic-increase" and g["model"] == "iris" for g in gate)
    assert any("gate http" in e["message"] and "answered 503: waiting before step 1" in e["message"] for e in result.events)


def test_a_gate_that_never_says_yes_ends_at_the_deadline(seeded, store, registry, hooks):
    hooks.refuse = 10**6
    result = engine(store, registry, ScriptedJudge()).run(config(gates=[hooks.url + "/gate"], gate_interval=0.05, timeout=1.5))
    assert result.outcome == "aborted" and "deadline" in result.message
    assert [w for w in seeded.writes() if "httproutes" in w[1]] == []  # no traffic ever moved


def test_one_notification_per_state_change(seeded, store, registry, hooks):
    result = engine(store, registry, ScriptedJudge()).run(config(steps=[10, 100], notify=[hooks.url + "/notify"]))
    assert result.outcome == "promoted"
    notes = hooks.of("/notify")
    keys = [(n["phase"], n["step"], n["weight"], n["outcome"]) for n in notes]
    assert keys[0] == ("progressing", 0, 0, None) and notes[0]["event"] == "started"
    assert ("progressing", 1, 10, None) in keys and ("progressing", 2, 100, None) in keys
    assert keys[-1] == ("succeeded", 2, 0, "promoted")
    assert all(a != b for a, b in zip(keys, keys[1:]))  # one per change, no repeats from heartbeats


def test_a_notification_hook_that_fails_is_a_warning_only(seeded, store, registry):
    result = engine(store, registry, ScriptedJudge()).run(config(steps=[100], notify=["http://127.0.0.1:9/hook"]))
    assert result.outcome == "promoted" and result.exit_code == 0
    assert any(w.startswith("notification to http://127.0.0.1:9/hook failed") for w in result.warnings)
