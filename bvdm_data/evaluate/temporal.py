"""Temporal consistency: how much a cell's texture changes from one frame to the next.

Flicker is the mean absolute intensity change inside a cell between
consecutive frames after motion compensation: each cell is cut out centred on
its centroid in both frames, and the change is averaged over the pixels inside
both masks. Real cells flicker a little (they move, turn and the camera is
noisy); independently painted frames flicker much more.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage


def match_by_overlap(a: np.ndarray, b: np.ndarray, min_iou: float = 0.3) -> list[tuple[int, int]]:
    """Pairs ``(label in a, label in b)`` whose masks overlap with IoU above ``min_iou`` (one partner each)."""
    both = (a > 0) & (b > 0)
    pairs, counts = np.unique(np.stack([a[both], b[both]]), axis=1, return_counts=True)
    area_a = np.bincount(a.ravel())
    area_b = np.bincount(b.ravel())
    iou = counts / (area_a[pairs[0]] + area_b[pairs[1]] - counts)
    keep = iou > min_iou
    return [(int(x), int(y)) for x, y in pairs[:, keep].T]


def _centred(frame: np.ndarray, labels: np.ndarray, label: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    cy, cx = ndimage.center_of_mass(labels == label)
    half = size // 2
    # Corner of the centred window, in the coordinates of the arrays padded by ``half``
    # (floor(c + 0.5), not round(): banker's rounding would misalign equal shapes by a pixel).
    y0, x0 = int(np.floor(cy + 0.5)), int(np.floor(cx + 0.5))
    img = np.pad(frame, half, mode="edge")[y0:y0 + size, x0:x0 + size]
    mask = np.pad(labels == label, half)[y0:y0 + size, x0:x0 + size]
    return img, mask


def flicker(video: torch.Tensor | np.ndarray, masks: torch.Tensor | np.ndarray, same_ids: bool = True,
            size: int = 64) -> float:
    """Mean absolute change inside cells between consecutive frames, motion-compensated (0..1 video scale).

    ``same_ids``: ids are track ids (synthetic clips, CTC TRA); otherwise cells
    are matched between frames by overlap (per-frame segmentations).

    Example:
        >>> v = np.full((3, 1, 32, 32), 0.2); m = np.zeros((3, 32, 32), int); m[:, 10:20, 10:20] = 1
        >>> flicker(v, m)
        0.0
    """
    v = np.asarray(video)[:, 0] if np.asarray(video).ndim == 4 else np.asarray(video)
    m = np.asarray(masks)
    changes = []
    for t in range(len(m) - 1):
        if same_ids:
            common = np.intersect1d(np.unique(m[t]), np.unique(m[t + 1]))
            pairs = [(int(c), int(c)) for c in common if c > 0]
        else:
            pairs = match_by_overlap(m[t], m[t + 1])
        for a, b in pairs:
            img0, mask0 = _centred(v[t], m[t], a, size)
            img1, mask1 = _centred(v[t + 1], m[t + 1], b, size)
            inside = mask0 & mask1
            if inside.sum() >= 10:
                changes.append(float(np.abs(img1 - img0)[inside].mean()))
    return float(np.mean(changes)) if changes else float("nan")
