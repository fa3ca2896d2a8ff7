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

Where the bundle holds a *label law* (:func:`fit_label_law`, measured by
``fit-statistics``) the threshold is instead the share of the cell's mean
contrast at which the same rule, applied to the real cells, reproduces the
real annotation best, by brightness. On HeLa's ``ERR_SEG`` (fitted on frames
0-7, checked on 8-10) the law's labels agree with the annotation at a mean
IoU of 0.961 where the profile's midpoint reaches 0.946 (one threshold per cell
chosen with hindsight: 0.970; ``benchmarks/label_law.py``), so a segmenter
trained on painted cells is taught an outline nearer to the one it is scored against.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import NamedTuple

import numpy as np
import torch
from scipy import ndimage

from bvdm_data.diffusion.edges import REACH, profile_table

GROW = 3          # px a label may grow beyond its simulated mask (into pixels no other cell is closer to)
MIN_KEEP = 0.5    # a redrawn label smaller than this share of its mask falls back to the mask
SQUARE = np.ones((3, 3), bool)
LAW_SHARES = np.round(np.arange(0.05, 1.2001, 0.01), 2)  # shares of the mean contrast tried by fit_label_law
LAW_BINS = 8             # brightness bins of the label law (quantiles of the cells' mean contrast)
LAW_MIN_CELLS = 20       # fewer cells per bin: fewer bins
LEVEL_MARGIN = 5         # px from any cell: where a real crop's background level is read


def threshold_label(image: np.ndarray, region: np.ndarray, core: np.ndarray, threshold: float) -> np.ndarray:
    """The rule both ways: pixels of ``region`` brighter than ``threshold`` in pieces that touch ``core``, holes
    filled (boolean, the shape of ``image``)."""
    parts, _ = ndimage.label(region & (image > threshold))
    keep = np.isin(parts, np.unique(parts[core & (parts > 0)]))
    return ndimage.binary_fill_holes(keep) & region


def _cell_region(inside: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Pixels within :data:`GROW` px of a cell ``inside`` that are nearer to it than to any cell of ``others``."""
    near = ndimage.distance_transform_edt(~inside)
    far = ndimage.distance_transform_edt(~others) if others.any() else np.full(inside.shape, np.inf)
    return (near <= GROW) & (near < far) & ~others | inside


def law_shares(law: Mapping[str, list], contrast: np.ndarray) -> np.ndarray:
    """The share of each cell's mean contrast at which the label law puts its outline (linear in brightness
    between bins, constant beyond)."""
    return np.interp(contrast, law["contrast"], law["share"])


class _RealCell(NamedTuple):
    image: np.ndarray
    mask: np.ndarray
    region: np.ndarray      # where its label may lie: pixels nearer to it than to any other cell
    core: np.ndarray
    level: float            # the local background
    contrast: float         # mean over the mask, above the level
    core_contrast: float


def _real_cells(images: np.ndarray, masks: np.ndarray, empty: np.ndarray) -> Iterator[_RealCell]:
    """Per usable crop, its :class:`_RealCell`: ``images`` ``[N, S, S]``
    (-1..1), ``masks`` the centre cell of each crop, ``empty`` where no cell is (the others are ``~empty & ~masks``);
    the level is the median of the pixels :data:`LEVEL_MARGIN` px from any cell (all empty pixels where none is
    that far)."""
    for image, mask, free in zip(images, masks, empty):
        if not free.any():
            continue
        far = free & (ndimage.distance_transform_edt(free) >= LEVEL_MARGIN)
        level = float(np.median(image[far] if far.sum() >= 20 else image[free]))
        core = ndimage.binary_erosion(mask, SQUARE, iterations=REACH - 1)
        if not core.any():  # also an empty mask, before its mean is taken
            continue
        contrast = float(image[mask].mean()) - level
        if contrast <= 0:
            continue
        yield _RealCell(image, mask, _cell_region(mask, ~free & ~mask), core, level, contrast,
                        float(image[core].mean()) - level)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def _ious_by_share(image: np.ndarray, mask: np.ndarray, region: np.ndarray, core: np.ndarray, level: float,
                   contrast: float) -> list[float]:
    """IoU with ``mask`` of the rule's label at each of :data:`LAW_SHARES` of the mean ``contrast``."""
    return [_iou(threshold_label(image, region, core, level + share * contrast), mask) for share in LAW_SHARES]


