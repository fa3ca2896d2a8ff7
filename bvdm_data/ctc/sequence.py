"""Lazy, per-frame access to CTC sequences, ground truth and results.

Nothing is read until a frame is asked for; the shape and dtype come from the
first file's TIFF header. A 92-frame 1100x700 sequence costs a directory
listing to open.
"""

from __future__ import annotations

import os
import logging
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import tifffile
from tqdm.auto import tqdm

from bvdm_data.ctc.naming import IMAGES, SEG, FrameKind, detect_kind, list_frames
from bvdm_data.ctc.tracks import read_track_file
from bvdm_data.errors import CTCFormatError


class _Collect(logging.Handler):
    """Keeps what tifffile logs while one file is read (it logs, rather than raises, on some damaged files)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def read_tiff(path: Path) -> np.ndarray:
    """Read one TIFF frame, turning any failure into a :class:`CTCFormatError`.

    A file that tifffile only complains about in its log (a header cut short
    reads as an empty array) is refused the same way, and nothing is printed.
    """
    logger = logging.getLogger("tifffile")
    collect, propagate = _Collect(), logger.propagate
    logger.addHandler(collect)
    logger.propagate = False
    try:
        array = tifffile.imread(path)
    except Exception as err:  # tifffile raises many types on corrupt files
        raise CTCFormatError(f"{path}: unreadable TIFF ({type(err).__name__}: {err})") from err
    finally:
        logger.removeHandler(collect)
        logger.propagate = propagate
    if array.size == 0 or collect.messages:
        reason = collect.messages[0] if collect.messages else "no image data"
        raise CTCFormatError(f"{path}: unreadable TIFF ({reason})")
    return array


class FrameFolder:
    """The numbered TIFF frames of one folder, read on demand.

    Example:
        >>> frames = FrameFolder("tests/data/Fluo-N2DL-HeLa/02")
        >>> frames.read(0).shape
        (256, 256)
    """

    def __init__(self, folder: str | os.PathLike, kind: FrameKind | None = None) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise CTCFormatError(f"{self.folder}: no such folder")
        detected = kind or detect_kind(self.folder)
        if detected is None:
            raise CTCFormatError(
                f"{self.folder}: holds no CTC frames (tTTT.tif, man_trackTTT.tif, man_segTTT.tif or maskTTT.tif)"
            )
        self.kind = detected
        self.paths = list_frames(self.folder, self.kind)
        if not self.paths:
            raise CTCFormatError(f"{self.folder}: holds no {self.kind.prefix}TTT.tif frames")
        self.frames = list(self.paths)

    def __len__(self) -> int:
        return len(self.paths)

    @cached_property
    def _header(self) -> tuple[tuple[int, ...], np.dtype]:
        first = self.paths[self.frames[0]]
        try:
            with tifffile.TiffFile(first) as tif:
                series = tif.series[0]
                return tuple(series.shape), np.dtype(series.dtype)
        except Exception as err:
            raise CTCFormatError(f"{first}: unreadable TIFF ({type(err).__name__}: {err})") from err

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of one frame, from the first file's header."""
        return self._header[0]

    @property
    def dtype(self) -> np.dtype:
        """Pixel type of the frames, from the first file's header."""
        return self._header[1]

    def read_all(self, progress: bool = False) -> np.ndarray:
        """Every frame, stacked to ``[T, H, W]`` in frame order."""
        frames = tqdm(self.frames, desc=f"read {self.folder.name}", disable=not progress, leave=False)
        return np.stack([self.read(f) for f in frames])

    def read(self, frame: int) -> np.ndarray:
        """The frame numbered ``frame`` (its number in the file name)."""
        if frame not in self.paths:
            raise CTCFormatError(f"{self.folder}: has no frame {frame} ({self.kind.prefix}{frame:03d}.tif)")
        return read_tiff(self.paths[frame])


class LabelFolder(FrameFolder):
    """Label frames with their lineage file (a CTC ``TRA`` or ``RES`` folder).

    ``tracks`` is ``None`` when the folder has no lineage file (for example a
    per-frame segmentation such as ``ERR_SEG``).
    """

    def __init__(self, folder: str | os.PathLike, kind: FrameKind | None = None) -> None:
        super().__init__(folder, kind)
        if not np.issubdtype(self.dtype, np.integer):
            raise CTCFormatError(f"{self.paths[self.frames[0]]}: labels must be integers, got {self.dtype}")
        track_name = self.kind.track_file
        track_path = self.folder / track_name if track_name else None
        self.track_path = track_path if track_path is not None and track_path.is_file() else None
        self.tracks = read_track_file(self.track_path) if self.track_path else None

    @property
    def parents(self) -> dict[int, int]:
        """Label -> parent label (0 = none); empty without a lineage file."""
        if self.tracks is None:
            return {}
        return {int(l): int(p) for l, _, _, p in self.tracks}


@dataclass
class CTCSequence:
    """One CTC sequence: raw frames and, where present, labels and sparse SEG."""

    images: FrameFolder
    labels: LabelFolder | None = None
    seg: FrameFolder | None = None
    name: str = ""

    def __len__(self) -> int:
        return len(self.images)


def label_folder(root: Path, seq: str, labels: str) -> Path:
    """Where the labels named ``labels`` of sequence ``seq`` live.

    ``"GT"`` is ``NN_GT/TRA``; any other name ``X`` is ``NN_X``, or its ``TRA``
    (else ``SEG``) subfolder when it has one (``"ST"`` -> ``NN_ST/SEG``).
    """
    base = root / f"{seq}_{labels}"
    for sub in ("TRA", "SEG"):
        if (base / sub).is_dir():
            return base / sub
    return base


def open_sequence(root: str | os.PathLike, seq: str = "01", labels: str | None = "GT") -> CTCSequence:
    """Open sequence ``seq`` of the CTC dataset folder ``root``.

    Example:
        >>> s = open_sequence("tests/data/Fluo-N2DL-HeLa", "02", labels="ERR_SEG")
        >>> len(s), s.labels.tracks is None
        (4, True)
    """
    root = Path(root)
    if not root.is_dir():
        raise CTCFormatError(f"{root}: no such dataset folder")
    images = FrameFolder(root / seq, IMAGES)
    label_frames = None
    if labels is not None:
        folder = label_folder(root, seq, labels)
        if not folder.is_dir():
            known = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name.startswith(f"{seq}_"))
            raise CTCFormatError(f"{folder}: no such label folder; {root} has {known or 'no label folders'}")
        label_frames = LabelFolder(folder)
    seg_dir = root / f"{seq}_GT" / "SEG"
    seg = FrameFolder(seg_dir, SEG) if seg_dir.is_dir() and detect_kind(seg_dir) is SEG else None
    return CTCSequence(images=images, labels=label_frames, seg=seg, name=f"{root.name}/{seq}")


__all__ = ["FrameFolder", "LabelFolder", "CTCSequence", "open_sequence", "label_folder", "read_tiff"]
