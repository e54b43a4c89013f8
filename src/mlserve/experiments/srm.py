"""The sample-ratio-mismatch check: Pearson's chi-square goodness-of-fit of the assignment counts.

If the split was planned 50/50 and 10,000 units came in as 5,200 / 4,800, something between the
assignment and the data dropped or duplicated units differently in the variants (a redirect that
loses some users, a bot filter, a logging bug). The comparison of outcomes is then biased in a way
no test can correct, so a failed check blocks the verdict. The threshold is strict (p < 0.001 by
default, as GrowthBook and Optimizely use) because the check runs on every analysis.
"""

from __future__ import annotations

from mlserve._deps import require
from mlserve.experiments.models import SampleRatio

DEFAULT_THRESHOLD = 0.001


def sample_ratio_check(counts: dict[str, int], planned: dict[str, float], threshold: float = DEFAULT_THRESHOLD) -> SampleRatio:
    """Compare ``counts`` (units per variant) with the ``planned`` shares (any positive weights)."""
    total_weight = sum(planned.values())
    shares = {name: weight / total_weight for name, weight in planned.items()}
    n = sum(counts.values())
    expected = {name: n * share for name, share in shares.items()}
    chi2 = sum((counts.get(name, 0) - e) ** 2 / e for name, e in expected.items())
    df = len(shares) - 1
    p = float(require("scipy.stats", purpose="the sample-ratio check").chi2.sf(chi2, df))
    return SampleRatio(counts=dict(counts), planned=shares, expected=expected, chi2=chi2, df=df, p_value=p,
                       threshold=threshold, passed=p >= threshold)
