"""Dense displacement fields applied with Kornia.

A flow ``[N, 2, H, W]`` holds ``(dy, dx)`` in pixels; warping samples the
moving image at ``x + flow(x)`` (backward warping), so
``warp(moving, flow) ~ fixed`` when the flow registers moving to fixed.
Pixel maps go to Kornia with ``align_corners=True`` (with the default, even an
identity map resamples the image).
"""

from __future__ import annotations

import torch
from kornia.geometry.transform import remap
from kornia.geometry import create_meshgrid


def warp(image: torch.Tensor, flow: torch.Tensor, mode: str = "bilinear", padding_mode: str = "border") -> torch.Tensor:
    """Sample ``image`` ``[N, C, H, W]`` at the grid displaced by ``flow`` ``[N, 2, H, W]``.

    Use ``mode="bilinear"`` for textures and ``mode="nearest"`` for labels.

    Example:
        >>> img = torch.zeros(1, 1, 5, 5); img[0, 0, 2, 3] = 1
        >>> shift = torch.zeros(1, 2, 5, 5); shift[:, 1] = 1   # sample one pixel to the right
        >>> warp(img, shift)[0, 0, 2, 2].item()
        1.0
    """
    if image.ndim != 4 or flow.ndim != 4 or flow.shape[1] != 2 or image.shape[-2:] != flow.shape[-2:]:
        raise ValueError(f"warp needs image [N, C, H, W] and flow [N, 2, H, W] of one size; "
                         f"got {list(image.shape)} and {list(flow.shape)}")
    h, w = image.shape[-2:]
    grid = create_meshgrid(h, w, normalized_coordinates=False, device=flow.device, dtype=flow.dtype)
    map_x = grid[..., 0] + flow[:, 1]
    map_y = grid[..., 1] + flow[:, 0]
    return remap(image.to(flow.dtype), map_x, map_y, mode=mode, padding_mode=padding_mode, align_corners=True)


def integrate_velocity(velocity: torch.Tensor, steps: int = 7) -> torch.Tensor:
    """Scaling and squaring: the displacement of the flow of a stationary velocity field (diffeomorphic)."""
    disp = velocity / (2**steps)
    for _ in range(steps):
        disp = disp + warp(disp, disp)
    return disp


def smoothness(flow: torch.Tensor) -> torch.Tensor:
    """Mean squared spatial gradient of a flow (VoxelMorph's 'grad-l2' regulariser)."""
    dy = flow[:, :, 1:, :] - flow[:, :, :-1, :]
    dx = flow[:, :, :, 1:] - flow[:, :, :, :-1]
    return 0.5 * ((dy**2).mean() + (dx**2).mean())
