"""How cells fill a frame: covered area, touching cells, and the first-frame density at which simulated views
are as covered by cells as real frames."""

from __future__ import annotations

import numpy as np

from bvdm_data.errors import BVDMDataError
from bvdm_data.masks.model import MaskModel
from bvdm_data.masks.simulate import simulate_masks


def covered_fraction(labels: np.ndarray) -> float:
    """Share of pixels inside a labelled cell, over every frame of ``labels`` (``[..., H, W]``)."""
    return float((np.asarray(labels) > 0).mean())


def meeting_pixels(frame: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where cells meet in one ``[H, W]`` label frame: for each pixel of a cell and each of its 4 neighbours that
    lies in another cell, this cell's label, the other's, and the pixel's flat index (a pixel that meets another
    cell on two sides appears twice).

    Example:
        >>> frame = np.zeros((3, 4), np.int32); frame[:, :2], frame[:, 2:3] = 1, 2
        >>> here, there, where = meeting_pixels(frame)
        >>> sorted(zip(here.tolist(), there.tolist(), where.tolist()))[:3]
        [(1, 2, 1), (1, 2, 5), (1, 2, 9)]
    """
    frame = np.asarray(frame)
    index = np.arange(frame.size).reshape(frame.shape)
    parts = []
    for a, b, i in ((frame[:, 1:], frame[:, :-1], index[:, 1:]), (frame[:, :-1], frame[:, 1:], index[:, :-1]),
                    (frame[1:], frame[:-1], index[1:]), (frame[:-1], frame[1:], index[:-1])):
        m = (a > 0) & (b > 0) & (a != b)
        parts.append((a[m].astype(np.int64), b[m].astype(np.int64), i[m]))
    here, there, where = (np.concatenate(x) for x in zip(*parts))
    return here, there, where


def touching_share(labels: np.ndarray) -> float:
    """Share of cells, over every frame of ``labels`` (``[..., H, W]``), that share an edge with another cell.

    Example:
        >>> frame = np.zeros((1, 8, 12), np.int32); frame[0, 2:6, 1:4], frame[0, 2:6, 4:7], frame[0, 2:6, 9:11] = 1, 2, 3
        >>> round(touching_share(frame), 3)
        0.667
    """
    labels = np.asarray(labels)
    cells = touching = 0
    for frame in labels.reshape(-1, *labels.shape[-2:]):
        ids = np.unique(frame[frame > 0])
        cells, touching = cells + len(ids), touching + int(np.isin(ids, meeting_pixels(frame)[0]).sum())
    return touching / max(cells, 1)


def density_for_coverage(model: MaskModel, size: tuple[int, int], coverage: float, *, margin: int = 0,
                         frames: int = 2, fields: int = 48, rounds: int = 3, seed: int = 0) -> float:
    """The ``density`` (cells per px^2 in the first frame) whose ``size`` views cover ``coverage`` of their pixels.

    A density asked for is that of the simulated field's first frame; what a
    view shows also depends on how cells grow and divide, on the cells the
    frame's edge cuts, and on the view's size (a small view counts more cut
    cells per px^2). Covered area is what a segmenter trained on the views
    sees, whatever the view's size, so this matches it: each round simulates
    ``fields`` independent ``frames``-frame fields of ``size`` plus ``margin``
    px on every side (as :class:`~bvdm_data.synth.Synthesizer` pads its view),
    measures the covered share of the central view and scales the density by
    the ratio (coverage grows about linearly with density below crowding).
    Every round draws the same fields (common random numbers), so the rounds
    converge instead of chasing field-to-field noise; ``fields`` sets that noise.

    Example:
        >>> model = MaskModel.load("hela")
        >>> d = density_for_coverage(model, (128, 128), 0.05, margin=32, fields=8, rounds=2)
        >>> 0 < d < model.density
        True
    """
    if not 0 < coverage < 1:
        raise BVDMDataError(f"coverage must be a share of the pixels in (0, 1), got {coverage!r}")
    h, w = (int(v) for v in size)
    density = model.density
    for _ in range(rounds):
        shown = np.mean([covered_fraction(simulate_masks(
            model, frames, (h + 2 * margin, w + 2 * margin), seed=np.random.SeedSequence([seed, 200, f]),
            density=density)["masks"].numpy()[:, margin:margin + h, margin:margin + w]) for f in range(fields)])
        if shown <= 0:
            raise BVDMDataError(f"no cell in {fields} simulated {h}x{w} views at {density:.3g} cells/px^2")
        density *= coverage / shown
    return float(density)


__all__ = ["covered_fraction", "density_for_coverage"]
