"""The split itself (mlserve.serve.split), without a server: sticky assignment, monotone buckets, weights,
and the split document. The server tests (test_split_serve.py) check the same things through real processes."""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys

import pytest

from mlserve.serve import split as sp
from mlserve.serve.split import Router, SplitError, assign, parse_split, parse_update

KEYS = [f"user-{i}" for i in range(20_000)]


def _assign_all(weights: dict[str, float], salt: str = "exp", keys: list[str] = KEYS) -> list[str]:
    router = Router(list(weights), list(weights.values()), salt)
    return [router.names[router.by_key(k)] for k in keys]


# ---------------------------------------------------------------------------------------------- stability


def test_pinned_assignments_never_change() -> None:
    """Golden values: a change to the hash, the salt's place or the score would move every user; this fails then."""
    weights = {"stable": 90.0, "canary": 10.0}
    got = [assign(f"user-{i}", weights, "churn") for i in range(16)]
    assert got == GOLDEN_CHURN, got
    assert sp._unit(b"churn\ncanary\n", b"user-1") == 7029992178482694  # the first 53 bits of the SHA-256


GOLDEN_CHURN = ['stable'] * 14 + ['canary', 'stable']


def test_it_is_the_documented_function() -> None:
    """A second implementation, from the words of docs/serve.md only, gives every key the same variant."""
    import hashlib

    def documented(key: str, weights: dict[str, float], salt: str) -> str:
        best, best_score = "", -1.0
        for name, w in weights.items():
            if w <= 0:
                continue
            digest = hashlib.sha256(f"{salt}\n{name}\n{key}".encode()).digest()
            u = ((int.from_bytes(digest[:8], "big") >> 11) + 0.5) / 2 ** 53
            score = w / -math.log(u)
            if score > best_score:
                best, best_score = name, score
        return best

    weights = {"control": 45, "a": 45, "b": 10}
    assert _assign_all(weights) == [documented(k, weights, "exp") for k in KEYS]


def test_the_same_in_another_process_with_another_hash_seed() -> None:
    code = ("import json, sys; from mlserve.serve.split import assign; "
            "print(json.dumps([assign(f'user-{i}', {'stable': 80, 'canary': 15, 'b': 5}, 'exp') for i in range(2000)]))")
    outs = []
    for seed in ("0", "12345"):
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                              env={"PYTHONHASHSEED": seed, "PATH": "/usr/bin:/bin"})
        assert proc.returncode == 0, proc.stderr
        outs.append(json.loads(proc.stdout))
    here = _assign_all({"stable": 80, "canary": 15, "b": 5}, keys=KEYS[:2000])
    assert outs[0] == outs[1] == here


def test_the_salt_reshuffles_and_shares_follow_the_weights() -> None:
    a = _assign_all({"stable": 90, "canary": 10}, salt="one")
    b = _assign_all({"stable": 90, "canary": 10}, salt="two")
    n = len(KEYS)
    for got in (a, b):  # 10% +- 5 standard deviations of a binomial (deterministic: fixed keys)
        assert abs(got.count("canary") - 0.1 * n) < 5 * math.sqrt(n * 0.1 * 0.9)
    both = sum(x == y == "canary" for x, y in zip(a, b))
    assert abs(both - 0.01 * n) < 5 * math.sqrt(n * 0.01 * 0.99)  # independent salts: 10% of 10%


def test_three_variants_get_their_shares() -> None:
    got = _assign_all({"control": 50, "a": 30, "b": 20})
    n = len(KEYS)
    for name, share in (("control", 0.5), ("a", 0.3), ("b", 0.2)):
        assert abs(got.count(name) - share * n) < 5 * math.sqrt(n * share * (1 - share)), name


# ---------------------------------------------------------------------------------------------- monotone buckets


def test_raising_the_canary_moves_keys_only_into_it() -> None:
    previous = None
    for pct in (0.5, 1, 5, 10, 20, 25, 50, 75, 99, 100):
        weights = {"stable": 100 - pct, "canary": pct}
        current = _assign_all(weights) if pct < 100 else ["canary"] * len(KEYS)
        if pct == 100:
            assert _assign_all({"stable": 0, "canary": 100}) == current
        if previous is not None:
            moved = [(p, c) for p, c in zip(previous, current) if p != c]
            assert moved and all(p == "stable" and c == "canary" for p, c in moved), set(moved)
        previous = current


def test_lowering_the_canary_moves_keys_only_out_of_it() -> None:
    up = _assign_all({"stable": 80, "canary": 20})
    down = _assign_all({"stable": 90, "canary": 10})
    assert all(d == "stable" for u, d in zip(up, down) if u != d)


