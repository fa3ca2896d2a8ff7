"""Label frames that combine a sparse outline annotation with markers of every cell.

The CTC's gold ``SEG`` of some datasets outlines only some cells per frame
(GOWT1 01: about 5 of 25), while ``TRA`` marks every cell with a marker
that is smaller than the nucleus (GOWT1: 58 % of the outlined area,
entirely inside it). Measurements that need a cell's true edge (edge
profile, brightness law) must use the outlines; measurements that need to
know where no cell is (background, unlabelled objects) must also exclude the
cells that only have a marker, and their rims.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
from scipy import ndimage

from bvdm_data.ctc.naming import SEG
from bvdm_data.ctc.sequence import CTCSequence, FrameFolder, LabelFolder
from bvdm_data.errors import CTCFormatError


def grow_labels(labels: np.ndarray, distance: float) -> np.ndarray:
    """Each label grown by up to ``distance`` px into unlabelled pixels, each pixel to its nearest label.

    Example:
        >>> f = np.zeros((1, 7), np.int32); f[0, 1], f[0, 5] = 1, 2
        >>> grow_labels(f, 1.5).tolist()
        [[1, 1, 1, 0, 2, 2, 2]]
    """
    if distance <= 0 or not labels.any():
        return labels.copy()
    gap, (iy, ix) = ndimage.distance_transform_edt(labels == 0, return_indices=True)
    grown = labels[iy, ix]
    return np.where((labels == 0) & (gap > distance), 0, grown).astype(labels.dtype)


def marker_rim(outlines: np.ndarray, markers: np.ndarray) -> np.ndarray:
    """Per outlined cell, how far its outline reaches beyond its marker: ``r(outline) - r(marker)`` in px.

    Radii are those of discs of equal area; each outline is paired with the
    marker it overlaps most. Outlines without a marker are skipped.
    """
    out = []
    for label in np.unique(outlines[outlines > 0]):
        inside = markers[outlines == label]
        ids, counts = np.unique(inside[inside > 0], return_counts=True)
        if ids.size == 0:
            continue
        marker_area = (markers == ids[counts.argmax()]).sum()
        out.append(np.sqrt((outlines == label).sum() / np.pi) - np.sqrt(marker_area / np.pi))
    return np.asarray(out, dtype=float)


class OutlinedLabels:
    """Frames of ``outlines`` (a sparse segmentation) completed with the ``markers`` of cells it leaves out.

    ``read(f)`` gives, for every frame the outlines cover, the outlined cells
    as labels ``1..n`` (``n = last_outlined(f)``) and every marked cell no
    outline overlaps as a further label, its marker grown by the measured
    rim (by default the 90th percentile of :func:`marker_rim` over the
    outlined frames, so that its edge does not count as background; the
    median makes a grown marker stand for a typical whole nucleus). Crops and edge profiles
    use labels ``1..n`` only; the background is what no label covers.

    Example:
        >>> labels = OutlinedLabels("GOWT1/01_GT/SEG", "GOWT1/01_GT/TRA")  # doctest: +SKIP
        >>> labels.rim_px, labels.frames[:3]  # doctest: +SKIP
        (10.2, [2, 5, 6])
    """

    tracks = None  # per-frame ids: no lineage

    def __init__(self, outlines: str | os.PathLike, markers: str | os.PathLike, rim_quantile: float = 90) -> None:
        self.outlines = FrameFolder(outlines, SEG if Path(outlines).name == "SEG" else None)
        self.markers = LabelFolder(markers)
        self.folder = self.outlines.folder
        self.kind = self.outlines.kind
        self.paths = {f: p for f, p in self.outlines.paths.items() if f in self.markers.paths}
        self.frames = list(self.paths)
        if not self.frames:
            raise CTCFormatError(f"{self.outlines.folder} and {self.markers.folder} share no frame")
        rims = np.concatenate([marker_rim(self.outlines.read(f), self.markers.read(f)) for f in self.frames])
        if rims.size == 0:
            raise CTCFormatError(f"no outline of {self.outlines.folder} overlaps a marker of {self.markers.folder}")
        self.rims, self.rim_quantile = rims, float(rim_quantile)
        self.rim_px = float(max(np.percentile(rims, rim_quantile), 0.0))
        self._outlined: dict[int, int] = {}

    @property
    def shape(self) -> tuple[int, ...]:
        return self.outlines.shape

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.int32)

    def __len__(self) -> int:
        return len(self.frames)

    def read(self, frame: int) -> np.ndarray:
        """Outlined cells ``1..n``, then the grown markers of the cells left without an outline."""
        if frame not in self.paths:
            raise CTCFormatError(f"{self.outlines.folder}: frame {frame} has no outline and marker frame")
        outlined, markers = self.outlines.read(frame), self.markers.read(frame)
        ids, inverse = np.unique(outlined, return_inverse=True)
        labels = inverse.reshape(outlined.shape).astype(np.int32)
        if ids[0] != 0:
            labels += 1
        n = int(labels.max())
        covered = np.unique(markers[(labels > 0) & (markers > 0)])
        others = np.where(np.isin(markers, covered) | (labels > 0), 0, markers)
        kept, inverse = np.unique(others, return_inverse=True)
        others = inverse.reshape(markers.shape).astype(np.int32)
        others = grow_labels(others, self.rim_px)
        labels = np.where((labels == 0) & (others > 0), others + n, labels)
        self._outlined[frame] = n
        return labels

    def last_outlined(self, frame: int) -> int:
        """The highest label of ``frame`` that is an outline (labels above it are grown markers)."""
        if frame not in self._outlined:
            self.read(frame)
        return self._outlined[frame]

    def read_all(self, progress: bool = False) -> np.ndarray:
        return np.stack([self.read(f) for f in self.frames])

    def __repr__(self) -> str:
        return (f"OutlinedLabels({str(self.outlines.folder)!r}, {str(self.markers.folder)!r}, "
                f"frames={len(self.frames)}, rim_px={self.rim_px:.1f})")


def with_outlines(seq: CTCSequence, outlines: str | os.PathLike) -> CTCSequence:
    """``seq`` with its labels (the markers) completed by the sparse segmentation in ``outlines``.

    Example:
        >>> seq = with_outlines(open_sequence("GOWT1", "02"), "GOWT1/02_GT/SEG")  # doctest: +SKIP
        >>> seq.labels.frames == seq.labels.outlines.frames  # only frames with outlines  # doctest: +SKIP
        True
    """
    if seq.labels is None:
        raise CTCFormatError(f"{seq.name}: opened without labels; the outlines complete a marker annotation (TRA)")
    return replace(seq, labels=OutlinedLabels(outlines, seq.labels.folder))


__all__ = ["OutlinedLabels", "grow_labels", "marker_rim", "with_outlines"]
