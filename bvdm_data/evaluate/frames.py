"""What surrounds the texture: statistics of annotated frames, real or synthetic, side by side.

The segmenter sees whole frames, not single cells, so a synthetic source can
fail it through density, size, shape, brightness spread, image formation or
annotation convention as much as through texture. :func:`frame_statistics`
measures all of these the same way on any list of clips of the contract
(``video`` 0..1, ``masks``), whether ids are track ids or per frame:

* ``density`` (cells per 10 000 px², as covered area over the median cell area), ``area``, ``solidity``, ``nn_distance``
  (centroid to nearest centroid, px), ``touching`` (per frame, the share of cells that
  share an edge with another cell), ``seam`` (per pair of touching cells, the light where they meet over
  their mean contrast: real touching HeLa nuclei keep most of it, a painted dark valley does not);
* ``brightness_cv`` (per-cell mean above background: coefficient of variation
  over cells), ``interior`` (per cell, the spread of its light 3 px and more
  inside its outline, smoothed over 1.5 px so that pixel noise drops out and
  nucleoli and chromatin stay: 95th minus 5th percentile over the cell's
  contrast; a flat cell scores near 0), ``background`` (median of pixels 5 px
  from any cell), ``noise``
  (robust spread of what a 2-px high-pass leaves there), ``edge_ratio`` (mean
  contrast 1 px outside the outline over the contrast inside: where the
  annotation puts the boundary on the intensity edge), ``halo`` (median 3-10 px
  from the nearest cell minus median 20 px or more away, over the mean cell
  contrast: the out-of-focus light around nuclei);
* ``unlabelled`` (bright blobs that no label touches, per labelled cell:
  what the annotation leaves out);
* ``displacement`` (px per frame, centroid to nearest centroid in the next
  frame, which works without track ids).

Example:
    >>> import torch
    >>> clip = {"video": torch.zeros(2, 1, 64, 64), "masks": torch.zeros(2, 64, 64, dtype=torch.int32)}
    >>> clip["masks"][:, 20:30, 20:30] = 1; clip["video"][:, :, 20:30, 20:30] = 0.5
    >>> stats = frame_statistics([clip])
    >>> float(np.median(stats["area"])), float(np.median(stats["density"]))
    (100.0, 2.44140625)
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from bvdm_data.clip import Clip
from bvdm_data.masks.contours import measure_instances
from bvdm_data.masks.coverage import meeting_pixels
from bvdm_data.masks.fidelity import solidities
from bvdm_data.robust import robust_std
from bvdm_data.scene.model import background_of, unlabelled_objects

STATISTICS = ("density", "area", "solidity", "nn_distance", "touching", "seam", "brightness_cv", "interior",
              "background", "noise", "edge_ratio", "halo", "unlabelled", "displacement")
INTERIOR_INSET = 3  # px inside the outline: the edge's fall-off stays out of the interior's spread
INTERIOR_SIGMA = 1.5  # px of smoothing: drops pixel noise, keeps nucleoli and chromatin
INTERIOR_MIN_PIXELS = 30  # a cell with fewer interior pixels has no interior to speak of
HALO_NEAR = (3.0, 10.0)  # px from the nearest cell: beyond the annotated edge, within a nucleus' glow
HALO_FAR = 20.0  # px: the background past the glow


def _frame(image: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> dict[str, Any]:
    h, w = labels.shape
    ids = np.unique(labels)
    ids = ids[ids > 0]
    out: dict[str, Any] = {}
    background = background_of(labels)
    found = unlabelled_objects(image, labels, background)
    level = None
    if found is not None:
        level, contrast = found
        out["background"] = level
        out["noise"] = robust_std((image - ndimage.gaussian_filter(image, 2.0))[background])
        out["unlabelled_objects"] = len(contrast)
    if not len(ids):
        return out
    masks = labels[None]
    inst = measure_instances(masks)
    whole = ~inst.border
    out["area"] = inst.area[whole]
    # Covered area over the median whole-cell area: cells cut by the border count by the part in view, so small
    # windows are not denser than large ones.
    if whole.any():
        out["density"] = float((labels > 0).sum() / np.median(inst.area[whole]) / (h * w) * 1e4)
    out["solidity"] = solidities(masks, inst, rng)
    if len(ids) >= 2:
        dist, _ = cKDTree(inst.centroid).query(inst.centroid, k=2)
        out["nn_distance"] = dist[:, 1]
    here, there, where = meeting_pixels(labels)  # pixels that meet a 4-neighbour of another cell
    light = image.ravel()[where]
    out["touching"] = float(np.isin(ids, here).mean())
    if level is not None:
        means = np.asarray(ndimage.mean(image, labels, ids)) - level
        out["cell_contrast"] = means
        out["interior"] = _interior(image, labels, ids, means)
        if len(here):
            pair = np.minimum(here, there) * (int(labels.max()) + 1) + np.maximum(here, there)
            keys, inverse = np.unique(pair, return_inverse=True)
            seam = np.bincount(inverse, light) / np.bincount(inverse) - level
            contrast = dict(zip(ids.tolist(), means.tolist()))
            a, b = np.divmod(keys, int(labels.max()) + 1)
            pair_contrast = np.array([(contrast[i] + contrast[j]) / 2 for i, j in zip(a.tolist(), b.tolist())])
            out["seam"] = seam / np.maximum(pair_contrast, 1e-6)
        ring = ndimage.binary_dilation(labels > 0) & (labels == 0)
        edge = float(np.mean(image[ring] - level)) if ring.any() else float("nan")
        out["edge_ratio"] = edge / max(float(np.mean(means)), 1e-6)
        dist = ndimage.distance_transform_edt(labels == 0)
        near, far = (dist >= HALO_NEAR[0]) & (dist <= HALO_NEAR[1]), dist >= HALO_FAR
        if near.sum() >= 100 and far.sum() >= 100:
            glow = float(np.median(image[near]) - np.median(image[far]))
            out["halo"] = glow / max(float(np.mean(means)), 1e-6)
    return out


def _interior(image: np.ndarray, labels: np.ndarray, ids: np.ndarray, contrast: np.ndarray) -> np.ndarray:
    """Per cell: 95th - 5th percentile of the smoothed light ``INTERIOR_INSET`` px and more inside, over contrast."""
    reach = 2 * INTERIOR_INSET + 1
    inner = (ndimage.minimum_filter(labels, reach) == labels) & (ndimage.maximum_filter(labels, reach) == labels)
    inner_labels = np.where(inner, labels, 0)
    counts = np.bincount(inner_labels.ravel(), minlength=int(labels.max()) + 1)[ids]
    keep = counts >= INTERIOR_MIN_PIXELS
    if not keep.any():
        return np.zeros(0)
    smooth = ndimage.gaussian_filter(image, INTERIOR_SIGMA)
    spread = ndimage.labeled_comprehension(smooth, inner_labels, ids[keep],
                                           lambda v: np.percentile(v, 95) - np.percentile(v, 5), float, np.nan)
    return spread / np.maximum(contrast[keep], 1e-6)


def frame_statistics(clips: Iterable[Clip], seed: int = 0, max_frames: int | None = None) -> dict[str, np.ndarray]:
    """Measure every frame of ``clips`` (see the module docstring); one array of samples per statistic."""
    rng = np.random.default_rng(seed)
    pooled: dict[str, list] = {k: [] for k in STATISTICS}
    contrast, labelled, blobs, frames = [], 0, 0, 0
    for clip in clips:
        video, masks = clip["video"][:, 0].float().numpy(), clip["masks"].numpy()
        previous = None
        for image, labels in zip(video, masks):
            if max_frames is not None and frames >= max_frames:
                break
            frames += 1
            stats = _frame(image.astype(np.float64), labels, rng)
            for key in ("density", "touching", "background", "noise", "edge_ratio", "halo"):
                if key in stats:
                    pooled[key].append(stats[key])
            for key in ("area", "solidity", "nn_distance", "seam", "interior"):
                pooled[key].extend(np.atleast_1d(stats.get(key, [])).tolist())
            if "cell_contrast" in stats:
                contrast.append(stats["cell_contrast"])
            if "unlabelled_objects" in stats:
                blobs += stats["unlabelled_objects"]
                labelled += int((np.unique(labels) > 0).sum())
            cent = _centroids(labels)
            if previous is not None and len(previous) and len(cent):
                dist, _ = cKDTree(cent).query(previous, distance_upper_bound=40.0)
                pooled["displacement"].extend(dist[np.isfinite(dist)].tolist())
            previous = cent
    if contrast:
        c = np.concatenate(contrast)
        pooled["brightness_cv"].append(float(c.std() / max(c.mean(), 1e-6)))
    pooled["unlabelled"].append(blobs / max(labelled, 1))
    return {k: np.asarray(v, dtype=float) for k, v in pooled.items()}


def _centroids(labels: np.ndarray) -> np.ndarray:
    ids = np.unique(labels)
    ids = ids[ids > 0]
    if not len(ids):
        return np.zeros((0, 2))
    return np.asarray(ndimage.center_of_mass(np.ones_like(labels), labels, ids)).reshape(-1, 2)


def compare_frames(real: dict[str, np.ndarray], synthetic: dict[str, dict[str, np.ndarray]]) -> list[dict[str, Any]]:
    """One row per statistic: the real median and each synthetic source's median with its relative difference."""
    rows = []
    for name in STATISTICS:
        r = real.get(name, np.zeros(0))
        ref = float(np.median(r)) if r.size else float("nan")
        row: dict[str, Any] = {"statistic": name, "real": round(ref, 4)}
        for source, stats in synthetic.items():
            s = stats.get(name, np.zeros(0))
            value = float(np.median(s)) if s.size else float("nan")
            row[source] = round(value, 4)
            row[f"{source} rel."] = f"{(value - ref) / ref:+.0%}" if ref and np.isfinite(ref * value) else "n/a"
        rows.append(row)
    return rows
