"""Robust spread: statistics of real data that outliers (missed cells, tracking jumps) must not move."""

from __future__ import annotations

import numpy as np
from scipy import stats


def robust_std(values: np.ndarray) -> float:
    """Standard deviation of the Gaussian core, from the median absolute deviation.

    Deviations are taken from the median of each column (axis 0), then pooled.

    Example:
        >>> round(robust_std(np.array([0.0, 1.0, -1.0, 100.0])), 3)
        1.483
    """
    deviations = np.asarray(values) - np.median(values, axis=0)
    return float(stats.median_abs_deviation(deviations, axis=None, center=lambda x, axis=None: 0.0, scale="normal"))
