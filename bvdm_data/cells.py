"""Where each labelled cell of a frame sits: the square window of a crop centred on it.

Texture crops, flow pairs and the cells a clip paints are all cut the same
way, centred on the rounded centroid, so a cell lands on the same pixel of
its crop whichever part of the code cut it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage


@dataclass(frozen=True)
class CellWindow:
    """One cell of a frame and the ``size``-px crop window centred on it."""

    label: int
    area: int
    centroid: tuple[float, float]   # (y, x) in the frame, px
    corner: tuple[int, int]         # top-left (y, x) of the window; may lie outside the frame
    fits: bool                      # the cell's bounding box is no larger than the window
    inside: bool                    # the window lies wholly inside the frame

    def window(self, size: int) -> tuple[slice, slice]:
        """The window as slices of the frame (valid when :attr:`inside`)."""
        return slice(self.corner[0], self.corner[0] + size), slice(self.corner[1], self.corner[1] + size)


def cell_windows(frame: np.ndarray, size: int) -> list[CellWindow]:
    """Every labelled cell of ``frame`` ``[H, W]`` with its crop window of ``size`` px.

    Example:
        >>> f = np.zeros((10, 10), np.int32); f[2:5, 3:6] = 4
        >>> w = cell_windows(f, 4)[0]
        >>> w.label, w.area, w.centroid, w.corner, w.fits, w.inside
        (4, 9, (3.0, 4.0), (1, 2), True, True)
    """
    half = size // 2
    h, w = frame.shape
    out = []
    for label_minus_1, box in enumerate(ndimage.find_objects(frame)):
        if box is None:
            continue
        label = label_minus_1 + 1
        cell = frame[box] == label
        cy, cx = ndimage.center_of_mass(cell)
        y0, x0 = int(round(cy)) + box[0].start - half, int(round(cx)) + box[1].start - half
        out.append(CellWindow(label, int(cell.sum()), (float(cy) + box[0].start, float(cx) + box[1].start), (y0, x0),
                              max(cell.shape) <= size, y0 >= 0 and x0 >= 0 and y0 + size <= h and x0 + size <= w))
    return out
