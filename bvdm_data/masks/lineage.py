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


def _cycles(tracks: np.ndarray) -> list[tuple[int, int, bool]]:
    """Per cell born by division: ``(label its cycle ends on, length in frames, divided)``."""
    tracks = np.asarray(tracks, dtype=np.int64).reshape(-1, 4)
    dividers, born = lineage_roles(tracks)
    children: dict[int, list[int]] = {}
    for l, _, _, p in tracks.tolist():
        if p:
            children.setdefault(p, []).append(l)
    span = {l: (b, e) for l, b, e, _ in tracks.tolist()}
    cycles = []
    for label in sorted(born):
        start = span[label][0]
        while len(children.get(label, [])) == 1:
            label = children[label][0]
        cycles.append((label, span[label][1] - start + 1, label in dividers))
    return cycles


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
    cycles = _cycles(tracks)
    return (np.asarray([n for _, n, _ in cycles], dtype=float), np.asarray([d for _, _, d in cycles], dtype=bool))


def is_short_cycle(length, divided, min_cycle: int):
    """Whether a cycle (scalars or arrays, as :func:`cell_cycles` gives them) ended in a division fewer than
    ``min_cycle`` frames after its birth: a split of one nucleus (a tracking artefact), not a division."""
    return divided & (length < min_cycle)


def short_cycle_mothers(tracks: np.ndarray, min_cycle: int) -> set[int]:
    """Labels that divide fewer than ``min_cycle`` frames after their own birth by division (a cycle, as in
    :func:`cell_cycles`, through single-child continuations): splits of one nucleus, not divisions.

    Example:
        >>> rows = np.array([[1, 0, 5, 0], [2, 6, 7, 1], [3, 6, 9, 1], [4, 8, 9, 2], [5, 8, 9, 2],
        ...                  [6, 10, 11, 3], [7, 12, 13, 6], [8, 14, 15, 7], [9, 14, 15, 7]])
        >>> sorted(short_cycle_mothers(rows, 4))  # 2 divides 2 frames after birth; 3 -> 6 -> 7 divides after 8
        [2]
    """
    return {label for label, length, divided in _cycles(tracks) if is_short_cycle(length, divided, min_cycle)}
