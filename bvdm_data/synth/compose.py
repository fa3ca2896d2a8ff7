"""Pasting painted cell crops onto a frame's background (soft alpha, overlapping halos averaged)."""

from __future__ import annotations

import torch


def compose(background: torch.Tensor, textures: torch.Tensor, alpha: torch.Tensor, corners: torch.Tensor,
            frame_index: torch.Tensor | None = None) -> torch.Tensor:
    """Paste crops onto frames, all at once.

    ``background`` ``[K, H, W]`` (K frames, e.g. one per clip); ``textures``
    and ``alpha`` ``[N, 1, S, S]``; ``corners`` ``[N, 2]`` top-left (y, x) of
    each crop in its frame (may lie partly outside); ``frame_index`` ``[N]``
    which frame each crop goes to (default: all to frame 0). Where halos
    overlap, textures are averaged by alpha. Returns ``[K, H, W]``.

    Example:
        >>> bg = torch.zeros(2, 4, 4); tex = torch.ones(1, 1, 2, 2)
        >>> out = compose(bg, tex, torch.ones(1, 1, 2, 2), torch.tensor([[1, 1]]), torch.tensor([1]))
        >>> float(out[0].sum()), float(out[1].sum())
        (0.0, 4.0)
    """
    k, h, w = background.shape
    n, _, s, _ = textures.shape
    if n == 0:
        return background
    frame_index = torch.zeros(n, dtype=torch.long, device=textures.device) if frame_index is None else frame_index
    offsets = torch.arange(s, device=textures.device)
    ys = (corners[:, 0, None, None] + offsets[None, :, None]).expand(n, s, s)
    xs = (corners[:, 1, None, None] + offsets[None, None, :]).expand(n, s, s)
    inside = (ys >= 0) & (ys < h) & (xs >= 0) & (xs < w)
    index = (frame_index.view(n, 1, 1) * (h * w) + ys * w + xs)[inside]
    a = alpha[:, 0][inside]
    weight = torch.zeros(k * h * w, device=textures.device, dtype=textures.dtype).index_add_(0, index, a)
    paint = torch.zeros(k * h * w, device=textures.device, dtype=textures.dtype).index_add_(
        0, index, a * textures[:, 0][inside])
    bg = background.reshape(-1)
    out = torch.where(weight > 1, paint / weight.clamp_min(1e-6), paint + (1 - weight) * bg)
    return out.view(k, h, w)