def test_monotone_over_random_weight_changes_of_many_variants() -> None:
    rng = random.Random(5)
    names = ["control", "a", "b", "c"]
    keys = KEYS[:4000]
    for _ in range(40):
        weights = {n: rng.choice([0, 1, 2.5, 5, 10, 30, 60]) for n in names}
        if not any(weights.values()):
            weights["control"] = 1
        before = _assign_all(weights, keys=keys)
        changed = rng.choice(names)
        raised = {**weights, changed: weights[changed] + rng.choice([0.1, 1, 7, 40])}
        after = _assign_all(raised, keys=keys)
        assert all(y == changed for x, y in zip(before, after) if x != y), (weights, changed)  # only into it
        if weights[changed] > 0 and sum(weights.values()) > weights[changed]:
            lowered = {**weights, changed: weights[changed] / 3}
            after = _assign_all(lowered, keys=keys)
            assert all(x == changed for x, y in zip(before, after) if x != y), (weights, changed)  # only out of it


def test_a_ramp_against_stable_with_a_third_variant_never_sends_keys_to_stable() -> None:
    """canary up, stable down, b unchanged: keys go into the canary or leave stable; none goes to stable."""
    before = _assign_all({"stable": 80, "canary": 10, "b": 10})
    after = _assign_all({"stable": 70, "canary": 20, "b": 10})
    moves = {(x, y) for x, y in zip(before, after) if x != y}
    assert moves <= {("stable", "canary"), ("b", "canary"), ("stable", "b")} and ("stable", "canary") in moves
    assert all(y == "canary" for x, y in zip(before, after) if x == "canary")


def test_adding_a_variant_only_takes_keys_and_removing_one_only_gives_back_its_own() -> None:
    two = _assign_all({"stable": 90, "canary": 10})
    three = _assign_all({"stable": 90, "canary": 10, "b": 10})
    assert all(t == "b" for o, t in zip(two, three) if o != t)
    assert all(o == t for o, t in zip(two, three) if t != "b")  # removing b again: only b's keys move


def test_zero_weight_gets_nothing_and_one_variant_takes_everything() -> None:
    r = Router(["stable", "canary"], [100, 0], "x")
    assert r.only == 0 and {r.by_key(k) for k in KEYS[:500]} == {0} and r.by_weight() == 0
    r = Router(["a", "b", "c"], [0, 5, 0], "x")
    assert r.only == 1 and r.by_key("anyone") == 1


# ---------------------------------------------------------------------------------------------- exact ties


def test_near_ties_are_decided_exactly_and_exact_ties_by_order() -> None:
    n = 2 ** 52  # u = (n + 0.5) / 2**53: about 0.5
    assert sp.pick([1.0, 1.0], [(0, n), (1, n)]) == 0  # an exact tie: the first variant
    assert sp.pick([1.0, 1.0], [(1, n), (0, n)]) == 0
    # one unit apart: the float scores differ by far less than 1e-9, the exact ones still order them
    assert sp.pick([1.0, 1.0], [(0, n), (1, n + 1)]) == 1
    assert sp.pick([1.0, 1.0], [(0, n + 1), (1, n)]) == 0
    assert sp._exact_score(1.0, n + 1) > sp._exact_score(1.0, n)


def test_exact_scores_agree_with_the_float_ones() -> None:
    rng = random.Random(3)
    for _ in range(2000):
        w = rng.choice([0.5, 1, 10, 90, 1e-3, 1e6])
        n = rng.randrange(2 ** 53)
        f = w / -math.log(sp._uniform(n))
        assert math.isclose(float(sp._exact_score(w, n)), f, rel_tol=1e-12)


# ---------------------------------------------------------------------------------------------- by weight


def test_by_weight_follows_the_weights_and_never_picks_zero() -> None:
    r = Router(["a", "zero", "b", "tail"], [30, 0, 70, 0], "x")
    assert r.by_weight(0.0) == 0 and r.by_weight(0.2999) == 0 and r.by_weight(0.3) == 2
    assert r.by_weight(0.9999999999) == 2 and r.by_weight(1.0) == 2  # a draw rounded up to the total
    counts = [0] * 4
    rng = random.Random(1)
    for _ in range(20_000):
        counts[r.by_weight(rng.random())] += 1
    assert counts[1] == counts[3] == 0
    assert abs(counts[0] - 6000) < 5 * math.sqrt(20_000 * 0.3 * 0.7)


# ---------------------------------------------------------------------------------------------- documents


def test_split_document_round_trip_and_defaults() -> None:
    doc = {"v": 1, "model": "churn", "experiment": "exp-1", "sticky": {"header": "X-User-Id"},
           "variants": [{"name": "stable", "ref": "churn@production", "weight": 90},
                        {"name": "canary", "ref": "churn@staging", "weight": 10, "share": 0.1, "version": "3"}],
           "revision": 4}
    spec = parse_split(doc)
    assert [(v.name, v.ref, v.weight) for v in spec.variants] == [("stable", "churn@production", 90.0),
                                                                   ("canary", "churn@staging", 10.0)]
    assert spec.experiment_for("churn") == "exp-1" == spec.salt_for("churn")
    assert spec.sticky == sp.Sticky(header="X-User-Id") and spec.sticky.header_key == b"x-user-id"
    bare = parse_split({"variants": [{"name": "a", "ref": "m:1", "weight": 1}]})
    assert bare.experiment_for("m") == "m" == bare.salt_for("m") and bare.sticky is None


@pytest.mark.parametrize("doc, words", [
    ([], "is a JSON object"),
    ({"v": 2, "variants": []}, "version 2"),
    ({"variants": []}, "non-empty list"),
    ({"variants": [{"name": "a", "ref": "m:1", "weight": 1}], "colour": 1}, "unknown field(s) colour"),
    ({"variants": [{"name": "a b", "ref": "m:1", "weight": 1}]}, "variants[0].name"),
    ({"variants": [{"name": "a", "weight": 1}]}, "variants[0] (a).ref"),
    ({"variants": [{"name": "a", "ref": "m:1"}]}, "variants[0] (a) has no weight"),
    ({"variants": [{"name": "a", "ref": "m:1", "weight": -1}]}, "finite number >= 0"),
    ({"variants": [{"name": "a", "ref": "m:1", "weight": "10"}]}, "must be a number"),
    ({"variants": [{"name": "a", "ref": "m:1", "weight": True}]}, "must be a number"),
    ({"variants": [{"name": "a", "ref": "m:1", "weight": 0}]}, "weight above 0"),
    ({"variants": [{"name": "a", "ref": "m:1", "weight": 1}, {"name": "a", "ref": "m:2", "weight": 1}]}, "twice"),
    ({"variants": [{"name": "a", "ref": "m:1", "weight": 1, "wieght": 2}]}, "unknown field(s) wieght"),
    ({"variants": [{"name": "a", "ref": "m:1", "weight": 1}], "sticky": {"header": "X User"}}, "not an HTTP header"),
    ({"variants": [{"name": "a", "ref": "m:1", "weight": 1}], "sticky": {}}, "header or a parameter"),
    ({"variants": [{"name": "a", "ref": "m:1", "weight": 1}], "experiment": "two\nlines"}, "one line"),
])
def test_bad_split_documents_name_the_field(doc, words: str) -> None:  # noqa: ANN001
    with pytest.raises(SplitError) as err:
        parse_split(doc)
    assert words in str(err.value)


def test_updates_change_only_what_they_name() -> None:
    current = (sp.VariantSpec("stable", "m@production", 90), sp.VariantSpec("canary", "m@staging", 10))
    out = sp.apply_update(current, parse_update({"weights": {"canary": 20, "stable": 80}}))
    assert [(v.name, v.ref, v.weight) for v in out] == [("stable", "m@production", 80), ("canary", "m@staging", 20)]
    out = sp.apply_update(current, parse_update({"refs": {"canary": "m:3"}}))
    assert [(v.name, v.ref, v.weight) for v in out] == [("stable", "m@production", 90), ("canary", "m:3", 10)]
    out = sp.apply_update(current, parse_update({"refs": {"b": "m:4"}, "weights": {"b": 5}}))
    assert [v.name for v in out] == ["stable", "canary", "b"] and out[2].weight == 5
    with pytest.raises(SplitError, match="not in the split"):
        sp.apply_update(current, parse_update({"weights": {"nope": 5}}))
    with pytest.raises(SplitError, match="weight above 0"):
        sp.apply_update(current, parse_update({"weights": {"stable": 0, "canary": 0}}))
    with pytest.raises(SplitError, match="needs weights or refs"):
        parse_update({})


def test_canary_split_from_the_command_line() -> None:
    spec = sp.canary_split("m@production", "m@staging", 10, None, None)
    assert [(v.name, v.weight) for v in spec.variants] == [("stable", 90.0), ("canary", 10.0)]
    assert [v.name for v in sp.canary_split("m@production", None, 10, None, None).variants] == ["stable"]
    with pytest.raises(SplitError, match="0 to 100"):
        sp.canary_split("m", "m@staging", 101, None, None)


def test_sticky_keys_are_strings_or_integers() -> None:
    from mlserve.serve.errors import BadRequest

    assert sp.normalize_key("u-1", "k") == "u-1" and sp.normalize_key(42, "k") == "42"
    assert sp.normalize_key("", "k") is None
    for bad in (True, 1.5, None, {"a": 1}, "x" * 1025):
        with pytest.raises(BadRequest):
            sp.normalize_key(bad, "k")
