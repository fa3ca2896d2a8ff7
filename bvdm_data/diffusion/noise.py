"""Counter-based Gaussian noise: every image's noise is a pure function of its key and the step.

Sampling draws fresh noise for every cell at every denoising step. With one
``torch.Generator`` per clip, the noise of a cell depends on the order in
which its clip draws, so the work cannot be regrouped (all first appearances
of a batch in one pass, chunks by a memory cap) without changing the pixels,
and a CPU generator costs a host round trip per step on a GPU. Here the noise
of image ``i`` at counter ``c`` is a hash of ``(keys[i], c, pixel)``, computed
with integer tensor ops on the keys' device and turned into normals by
Box-Muller: the same numbers whatever the batch, the chunking or the order,
and the same integers on CPU and CUDA (the normals agree to float rounding).

The hash is Chris Wellons' ``lowbias32`` on 32-bit lanes held in int64, with
the multiplications split into 16-bit halves so that nothing overflows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

MASK32 = 0xFFFFFFFF
GOLDEN = 0x9E3779B9


def _mul32(x: torch.Tensor, c: int) -> torch.Tensor:
    """``x * c mod 2**32`` for ``x`` in ``[0, 2**32)`` without leaving int64's range."""
    lo, hi = c & 0xFFFF, c >> 16
    return (x * lo + (((x * hi) & 0xFFFF) << 16)) & MASK32


def mix32(x: torch.Tensor) -> torch.Tensor:
    """The ``lowbias32`` integer hash of 32-bit values stored in an int64 tensor.

    Example:
        >>> mix32(torch.tensor([0, 1, 2])).tolist()
        [0, 1753845952, 3507691905]
    """
    x = x & MASK32
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def _mix32_int(x: int) -> int:
    """:func:`mix32` on one Python int (keys are derived per cell on the host, thousands per batch)."""
    x &= MASK32
    x ^= x >> 16
    x = (x * 0x7FEB352D) & MASK32
    x ^= x >> 15
    x = (x * 0x846CA68B) & MASK32
    return x ^ (x >> 16)


def derive_key(*parts: int) -> int:
    """One 32-bit key from integers (a clip's key, a purpose, a frame, a cell id), order-sensitive.

    Example:
        >>> derive_key(1, 2) != derive_key(2, 1)
        True
    """
    key = 0x6A09E667
    for p in parts:
        key = _mix32_int(key ^ _mix32_int((int(p) & MASK32) + GOLDEN))
    return key


def keyed_uniform(keys: torch.Tensor, counter: int, count: int) -> torch.Tensor:
    """Uniform numbers in (0, 1) ``[N, count]`` (float32) on ``keys``' device, row ``i`` a pure function of
    ``keys[i]``, ``counter`` and the position; 24 random bits each, centred in their bin (never 0 or 1)."""
    keys = torch.as_tensor(keys, dtype=torch.int64)
    # Host-side ints only: a scalar tensor built on the device each step would be a blocking copy.
    base = mix32(keys ^ _mix32_int((counter * GOLDEN) & MASK32))
    offsets = (torch.arange(count, dtype=torch.int64, device=keys.device) * GOLDEN) & MASK32
    bits = mix32(base[:, None] + offsets[None])
    return ((bits >> 8).to(torch.float32) + 0.5) * (1.0 / (1 << 24))


def keyed_normal(keys: torch.Tensor, counter: int, shape: Sequence[int]) -> torch.Tensor:
    """Standard normal noise ``[N, *shape]`` (float32) on ``keys``' device; row ``i`` depends only on
    ``keys[i]``, ``counter`` and ``shape``.

    Example:
        >>> keys = torch.tensor([derive_key(7), derive_key(8)])
        >>> both = keyed_normal(keys, 3, (4, 4))
        >>> torch.equal(both[1:], keyed_normal(keys[1:], 3, (4, 4)))
        True
    """
    keys = torch.as_tensor(keys, dtype=torch.int64)
    n = math.prod(shape)
    pairs = (n + 1) // 2
    u = keyed_uniform(keys, counter, 2 * pairs)  # Box-Muller: u is never 0, so the log is finite
    radius = torch.sqrt(-2.0 * torch.log(u[:, :pairs]))
    angle = (2 * math.pi) * u[:, pairs:]
    normal = torch.cat([radius * torch.cos(angle), radius * torch.sin(angle)], 1)[:, :n]
    return normal.reshape(len(keys), *shape)


POISSON_EXACT_BELOW = 12.0  # mean counts; above it the normal approximation is used (skew under 0.3)


def poisson_from_uniform(u: torch.Tensor, rate: torch.Tensor) -> torch.Tensor:
    """Poisson counts (float) of mean ``rate`` by inverting the CDF at ``u`` (same shape): a keyed draw.

    Exact below :data:`POISSON_EXACT_BELOW`, where dark backgrounds live (GOWT1: 0.4 photons per pixel);
    the normal approximation above it, rounded and kept >= 0.

    Example:
        >>> u = keyed_uniform(torch.tensor([derive_key(1)]), 0, 100_000)
        >>> round(float(poisson_from_uniform(u, torch.full_like(u, 0.5)).mean()), 2)
        0.5
    """
    rate = rate.clamp_min(0)
    count = torch.zeros_like(u)
    term = torch.exp(-rate.clamp_max(POISSON_EXACT_BELOW))
    cdf = term.clone()
    for k in range(1, int(4 * POISSON_EXACT_BELOW)):
        count += (u > cdf).to(count.dtype)
        term = term * rate / k
        cdf = cdf + term
    z = math.sqrt(2.0) * torch.erfinv((2 * u - 1).clamp(-1 + 1e-7, 1 - 1e-7))
    normal = (rate + rate.sqrt() * z).round().clamp_min(0)
    return torch.where(rate < POISSON_EXACT_BELOW, count, normal)
