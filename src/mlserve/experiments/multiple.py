"""Holm's step-down correction: the family-wise error rate over several comparisons stays at alpha.

Sort the m p-values ascending; the i-th smallest (from 1) is multiplied by ``m - i + 1``, then the
adjusted values are made non-decreasing in that order and capped at 1. A comparison is significant
when its adjusted p-value is at most alpha. Holm rejects everything Bonferroni rejects, and more.
"""

from __future__ import annotations

from typing import Sequence


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values, in the order given."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted
