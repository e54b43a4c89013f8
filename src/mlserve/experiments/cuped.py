"""CUPED: variance reduction with a pre-period covariate (Deng, Xu, Kohavi and Walker, 2013).

Each unit's outcome ``y`` is replaced by ``y - theta * (x - mean(x))``, where ``x`` is the same
unit's value before the experiment (it cannot be affected by the treatment) and
``theta = cov(x, y) / var(x)`` is estimated once, pooled over every variant. Because ``x`` has the
same expected value in every variant, the adjusted means estimate the same difference as the raw
ones; their variance shrinks by the share of ``y``'s variance that ``x`` explains (``rho^2``).
The adjusted values are then compared like any continuous metric (Welch's t-test).
"""

from __future__ import annotations

import numpy as np


def theta(y: np.ndarray, x: np.ndarray) -> float:
    """``cov(x, y) / var(x)`` over all units; 0 when the covariate does not vary."""
    xc = x - x.mean()
    var = float(np.dot(xc, xc))
    if var == 0.0:
        return 0.0
    return float(np.dot(xc, y - y.mean()) / var)


def adjust(y: np.ndarray, x: np.ndarray, slope: float, centre: float) -> np.ndarray:
    """The CUPED-adjusted outcomes ``y - slope * (x - centre)``."""
    return y - slope * (x - centre)
