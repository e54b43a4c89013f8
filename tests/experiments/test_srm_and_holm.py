"""The sample-ratio check against scipy's chi-square test, and Holm's correction against statsmodels."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests

from mlserve.experiments.multiple import holm
from mlserve.experiments.srm import sample_ratio_check


@pytest.mark.parametrize("counts, planned", [
    ({"control": 5000, "treatment": 5000}, {"control": 1, "treatment": 1}),
    ({"control": 5210, "treatment": 4790}, {"control": 50, "treatment": 50}),
    ({"a": 900, "b": 95, "c": 5}, {"a": 90, "b": 9, "c": 1}),
    ({"control": 8000, "treatment": 2300}, {"control": 80, "treatment": 20}),
])
def test_sample_ratio_check_matches_scipy(counts: dict, planned: dict) -> None:
    result = sample_ratio_check(counts, planned)
    total = sum(counts.values())
    weights = np.array(list(planned.values()), float)
    ref = stats.chisquare(list(counts.values()), f_exp=total * weights / weights.sum())
    assert result.chi2 == pytest.approx(ref.statistic, rel=1e-12)
    assert result.p_value == pytest.approx(ref.pvalue, rel=1e-9)
    assert result.df == len(counts) - 1
    assert result.passed == (ref.pvalue >= 0.001)


def test_a_broken_split_fails_and_a_sound_one_passes() -> None:
    assert not sample_ratio_check({"control": 5210, "treatment": 4790}, {"control": 1, "treatment": 1}).passed
    assert sample_ratio_check({"control": 5040, "treatment": 4960}, {"control": 1, "treatment": 1}).passed
    assert not sample_ratio_check({"control": 5000, "treatment": 5000}, {"control": 2, "treatment": 1}).passed


def test_sample_ratio_false_alarms_stay_at_the_threshold() -> None:
    """Seeded: a sound 50/50 split of 10,000 units fails the check in about 0.1% of experiments."""
    rng = np.random.default_rng(3)
    treated = rng.binomial(10_000, 0.5, 20_000)
    fails = sum(not sample_ratio_check({"c": int(10_000 - t), "t": int(t)}, {"c": 1, "t": 1}).passed for t in treated)
    assert fails / 20_000 <= 0.002


@pytest.mark.parametrize("seed", range(5))
def test_holm_matches_statsmodels(seed: int) -> None:
    rng = np.random.default_rng(seed)
    p = np.concatenate([rng.uniform(0, 0.05, 3), rng.uniform(0, 1, 5)])
    rng.shuffle(p)
    reject, corrected, _, _ = multipletests(p, alpha=0.05, method="holm")
    ours = holm(list(p))
    assert ours == pytest.approx(list(corrected), rel=1e-12)
    assert [q <= 0.05 for q in ours] == list(reject)


def test_holm_with_ties_and_ones() -> None:
    p = [0.01, 0.01, 0.04, 1.0]
    assert holm(p) == pytest.approx(list(multipletests(p, method="holm")[1]))
