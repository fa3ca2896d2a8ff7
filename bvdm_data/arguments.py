"""Checks of user-facing arguments, shared by the Python API and the command line.

Each check raises :class:`~bvdm_data.errors.ArgumentError` (a ``ValueError``)
naming the argument and the broken rule, at construction time rather than
deep inside the first clip. Integers are not silently rounded: ``2.5`` is
refused, ``3.0`` accepted.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import torch

from bvdm_data.errors import ArgumentError


def as_int(name: str, value: Any, minimum: int | None = None) -> int:
    """``value`` as an int (integral numbers only), at least ``minimum``.

    Example:
        >>> as_int("clip_len", 8.0, minimum=1)
        8
        >>> as_int("clip_len", 2.5)
        Traceback (most recent call last):
        ...
        bvdm_data.errors.ArgumentError: clip_len must be an integer, got 2.5
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not float(value).is_integer():
        raise ArgumentError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ArgumentError(f"{name} must be at least {minimum}, got {value}")
    return value


def as_size(value: Any, name: str = "size") -> tuple[int, int]:
    """``(H, W)`` from a pair of positive integers or one integer (a square).

    Example:
        >>> as_size(64), as_size((64, 96))
        ((64, 64), (64, 96))
    """
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        value = (value, value)
    try:
        pair = tuple(value)
    except TypeError:
        raise ArgumentError(f"{name} must be an int or (H, W), got {value!r}") from None
    if len(pair) != 2:
        raise ArgumentError(f"{name} must be an int or (H, W), got {value!r}")
    return as_int(f"{name} H", pair[0], 1), as_int(f"{name} W", pair[1], 1)


def as_density(value: Any) -> float | None:
    """A finite, non-negative density in cells per px², or ``None`` (the fitted one)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 0:
        raise ArgumentError(f"density must be a finite, non-negative number of cells per px^2, got {value!r}")
    return float(value)


def as_range(value: Any, name: str, what: str) -> tuple[float, float] | None:
    """A range ``(lo, hi)`` of positive factors (``what``: "gains", ...) with ``0 < lo <= hi``, as floats, or
    ``None``; an error names the argument ``name``.

    Example:
        >>> as_range([0.8, 1.25], "magnification", "magnifications"), as_range(None, "contrast", "gains")
        ((0.8, 1.25), None)
    """
    if value is None:
        return None
    try:
        if isinstance(value, (str, bytes)):  # "12" is not the range 1..2
            raise TypeError
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ArgumentError(f"{name} must be None or two numbers (lo, hi), got {value!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and 0 < lo <= hi):
        raise ArgumentError(f"{name} must be a range of {what} with 0 < lo <= hi, got ({lo}, {hi})")
    return lo, hi


def as_contrast(value: Any) -> tuple[float, float] | None:
    """A contrast range ``(lo, hi)`` of gains with ``0 < lo <= hi``, as floats, or ``None`` (no gain drawn).

    Example:
        >>> as_contrast([0.5, 2]), as_contrast(None)
        ((0.5, 2.0), None)
    """
    return as_range(value, "contrast", "gains")


def check_density_fits(density: float, median_area: float, max_cover: float = 0.9) -> None:
    """Refuse a density whose cells (of ``median_area`` px) would cover more than ``max_cover`` of the field."""
    if density * median_area > max_cover:
        raise ArgumentError(
            f"density {density:g} cells/px^2 does not fit: cells of median area {median_area:.0f} px would cover "
            f"{density * median_area:.0%} of the field; at most {max_cover / median_area:.2g} cells/px^2")


def as_device(device: str | torch.device) -> torch.device:
    """A torch device that exists here, or a one-line reason.

    Example:
        >>> as_device("cpu")
        device(type='cpu')
    """
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ArgumentError(f"device {device!r} is not a torch device ({err})") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ArgumentError(f"device {str(device)!r}: no CUDA device is available here "
                                "(torch.cuda.is_available() is False); use 'cpu'")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ArgumentError(f"device {str(device)!r}: only {torch.cuda.device_count()} CUDA device(s)")
    return device
