"""The CTC lineage file: one ``L B E P`` line per track.

``L`` is the label, ``B``/``E`` the first and last frame, ``P`` the parent's
label or 0.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from bvdm_data.atomic_io import atomic_file
from bvdm_data.errors import CTCFormatError


def parse_track_lines(text: str) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """Parse lineage text into an ``int64 [N, 4]`` array.

    Returns the rows that parsed and a list of ``(line number, reason)`` for
    those that did not, so a validator can report every bad line at once.
    """
    rows: list[list[int]] = []
    bad: list[tuple[int, str]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 4:
            bad.append((number, f"expected 4 integers 'L B E P', got {len(fields)} fields: {line.strip()!r}"))
            continue
        try:
            row = [int(f) for f in fields]
        except ValueError:
            bad.append((number, f"not an integer in {line.strip()!r}"))
            continue
        if min(row) < 0:
            bad.append((number, f"negative value in {line.strip()!r}"))
            continue
        rows.append(row)
    return np.asarray(rows, dtype=np.int64).reshape(-1, 4), bad


def read_track_file(path: str | os.PathLike) -> np.ndarray:
    """Read a ``man_track.txt`` / ``res_track.txt`` file.

    Raises :class:`CTCFormatError` naming the file and line of the first bad line.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "res_track.txt"
        >>> _ = p.write_text("1 0 4 0\\n2 5 9 1\\n")
        >>> read_track_file(p).tolist()
        [[1, 0, 4, 0], [2, 5, 9, 1]]
    """
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise CTCFormatError(f"{path}: cannot read lineage file ({err})") from err
    rows, bad = parse_track_lines(text)
    if bad:
        number, reason = bad[0]
        raise CTCFormatError(f"{path}: line {number}: {reason}")
    return rows


def write_track_file(path: str | os.PathLike, tracks: np.ndarray) -> None:
    """Write lineage rows ``(L, B, E, P)`` atomically, sorted by label."""
    tracks = np.asarray(tracks, dtype=np.int64).reshape(-1, 4)
    tracks = tracks[np.argsort(tracks[:, 0], kind="stable")]
    text = "".join(f"{l} {b} {e} {p}\n" for l, b, e, p in tracks.tolist())
    with atomic_file(path) as tmp:
        tmp.write_text(text)
