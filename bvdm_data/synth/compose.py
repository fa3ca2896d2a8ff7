"""Pasting painted cell crops onto a frame's background (soft alpha, overlapping halos averaged)."""

from __future__ import annotations

import torch


def compose(background: torch.Tensor, textures: torch.Tensor, alpha: torch.Tensor, corners: torch.Tensor) -> torch.Tensor:
    """Paste crops onto one frame, all at once.

    ``background`` ``[1, H, W]``; ``textures`` and ``alpha`` ``[N, 1, S, S]``;
    ``corners`` ``[N, 2]`` top-left (y, x) of each crop in the frame (may lie
    partly outside). Returns ``[1, H, W]``.
    """
    _, h, w = background.shape
    n, _, s, _ = textures.shape
    if n == 0:
        return background
    offsets = torch.arange(s, device=textures.device)
    ys = (corners[:, 0, None, None] + offsets[None, :, None]).expand(n, s, s)
    xs = (corners[:, 1, None, None] + offsets[None, None, :]).expand(n, s, s)
    inside = (ys >= 0) & (ys < h) & (xs >= 0) & (xs < w)
    index = (ys * w + xs)[inside]
    a = alpha[:, 0][inside]
    weight = torch.zeros(h * w, device=textures.device, dtype=textures.dtype).index_add_(0, index, a)
    paint = torch.zeros(h * w, device=textures.device, dtype=textures.dtype).index_add_(0, index, a * textures[:, 0][inside])
    bg = background.reshape(-1)
    out = torch.where(weight > 1, paint / weight.clamp_min(1e-6), paint + (1 - weight) * bg)
    return out.view(1, h, w)
