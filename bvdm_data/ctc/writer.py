"""Write clips as CTC folders: a sequence with its GT, or a result folder.

Each folder is built under a temporary name and swapped in whole, so an
interrupted write never leaves a half-written sequence.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
import torch

from bvdm_data.atomic_io import atomic_folder
from bvdm_data.clip import check_clip
from bvdm_data.ctc.naming import IMAGES, RES, SEG, TRA, FrameKind, frame_digits
from bvdm_data.ctc.tracks import write_track_file


def _label_dtype(masks: np.ndarray) -> type:
    return np.uint16 if int(masks.max(initial=0)) <= np.iinfo(np.uint16).max else np.uint32


def video_to_counts(video: torch.Tensor | np.ndarray, intensity_range: tuple[float, float] | None = None,
                    dtype: str | np.dtype = "uint16") -> np.ndarray:
    """``[T, 1, H, W]`` floats in 0..1 -> ``[T, H, W]`` integer frames of ``dtype``.

    With ``intensity_range`` (the real data's ``(lo, hi)`` counts that 0..1
    stands for, a bundle's ``texture.intensity_range``) frames come out in
    the data's own units and band; without it, 0..1 spans the dtype's range.

    Example:
        >>> video_to_counts(np.array([[[[0.0, 0.5, 1.0]]]]), (30.0, 50.0), "uint8").tolist()
        [[[30, 40, 50]]]
    """
    array = video.detach().cpu().numpy() if isinstance(video, torch.Tensor) else np.asarray(video)
    info = np.iinfo(np.dtype(dtype))
    lo, hi = intensity_range if intensity_range is not None else (0.0, float(info.max))
    counts = lo + np.clip(array[:, 0], 0.0, 1.0) * (hi - lo)
    return np.clip(np.round(counts), info.min, info.max).astype(dtype)


def _write_frames(folder: Path, kind: FrameKind, frames: np.ndarray) -> None:
    digits = frame_digits(len(frames))
    for t, frame in enumerate(frames):
        tifffile.imwrite(folder / kind.filename(t, digits), frame, compression="zlib")


def write_ctc_result(masks: torch.Tensor | np.ndarray, tracks: torch.Tensor | np.ndarray,
                     folder: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write a label video as a CTC result folder (``maskTTT.tif`` + ``res_track.txt``).

    Example:
        >>> import numpy as np, tempfile, pathlib
        >>> out = pathlib.Path(tempfile.mkdtemp()) / "01_RES"
        >>> m = np.zeros((2, 8, 8), np.int32); m[:, 2:4, 2:4] = 1
        >>> sorted(p.name for p in write_ctc_result(m, np.array([[1, 0, 1, 0]]), out).iterdir())
        ['mask000.tif', 'mask001.tif', 'res_track.txt']
    """
    masks = np.asarray(masks.cpu() if isinstance(masks, torch.Tensor) else masks)
    tracks = np.asarray(tracks.cpu() if isinstance(tracks, torch.Tensor) else tracks)
    with atomic_folder(folder, overwrite) as tmp:
        _write_frames(tmp, RES, masks.astype(_label_dtype(masks)))
        write_track_file(tmp / RES.track_file, tracks)
    return Path(folder)


def write_ctc_sequence(clip: Mapping[str, Any], root: str | os.PathLike, seq: str = "01",
                       overwrite: bool = False, intensity_range: tuple[float, float] | None = None,
                       dtype: str | np.dtype = "uint16") -> Path:
    """Write a clip as CTC sequence ``root/seq`` with full GT in ``root/seq_GT``.

    Frames become ``dtype`` ``tTTT.tif`` (:func:`video_to_counts`: in the real
    data's band with ``intensity_range``, else 0..1 over the dtype's range); the GT holds
    ``TRA/man_trackTTT.tif`` + ``TRA/man_track.txt`` and, since a synthetic
    clip is fully annotated, ``SEG/man_segTTT.tif`` for every frame. The clip
    is checked against the contract first. Returns ``root/seq``.
    """
    check_clip(clip)
    root = Path(root)
    masks = clip["masks"].cpu().numpy()
    labels = masks.astype(_label_dtype(masks))
    with atomic_folder(root / seq, overwrite) as images_dir, \
            atomic_folder(root / f"{seq}_GT", overwrite) as gt_dir:
        _write_frames(images_dir, IMAGES, video_to_counts(clip["video"], intensity_range, dtype))
        (gt_dir / "TRA").mkdir()
        (gt_dir / "SEG").mkdir()
        _write_frames(gt_dir / "TRA", TRA, labels)
        write_track_file(gt_dir / "TRA" / TRA.track_file, clip["tracks"].cpu().numpy())
        _write_frames(gt_dir / "SEG", SEG, labels)
    return root / seq
