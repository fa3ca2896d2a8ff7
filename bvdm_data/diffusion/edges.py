"""The edge of a cell as the annotation draws it: intensity against signed distance to the outline.

Where an annotation puts a boundary on a soft intensity edge is a convention
the segmenter learns. On HeLa's ``ERR_SEG`` a cell keeps only 44 % of its core
contrast on its outermost labelled pixel and 69 % one pixel further in: the
masks are generous. A flat cell with a 1-px blur keeps 75 % and 96 % there, so
a net trained on it learns masks that stop where the light starts to fade and
draws real cells too small. The profile is measured from real crops and used
to build SDEdit's start images (:func:`bvdm_data.diffusion.sample.flat_cells`).

Distances are counted in erosion (inside) and dilation (outside) steps with a
3x3 square, on the device of the masks, the same way when measuring and when
painting, so both see the same rings.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

REACH = 6  # px each side of the outline; deeper pixels count as the core


def signed_distance(masks: torch.Tensor, reach: int = REACH) -> torch.Tensor:
    """Rings ``[N, S, S]`` (int64) around each mask ``[N, S, S]``: -1 the outermost inside ring, -2 the next..., +1
    the first outside ring, +2 ...; clamped to ``-reach`` (the core) and ``+reach``.

    Example:
        >>> m = torch.zeros(1, 9, 9, dtype=torch.bool); m[0, 2:7, 2:7] = True
        >>> signed_distance(m, reach=3)[0, 4].tolist()
        [2, 1, -1, -2, -3, -2, -1, 1, 2]
    """
    x = masks[:, None].float()
    inside = torch.zeros_like(x)
    outside = torch.zeros_like(x)
    grown, shrunk = x, x
    for _ in range(reach - 1):
        shrunk = -F.max_pool2d(-shrunk, 3, stride=1, padding=1)
        inside = inside + shrunk
        grown = F.max_pool2d(grown, 3, stride=1, padding=1)
        outside = outside + (1 - grown)
    # inside: erosions survived (0 on the outermost ring); outside: dilations not yet reached.
    ring = torch.where(x > 0, -(inside + 1), outside + 1)
    return ring[:, 0].long()


def measure_edge_profile(images: torch.Tensor, masks: torch.Tensor, usable: torch.Tensor, background: float,
                         reach: int = REACH) -> list[float]:
    """Median contrast per ring (``-reach..-1, 1..reach``) relative to each cell's core contrast.

    ``images`` ``[N, 1, S, S]``, the centre cell's ``masks`` ``[N, S, S]``;
    ``usable`` ``[N, S, S]`` marks pixels outside the cell that no other cell
    covers (neighbours are not the cell's halo). Cells without a core (no
    pixel ``reach`` rings deep) or with a core contrast under 0.05 are skipped.
    Returns ``2 * reach`` values, inside rings first.
    """
    rings = signed_distance(masks, reach)
    x = images[:, 0].double() - background
    core = rings == -reach
    n_core = core.sum((1, 2))
    contrast = (x * core).sum((1, 2)) / n_core.clamp_min(1)
    keep = (n_core > 0) & (contrast > 0.05)
    rel = x[keep] / contrast[keep, None, None]
    rings, inside, usable = rings[keep], masks[keep].bool(), usable[keep].bool()
    out = []
    for d in [*range(-reach, 0), *range(1, reach + 1)]:
        sel = (rings == d) & (inside if d < 0 else usable)
        out.append(float(rel[sel].median()) if sel.any() else (1.0 if d < 0 else 0.0))
    return out


def profile_cells(masks: torch.Tensor, values: torch.Tensor, background: float, profile: Sequence[float]) -> torch.Tensor:
    """Start images ``[N, 1, S, S]``: each mask with the measured edge, scaled so its mean inside is ``values``."""
    reach = len(profile) // 2
    table = torch.tensor([*profile[:reach], 0.0, *profile[reach:]], dtype=torch.float32, device=masks.device)
    shape = table[signed_distance(masks, reach) + reach]
    inside = masks.float()
    mean_inside = (shape * inside).sum((1, 2)) / inside.sum((1, 2)).clamp_min(1)
    scale = (values.reshape(-1).to(shape) - background) / mean_inside.clamp_min(1e-3)
    return (background + shape * scale[:, None, None])[:, None]
