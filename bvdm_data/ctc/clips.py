"""``CTCClips``: real CTC sequences as contract clips."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from bvdm_data.clip import Clip, relabel_per_frame, relabel_tracks
from bvdm_data.ctc.sequence import CTCSequence, open_sequence
from bvdm_data.errors import CTCFormatError

MODES = ("sequential", "random")


@dataclass(frozen=True)
class Window:
    """Where a clip comes from: sequence, first frame (position in the sequence) and crop corner."""

    seq: int
    start: int
    y: int
    x: int


def _grid(extent: int, size: int) -> list[int]:
    """Crop corners that tile ``extent`` with crops of ``size``; the last one is flush with the edge."""
    corners = list(range(0, extent - size + 1, size))
    if corners[-1] != extent - size:
        corners.append(extent - size)
    return corners


def intensity_range(seq: CTCSequence, percentiles: tuple[float, float], max_frames: int = 8,
                    frames: Sequence[int] | None = None) -> tuple[float, float]:
    """Low/high intensity of a sequence at the given percentiles, from up to ``max_frames`` evenly spaced frames
    (of ``frames`` when given)."""
    frames = list(seq.images.frames if frames is None else frames)
    picks = np.unique(np.linspace(0, len(frames) - 1, min(max_frames, len(frames))).round().astype(int))
    sample = np.stack([seq.images.read(frames[i]).astype(np.float32) for i in picks])
    lo, hi = np.percentile(sample, percentiles)
    if not hi > lo:
        raise CTCFormatError(f"{seq.images.folder}: frames are constant ({lo}); cannot normalise intensities")
    return float(lo), float(hi)


def to_unit(raw: np.ndarray, intensity_range: tuple[float, float], dtype: type = np.float32) -> np.ndarray:
    """Raw counts -> 0..1 by an :func:`intensity_range`, clipped: how every part reads real frames.

    Example:
        >>> to_unit(np.array([10, 20, 40]), (20.0, 30.0)).tolist()
        [0.0, 0.0, 1.0]
    """
    lo, hi = intensity_range
    return np.clip((np.asarray(raw, dtype=dtype) - lo) / (hi - lo), 0.0, 1.0)


class CTCClips(Dataset):
    """Windows of ``clip_len`` frames and ``size`` crops of real CTC sequences, as contract clips.

    Args:
        root: a CTC dataset folder (holding ``01``, ``01_GT`` ...).
        sequences: sequence names inside ``root``.
        labels: which annotation to use: ``"GT"`` (``NN_GT/TRA``), ``"RES"``,
            ``"ERR_SEG"``, ``"ST"`` ... (folder ``NN_<labels>``).
        clip_len: frames per clip.
        size: ``(H, W)`` of the crop; ``None`` keeps the full frame.
        mode: ``"sequential"`` tiles every sequence with windows (``stride``
            frames apart, default ``clip_len``) and non-overlapping crops;
            ``"random"`` draws ``num_clips`` windows and crops, clip ``k`` a pure
            function of ``(seed, epoch, k)``.
        per_frame_ids: treat each frame's labels as independent one-frame
            tracks (for segmentations without lineage, such as ``ERR_SEG``).
        percentiles: intensities at these percentiles of each sequence map to 0 and 1.
        frames: use only these consecutive frame numbers of every sequence (e.g.
            ``range(0, 11)`` to keep later frames for testing); default all.
        transform: called on each clip before it is returned.

    Tracks are relabelled per clip: a track cut by the window or crop is
    truncated, a child whose parent lies outside the clip gets parent 0.

    Example:
        >>> ds = CTCClips("tests/data/Fluo-N2DL-HeLa", ["02"], labels="ERR_SEG",
        ...               clip_len=2, size=(64, 64), per_frame_ids=True)
        >>> ds[0]["video"].shape
        torch.Size([2, 1, 64, 64])
    """

    def __init__(
        self,
        root: str | os.PathLike,
        sequences: Sequence[str] = ("01",),
        labels: str = "GT",
        clip_len: int = 8,
        size: tuple[int, int] | None = None,
        mode: str = "sequential",
        num_clips: int | None = None,
        stride: int | None = None,
        per_frame_ids: bool = False,
        percentiles: tuple[float, float] = (1.0, 99.9),
        seed: int = 0,
        transform: Callable[[Clip], Any] | None = None,
        frames: Sequence[int] | None = None,
    ) -> None:
        if isinstance(sequences, str):
            sequences = [sequences]
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if clip_len < 1:
            raise ValueError(f"clip_len must be at least 1, got {clip_len}")
        if not 0 <= percentiles[0] < percentiles[1] <= 100:
            raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100, got {percentiles}")
        if mode == "random" and (num_clips is None or num_clips < 1):
            raise ValueError("mode='random' needs num_clips >= 1")
        self.sequences = [open_sequence(root, s, labels) for s in sequences]
        for seq in self.sequences:
            assert seq.labels is not None
            if seq.labels.tracks is None and not per_frame_ids:
                raise CTCFormatError(
                    f"{seq.labels.folder}: has no lineage file, so its ids are not track ids; "
                    "pass per_frame_ids=True to treat each frame's labels as one-frame tracks"
                )
            missing = sorted(set(self._frames_of(seq, frames)) - set(seq.labels.frames))
            if missing:
                raise CTCFormatError(f"{seq.labels.folder}: no label frame for image frames {missing[:8]}")
            if len(self._frames_of(seq, frames)) < clip_len:
                raise ValueError(f"{seq.images.folder}: {len(self._frames_of(seq, frames))} frames, "
                                 f"fewer than clip_len={clip_len}")
            frame_shape = seq.images.shape
            if size is not None and (size[0] > frame_shape[0] or size[1] > frame_shape[1]):
                raise ValueError(f"size {tuple(size)} is larger than the frames {frame_shape} of {seq.images.folder}")
        self.clip_len = clip_len
        self.size = tuple(size) if size is not None else None
        self.mode = mode
        self.num_clips = num_clips
        self.stride = stride or clip_len
        self.per_frame_ids = per_frame_ids
        self.percentiles = tuple(percentiles)
        self.seed = seed
        self.epoch = 0
        self.transform = transform
        self.frames = [self._frames_of(s, frames) for s in self.sequences]
        self.ranges = [intensity_range(s, self.percentiles, frames=f) for s, f in zip(self.sequences, self.frames)]
        self._windows = self._tile() if mode == "sequential" else []

    @staticmethod
    def _frames_of(seq: CTCSequence, frames: Sequence[int] | None) -> list[int]:
        if frames is None:
            return list(seq.images.frames)
        chosen = sorted(int(f) for f in frames)
        if not chosen or chosen != list(range(chosen[0], chosen[0] + len(chosen))):
            raise ValueError(f"frames must be consecutive frame numbers, got {list(frames)[:8]}")
        absent = sorted(set(chosen) - set(seq.images.frames))
        if absent:
            raise CTCFormatError(f"{seq.images.folder}: no image for frames {absent[:8]}")
        return chosen

    def _crop_size(self, seq: CTCSequence) -> tuple[int, int]:
        h, w = seq.images.shape[:2]
        return self.size if self.size is not None else (h, w)

    def _tile(self) -> list[Window]:
        windows = []
        for k, seq in enumerate(self.sequences):
            h, w = seq.images.shape[:2]
            ch, cw = self._crop_size(seq)
            for start in range(0, len(self.frames[k]) - self.clip_len + 1, self.stride):
                windows += [Window(k, start, y, x) for y in _grid(h, ch) for x in _grid(w, cw)]
        return windows

    def set_epoch(self, epoch: int) -> None:
        """Draw other random windows in each epoch (``mode='random'``)."""
        self.epoch = int(epoch)

    def __repr__(self) -> str:
        names = [s.name for s in self.sequences]
        return (f"CTCClips(sequences={names}, clip_len={self.clip_len}, size={self.size}, mode={self.mode!r}, "
                f"{len(self)} clips)")

    def __len__(self) -> int:
        return len(self._windows) if self.mode == "sequential" else int(self.num_clips)

    def window(self, index: int) -> Window:
        """The window and crop of clip ``index``."""
        if not 0 <= index < len(self):
            raise IndexError(f"clip index {index} out of range for {len(self)} clips")
        if self.mode == "sequential":
            return self._windows[index]
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, self.epoch, index]))
        starts = np.array([len(f) - self.clip_len + 1 for f in self.frames], dtype=float)
        k = int(rng.choice(len(self.sequences), p=starts / starts.sum()))
        seq = self.sequences[k]
        h, w = seq.images.shape[:2]
        ch, cw = self._crop_size(seq)
        return Window(k, int(rng.integers(starts[k])), int(rng.integers(h - ch + 1)), int(rng.integers(w - cw + 1)))

    def __getitem__(self, index: int) -> Any:
        win = self.window(index)
        seq = self.sequences[win.seq]
        ch, cw = self._crop_size(seq)
        frames = self.frames[win.seq][win.start : win.start + self.clip_len]
        crop = (slice(win.y, win.y + ch), slice(win.x, win.x + cw))
        raw = np.stack([seq.images.read(f)[crop] for f in frames]).astype(np.float32)
        labels = np.stack([seq.labels.read(f)[crop] for f in frames]).astype(np.int64)
        video = to_unit(raw, self.ranges[win.seq])
        if self.per_frame_ids:
            masks, tracks = relabel_per_frame(labels)
        else:
            masks, tracks = relabel_tracks(labels, seq.labels.parents)
        clip: Clip = {
            "video": torch.from_numpy(video[:, None]),
            "masks": torch.from_numpy(masks),
            "tracks": torch.from_numpy(tracks),
            "meta": {
                "source": "ctc",
                "sequence": seq.name,
                "index": int(index),
                "epoch": self.epoch,
                "seed": self.seed,
                "start_frame": int(frames[0]),
                "y": win.y,
                "x": win.x,
                "mode": self.mode,
            },
        }
        return self.transform(clip) if self.transform is not None else clip
