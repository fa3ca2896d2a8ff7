"""Reading cell cycles out of CTC lineage rows ``(label, begin, end, parent)``.

In the CTC format a parent with two or more children divided; a parent with
one child is the same cell continuing under a new label after a gap (it left
the view, or the tracker lost it). A cell cycle therefore runs from a birth
by division along such single-child links to a division, or is cut short.
"""

from __future__ import annotations

import numpy as np


def lineage_roles(tracks: np.ndarray) -> tuple[set[int], set[int]]:
    """Ids of tracks that divide (two or more children) and of tracks born by division."""
    tracks = np.asarray(tracks, dtype=np.int64).reshape(-1, 4)
    parents, counts = np.unique(tracks[tracks[:, 3] > 0, 3], return_counts=True)
    dividers = {int(p) for p in parents[counts >= 2]}
    born = {int(l) for l, _, _, p in tracks.tolist() if p in dividers}
    return dividers, born


def cell_cycles(tracks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Observed cycles of cells born by division: ``(lengths in frames, divided)``.

    A cycle starts at a birth, follows single-child continuations and ends at
    a division (``divided=True``) or where the chain stops (``False``:
    censored, its true length is longer).

    Example:
        >>> rows = np.array([[1, 0, 3, 0], [2, 4, 9, 1], [3, 4, 6, 1], [4, 8, 12, 3],
        ...                  [5, 10, 12, 2], [6, 10, 12, 2]])
        >>> cell_cycles(rows)
        (array([6., 9., 3., 3.]), array([ True, False, False, False]))
    """
    tracks = np.asarray(tracks, dtype=np.int64).reshape(-1, 4)
    dividers, born = lineage_roles(tracks)
    children: dict[int, list[int]] = {}
    for l, _, _, p in tracks.tolist():
        if p:
            children.setdefault(p, []).append(l)
    span = {l: (b, e) for l, b, e, _ in tracks.tolist()}
    lengths, divided = [], []
    for label in sorted(born):
        start = span[label][0]
        while len(children.get(label, [])) == 1:
            label = children[label][0]
        lengths.append(span[label][1] - start + 1)
        divided.append(label in dividers)
    return np.asarray(lengths, dtype=float), np.asarray(divided, dtype=bool)
