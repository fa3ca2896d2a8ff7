"""File naming of the Cell Tracking Challenge format.

A sequence folder ``NN`` holds ``tTTT.tif``; its ground truth ``NN_GT`` holds
``TRA/man_trackTTT.tif`` with ``TRA/man_track.txt`` and the sparse
``SEG/man_segTTT.tif``; a result folder ``NN_RES`` holds ``maskTTT.tif`` with
``res_track.txt``. Frame numbers have three digits, four for 1000+ frames.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from bvdm_data.errors import CTCFormatError


@dataclass(frozen=True)
class FrameKind:
    """One kind of numbered frame file and the lineage file that goes with it."""

    name: str
    prefix: str
    track_file: str | None

    @property
    def pattern(self) -> re.Pattern[str]:
        return re.compile(rf"^{self.prefix}(\d{{3,4}})\.tiff?$")

    def filename(self, frame: int, digits: int) -> str:
        return f"{self.prefix}{frame:0{digits}d}.tif"


IMAGES = FrameKind("images", "t", None)
TRA = FrameKind("tra", "man_track", "man_track.txt")
SEG = FrameKind("seg", "man_seg", None)
RES = FrameKind("res", "mask", "res_track.txt")
KINDS = (IMAGES, TRA, SEG, RES)


def frame_digits(num_frames: int) -> int:
    """Digits of the frame number in file names: 3, or 4 from 1001 frames on."""
    return 3 if num_frames <= 1000 else 4


def list_frames(folder: Path, kind: FrameKind) -> dict[int, Path]:
    """Frame number -> file of ``kind`` in ``folder``, sorted by frame.

    Raises :class:`CTCFormatError` when two files claim the same frame.
    """
    frames: dict[int, Path] = {}
    for path in sorted(Path(folder).iterdir()):
        match = kind.pattern.match(path.name)
        if not match:
            continue
        frame = int(match.group(1))
        if frame in frames:
            raise CTCFormatError(f"{path}: frame {frame} is also named by {frames[frame].name}")
        frames[frame] = path
    return dict(sorted(frames.items()))


def detect_kind(folder: Path) -> FrameKind | None:
    """The kind of frame files ``folder`` holds, or None if it holds none."""
    if not Path(folder).is_dir():
        return None
    names = [p.name for p in Path(folder).iterdir()]
    for kind in KINDS:
        if any(kind.pattern.match(n) for n in names):
            return kind
    return None