def fit_label_law(images: np.ndarray, masks: np.ndarray, empty: np.ndarray, bins: int = LAW_BINS) -> dict[str, list]:
    """Measure the annotation's threshold: by brightness, the share of a cell's mean contrast at which
    :func:`threshold_label` reproduces the real labels best (mean IoU over the bin's cells).

    ``images`` ``[N, S, S]`` (-1..1), ``masks`` ``[N, S, S]`` the centre cell of each crop, ``empty`` where no
    cell is (so the others are ``~empty & ~masks``); each crop's level is the median of its pixels
    :data:`LEVEL_MARGIN` px from any cell (all empty pixels where none is that far). Returns
    ``{"contrast": [bin medians], "share": [...], "iou": [mean IoU per bin], "cells": [...]}``.

    Example:
        >>> yy, xx = np.mgrid[:48, :48]
        >>> cells = [np.clip(14 - np.hypot(yy - 24, xx - 24), 0, 4) / 4 * c for c in np.linspace(0.2, 1.0, 40)]
        >>> images = np.stack(cells) - 0.9
        >>> masks = np.stack([c > 0.25 * c.max() for c in cells])  # labelled where a quarter of the core's light is
        >>> law = fit_label_law(images, masks, ~masks, bins=1)
        >>> law["iou"][0] > 0.99
        True
    """
    rows = [(c.contrast, _ious_by_share(c.image, c.mask, c.region, c.core, c.level, c.contrast))
            for c in _real_cells(images, masks, empty)]
    if not rows:
        raise ValueError("no cell with a core and a background to measure the label law on")
    contrast = np.array([r[0] for r in rows])
    iou = np.array([r[1] for r in rows])
    bins = max(1, min(bins, len(rows) // LAW_MIN_CELLS))
    which = np.digitize(contrast, np.quantile(contrast, np.linspace(0, 1, bins + 1))[1:-1])
    law: dict[str, list] = {"contrast": [], "share": [], "iou": [], "cells": []}
    for b in range(bins):
        sel = which == b
        best = int(iou[sel].mean(0).argmax())
        law["contrast"].append(float(np.median(contrast[sel])))
        law["share"].append(float(LAW_SHARES[best]))
        law["iou"].append(float(iou[sel, best].mean()))
        law["cells"].append(int(sel.sum()))
    return law


def label_agreement(images: np.ndarray, masks: np.ndarray, empty: np.ndarray,
                    profile: Sequence[float] | Mapping[str, list], law: Mapping[str, list]) -> dict[str, np.ndarray]:
    """Per real cell (crops as :func:`fit_label_law` takes them), the IoU with its real label of the label the
    rule draws from the real image: by the label ``law``, by the edge ``profile``'s midpoint, and at the one
    share of the mean contrast that fits this cell best (hindsight: what no threshold rule can beat).

    Example:
        >>> yy, xx = np.mgrid[:48, :48]
        >>> cells = [np.clip(14 - np.hypot(yy - 24, xx - 24), 0, 4) / 4 * c for c in np.linspace(0.2, 1.0, 20)]
        >>> masks = np.stack([c > 0.25 * c.max() for c in cells])
        >>> agree = label_agreement(np.stack(cells) - 0.9, masks, ~masks, [1.0] * 13, {"contrast": [0.5], "share": [0.3]})
        >>> round(float(agree["law"].mean()), 2), round(float(agree["hindsight"].mean()), 2)
        (1.0, 1.0)
    """
    out: dict[str, list] = {"law": [], "profile": [], "hindsight": []}
    for image, mask, region, core, level, contrast, core_contrast in _real_cells(images, masks, empty):
        share = float(law_shares(law, np.array([contrast]))[0])
        fraction = float(boundary_fractions(profile, np.array([contrast]))[0])
        out["law"].append(_iou(threshold_label(image, region, core, level + share * contrast), mask))
        out["profile"].append(_iou(threshold_label(image, region, core, level + fraction * core_contrast), mask))
        out["hindsight"].append(max(_ious_by_share(image, mask, region, core, level, contrast)))
    return {k: np.asarray(v) for k, v in out.items()}


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
                          profile: Sequence[float] | Mapping[str, list] | None,
                          law: Mapping[str, list] | None = None) -> np.ndarray:
    """Redraw each cell's label ``[H, W]`` from the painted frame ``image`` by the measured convention.

    ``background`` is the frame before cells were pasted (the local level
    each cell's contrast is measured from). The threshold is the label
    ``law``'s share of the cell's mean contrast when one is given, else the
    edge ``profile``'s midpoint share of its core contrast. A label may grow up to
    :data:`GROW` px into pixels closer to it than to any other cell, and
    shrinks where the painting is dimmer than the threshold; ids stay, and a
    cell whose redrawn label would keep under :data:`MIN_KEEP` of its mask
    (or that has no core) keeps its mask, so no cell is lost and lineage is
    unchanged (in a cropped view a cell at the border may show a frame
    earlier or later).
    """
    if law is None and profile is None:
        raise ValueError("relabel_from_painting needs the label law or an edge profile")
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
    mean_contrast = np.array([m[7] for m in measured])
    if law is not None:
        thresholds = law_shares(law, mean_contrast) * mean_contrast
    else:
        thresholds = boundary_fractions(profile, mean_contrast) * np.array([m[6] for m in measured])
    for (cid, box, inside, region, core, level, core_contrast, _), threshold in zip(measured, thresholds):
        if core_contrast <= 0 or threshold <= 0:
            continue
        keep = threshold_label(image[box], region, core, level + threshold)
        if keep.sum() < MIN_KEEP * inside.sum():
            continue
        view = out[box]
        view[inside] = 0
        view[keep] = cid
    return out


def relabel_clip(video: np.ndarray, background: np.ndarray, labels: np.ndarray,
                 profile: Sequence[float] | Mapping[str, list] | None,
                 law: Mapping[str, list] | None = None) -> np.ndarray:
    """:func:`relabel_from_painting` for every frame of a clip (``[T, H, W]`` arrays); a picklable job."""
    return np.stack([relabel_from_painting(v, b, lab, profile, law) for v, b, lab in zip(video, background, labels)])
