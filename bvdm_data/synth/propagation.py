"""Painting one frame's cells: first appearances by SDEdit, known cells carried along the flow.

Each function takes any set of cells at once (one network call per denoising
step); ``keys`` give each cell its own noise
(:mod:`bvdm_data.diffusion.noise`), so how cells are grouped into calls never
changes a pixel. Brightness is drawn beforehand from each clip's generator.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import kornia
import torch

from bvdm_data.diffusion.crops import sample_brightness
from bvdm_data.diffusion.edges import signed_distance
from bvdm_data.diffusion.noise import keyed_normal
from bvdm_data.diffusion.sample import Denoiser, calibrate_brightness, flat_cells, image_keys, refine, sdedit
from bvdm_data.flow.network import FlowNet
from bvdm_data.flow.warp import warp

DETAIL_SIGMA = 2.0  # px: what a texture adds is finer than this
DETAIL_DEPTH = 2    # rings inside the outline where added texture starts


def draw_brightness(statistics: dict, groups: Sequence[int], generators: Sequence[torch.Generator]) -> torch.Tensor:
    """One brightness per cell from the real law, group ``g`` drawn from ``generators[g]``."""
    return torch.cat([sample_brightness(statistics, n, g) for n, g in zip(groups, generators)])


def paint_flat(statistics: dict, masks: torch.Tensor, values: torch.Tensor,
               keys: Sequence[int] | torch.Tensor) -> torch.Tensor:
    """The CellCycleGAN/MitoGen-style baseline: each mask ``[N, S, S]`` at its brightness ``values``, with the
    measured edge (a 1-px blur where ``statistics`` has no profile), plus pixel noise keyed by ``keys``.
    """
    image = flat_cells(masks, values.to(masks.device), statistics["background_mean"],
                       edge_profile=statistics.get("edge_profile"), edge_shift=statistics.get("edge_shift", 0.0))
    noise = keyed_normal(image_keys(keys, len(masks), image.device), 0, tuple(image.shape[1:]))
    return (image + statistics["background_std"] * noise).clamp(-1, 1)


def paint_first_frame(denoiser: Denoiser, statistics: dict, masks: torch.Tensor, values: torch.Tensor,
                      keys: Sequence[int] | torch.Tensor, t_s: int, sampler: str = "ddpm",
                      stride: int = 1, detail_only: bool = False) -> torch.Tensor:
    """SDEdit from flat images of the masks ``[N, S, S]`` at brightness ``values`` (:func:`draw_brightness`).

    ``keys`` fix each cell's noise. With ``detail_only`` only the
    painting's fine texture is kept, on the start image (:func:`keep_envelope`). The start image has the
    measured edge profile where ``statistics`` has one. The painted cell is
    then scaled back to its brightness
    (:func:`~bvdm_data.diffusion.sample.calibrate_brightness`).
    """
    values = values.to(masks.device)
    background = statistics["background_mean"]
    start = flat_cells(masks, values, background, edge_profile=statistics.get("edge_profile"),
                       edge_shift=statistics.get("edge_shift", 0.0))
    painted = sdedit(denoiser, start, t_s, keys, sampler, stride)
    painted = calibrate_brightness(painted, masks.to(painted.device), values, background)
    return keep_envelope(start.to(painted.device), painted, masks.to(painted.device)) if detail_only else painted


def keep_envelope(start: torch.Tensor, painted: torch.Tensor, masks: torch.Tensor, sigma: float = DETAIL_SIGMA,
                  depth: int = DETAIL_DEPTH) -> torch.Tensor:
    """The start image's envelope (brightness, measured edge) plus the painted cell's fine texture.

    Fine texture is what a ``sigma`` px Gaussian low-pass leaves of the
    painting; it is added only ``depth`` rings or more inside the outline, so
    the measured edge stays as it was measured (SDEdit pulls it back to a
    crisp one).
    """
    k = 2 * int(3 * sigma) + 1
    detail = painted - kornia.filters.gaussian_blur2d(painted, (k, k), (sigma, sigma), border_type="replicate")
    inside = (signed_distance(masks, depth + 1) <= -depth)[:, None].to(painted.dtype)
    return (start + inside * detail).clamp(-1, 1)


def carry_over(denoiser: Denoiser, flow: FlowNet, previous: torch.Tensor, moving: torch.Tensor,
               fixed: torch.Tensor, alpha: Callable[[torch.Tensor], torch.Tensor], background: float,
               keys: Sequence[int] | torch.Tensor, t_f: int, sampler: str = "ddpm", stride: int = 1) -> torch.Tensor:
    """Texture of each cell in its new mask: warp ``previous`` along flow(moving -> fixed), refine by ``t_f``.

    Outside the new mask's soft footprint ``alpha(fixed)`` the warped texture
    is set to ``background``, so nothing of the old position survives; holes
    inside the new mask are filled by the refinement.
    """
    field = flow(moving[:, None].float(), fixed[:, None].float()).float()
    keep = alpha(fixed)
    warped = keep * warp(previous, field) + (1 - keep) * background
    return refine(denoiser, warped, t_f, keys, sampler, min(stride, max(1, t_f)))
