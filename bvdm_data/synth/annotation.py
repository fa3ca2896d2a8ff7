"""Labels that follow the painted cells the way the real annotation follows real ones.

A simulated mask is where a cell was *meant* to be; SDEdit then paints a
cell whose visible outline wanders from it by a pixel here and there. A
segmenter trained on (painting, mask) pairs learns that outlines are
uncertain, and draws real cells less exactly than one trained on real frames,
whose annotation is a function of the image. With ``labels="painted"`` each
cell's label is redrawn from its painting by the real annotation's own
convention, measured as the edge profile
(:func:`~bvdm_data.diffusion.edges.measure_edge_profiles`): the outline
lies where the contrast falls to the midpoint between the real annotation's
outermost labelled ring and the first ring outside it, relative to the
cell's core, at the cell's brightness.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from scipy import ndimage

from bvdm_data.diffusion.edges import REACH, profile_table

GROW = 3          # px a label may grow beyond its simulated mask (into pixels no other cell is closer to)
MIN_KEEP = 0.5    # a redrawn label smaller than this share of its mask falls back to the mask
SQUARE = np.ones((3, 3), bool)


def boundary_fractions(profile: Sequence[float] | Mapping[str, list], contrast: np.ndarray) -> np.ndarray:
    """The share of a cell's core contrast at which the annotation puts its outline, per cell.

    Example:
        >>> p = [1.0, 1.0, 1.0, 1.0, 0.8, 0.5, 0.2, 0.05, 0.0, 0.0, 0.0, 0.0]
        >>> [round(float(f), 3) for f in boundary_fractions(p, np.array([0.4]))]
        [0.35]
    """
    table, reach = profile_table(profile, torch.as_tensor(contrast, dtype=torch.float32), 0.0, torch.device("cpu"))
    return ((table[:, reach - 1] + table[:, reach + 1]) / 2).numpy()


def relabel_from_painting(image: np.ndarray, background: np.ndarray, labels: np.ndarray,
                          profile: Sequence[float] | Mapping[str, list]) -> np.ndarray:
    """Redraw each cell's label ``[H, W]`` from the painted frame ``image`` by the measured convention.

    ``background`` is the frame before cells were pasted (the local level
    each cell's contrast is measured from). A label may grow up to
    :data:`GROW` px into pixels closer to it than to any other cell, and
    shrinks where the painting is dimmer than the threshold; ids stay, and a
    cell whose redrawn label would keep under :data:`MIN_KEEP` of its mask
    (or that has no core) keeps its mask, so no cell is lost and lineage is
    unchanged (in a cropped view a cell at the border may show a frame
    earlier or later).
    """
    labels = np.asarray(labels)
    if not labels.any():
        return labels.copy()
    dist, (iy, ix) = ndimage.distance_transform_edt(labels == 0, return_indices=True)
    owner = np.where(dist <= GROW, labels[iy, ix], 0)
    out = labels.copy()
    boxes = ndimage.find_objects(owner)
    cells = [(i + 1, box) for i, box in enumerate(boxes) if box is not None]
    measured = []
    for cid, box in cells:
        inside = labels[box] == cid
        region = owner[box] == cid
        core = ndimage.binary_erosion(inside, SQUARE, iterations=REACH - 1)
        level = float(background[box][region].mean())
        if not core.any():
            continue
        measured.append((cid, box, inside, region, core, level, float(image[box][core].mean()) - level,
                         float(image[box][inside].mean()) - level))
    if not measured:
        return out
    fractions = boundary_fractions(profile, np.array([m[7] for m in measured]))
    for (cid, box, inside, region, core, level, core_contrast, _), f in zip(measured, fractions):
        if core_contrast <= 0:
            continue
        bright = region & (image[box] > level + f * core_contrast)
        parts, _ = ndimage.label(bright)
        keep = np.isin(parts, np.unique(parts[core & (parts > 0)]))
        keep = ndimage.binary_fill_holes(keep) & region
        if keep.sum() < MIN_KEEP * inside.sum():
            continue
        view = out[box]
        view[inside] = 0
        view[keep] = cid
    return out


def relabel_clip(video: np.ndarray, background: np.ndarray, labels: np.ndarray,
                 profile: Sequence[float] | Mapping[str, list]) -> np.ndarray:
    """:func:`relabel_from_painting` for every frame of a clip (``[T, H, W]`` arrays); a picklable job."""
    return np.stack([relabel_from_painting(v, b, lab, profile) for v, b, lab in zip(video, background, labels)])
