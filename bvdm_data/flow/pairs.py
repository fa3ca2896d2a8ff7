"""Training pairs for the flow model: one cell's mask in consecutive frames.

Each crop is centred on the cell's centroid in its own frame: the scene moves
cells by their simulated positions, so the flow only has to carry shape
change (deformation, rotation, growth). Pairs follow a track from frame to
frame, across single-child continuations, and from a mother's last frame to
each daughter's first. Cells whose crop would leave the image, or that do
not fit in the crop, are skipped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from bvdm_data.cells import cell_windows
from bvdm_data.errors import BVDMDataError

SAME, DIVISION = 0, 1


@dataclass
class FlowPairs:
    """``moving``/``fixed`` masks ``[N, 1, S, S]`` (0/1 floats), pair kind and the centroid shift between them."""

    moving: torch.Tensor
    fixed: torch.Tensor
    kind: np.ndarray      # SAME or DIVISION
    shift: np.ndarray     # [N, 2] (dy, dx) of the fixed centroid relative to the moving one, px
    frame: np.ndarray     # frame of the moving mask

    def __len__(self) -> int:
        return int(self.moving.shape[0])

    def select(self, keep: np.ndarray) -> FlowPairs:
        keep_t = torch.as_tensor(keep)
        return FlowPairs(self.moving[keep_t], self.fixed[keep_t], self.kind[keep], self.shift[keep], self.frame[keep])


def _cells(frame: np.ndarray, size: int) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """label -> (centred crop of its mask, centroid) for every cell that fits."""
    return {c.label: (frame[c.window(size)] == c.label, np.array(c.centroid))
            for c in cell_windows(frame, size) if c.fits and c.inside}


def extract_flow_pairs(masks: np.ndarray, tracks: np.ndarray, size: int = 64) -> FlowPairs:
    """All consecutive-frame pairs of one cell, and mother -> daughter pairs, from a label video with lineage."""
    masks = np.asarray(masks)
    tracks = np.asarray(tracks, dtype=np.int64).reshape(-1, 4)
    children: dict[int, list[tuple[int, int]]] = {}
    for label, begin, _, parent in tracks.tolist():
        if parent:
            children.setdefault(parent, []).append((label, begin))
    ends = {int(l): int(e) for l, _, e, _ in tracks.tolist()}
    cells = [_cells(frame, size) for frame in masks]
    moving, fixed, kind, shift, frame_of = [], [], [], [], []

    def add(a, b, k, t):
        moving.append(a[0])
        fixed.append(b[0])
        kind.append(k)
        shift.append(b[1] - a[1])
        frame_of.append(t)

    for t in range(len(masks) - 1):
        now, nxt = cells[t], cells[t + 1]
        for label, cell in now.items():
            if label in nxt:
                add(cell, nxt[label], SAME, t)
            elif ends.get(label) == t:
                kids = [c for c, b in children.get(label, []) if b == t + 1 and c in nxt]
                for c in kids:
                    add(cell, nxt[c], SAME if len(children[label]) == 1 else DIVISION, t)
    if not moving:
        raise BVDMDataError(f"no cell is present in two consecutive frames within a {size}x{size} crop")
    as_t = lambda xs: torch.from_numpy(np.stack(xs)[:, None].astype(np.float32))  # noqa: E731
    return FlowPairs(as_t(moving), as_t(fixed), np.asarray(kind), np.asarray(shift), np.asarray(frame_of))
