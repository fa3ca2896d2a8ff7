"""The one data contract: a clip.

Every source in bvdm-data (synthetic stream, LMDB cache, real CTC data) yields
the same dict:

========  ===============================  =========================================
key       type                             meaning
========  ===============================  =========================================
video     float32 ``[T, 1, H, W]``, 0..1   the frames
masks     int32 ``[T, H, W]``              0 = background, else the cell's track id
tracks    int64 ``[N, 4]``                 ``(id, first, last, parent or 0)`` rows,
                                           frames relative to the clip
meta      dict of str/int/float/bool       source, seed, index, parameters
========  ===============================  =========================================

Invariants (checked by :func:`check_clip`): ids are unique and positive; every
id in ``masks`` has a row in ``tracks`` and vice versa; a track is present in
every frame from its first to its last and in no other; a parent is a known
track that ends before its child starts.

:func:`relabel_tracks` turns any window or crop of a labelled video into
labels that satisfy those rules, and :func:`collate_clips` batches clips.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypedDict

import numpy as np
import torch

from bvdm_data.errors import ClipError

__all__ = [
    "Clip",
    "cell_frames",
    "check_clip",
    "collate_clips",
    "relabel_tracks",
    "relabel_per_frame",
    "restore_contract",
    "track_presence",
    "tracks_from_masks",
]

CLIP_KEYS = ("video", "masks", "tracks", "meta")
META_VALUE_TYPES = (str, int, float, bool)


class Clip(TypedDict):
    """A clip as yielded by every dataset in bvdm-data."""

    video: torch.Tensor
    masks: torch.Tensor
    tracks: torch.Tensor
    meta: dict[str, Any]


def _fail(rule: str, detail: str) -> None:
    raise ClipError(f"clip violates rule '{rule}': {detail}")


def track_presence(masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Which ids occur in which frames.

    Returns ``(ids, present)``: the sorted non-zero ids of ``masks`` (shape
    ``[T, H, W]``) and a bool matrix ``present[t, k]`` telling whether
    ``ids[k]`` occurs in frame ``t``. One ``np.bincount`` per frame (or one
    ``np.unique`` over the video for sparse or negative ids), no per-pixel Python.
    """
    masks = np.asarray(masks)
    num_frames = masks.shape[0]
    flat = masks.reshape(num_frames, -1)
    top = int(flat.max()) if flat.size else 0
    if flat.size and int(flat.min()) >= 0 and top <= 4 * flat.shape[1]:
        # Dense ids (the usual case): one bincount per frame, linear in the pixels.
        present = np.stack([np.bincount(f.astype(np.intp, copy=False), minlength=top + 1) > 0 for f in flat])
        ids = np.flatnonzero(present[:, 1:].any(0)) + 1
        return ids.astype(flat.dtype), present[:, ids]
    uniq, inverse = np.unique(flat, return_inverse=True)
    inverse = inverse.reshape(num_frames, -1)
    present = np.zeros((num_frames, uniq.size), dtype=bool)
    present[np.arange(num_frames)[:, None], inverse] = True
    keep = uniq != 0
    return uniq[keep], present[:, keep]


def tracks_from_masks(masks: np.ndarray) -> np.ndarray:
    """Lineage rows ``(id, first, last, 0)`` read off a label video whose ids are track ids.

    Example:
        >>> tracks_from_masks(np.array([[[0, 2]], [[5, 2]]])).tolist()
        [[2, 0, 1, 0], [5, 1, 1, 0]]
    """
    ids, present = track_presence(masks)
    first = present.argmax(0)
    last = present.shape[0] - 1 - present[::-1].argmax(0)
    return np.stack([ids, first, last, np.zeros_like(ids)], 1).astype(np.int64)


def check_clip(clip: Mapping[str, Any]) -> None:
    """Raise :class:`~bvdm_data.errors.ClipError` unless ``clip`` meets the contract.

    The message names the violated rule and the offending id or frame.

    Example:
        >>> import torch
        >>> clip = {"video": torch.zeros(2, 1, 4, 4), "masks": torch.zeros(2, 4, 4, dtype=torch.int32),
        ...         "tracks": torch.zeros(0, 4, dtype=torch.int64), "meta": {"source": "doc"}}
        >>> check_clip(clip)
    """
    if not isinstance(clip, Mapping):
        _fail("clip is a dict", f"got {type(clip).__name__}")
    missing = [k for k in CLIP_KEYS if k not in clip]
    if missing:
        _fail("keys", f"missing {missing}; a clip has keys {list(CLIP_KEYS)}")
    video, masks, tracks, meta = (clip[k] for k in CLIP_KEYS)
    for key, value in (("video", video), ("masks", masks), ("tracks", tracks)):
        if not isinstance(value, torch.Tensor):
            _fail("types", f"'{key}' must be a torch.Tensor, got {type(value).__name__}")

    if video.dtype != torch.float32:
        _fail("video dtype", f"video must be float32, got {video.dtype}")
    if video.ndim != 4 or video.shape[1] != 1:
        _fail("video shape", f"video must be [T, 1, H, W], got {list(video.shape)}")
    if masks.dtype != torch.int32:
        _fail("masks dtype", f"masks must be int32, got {masks.dtype}")
    if masks.ndim != 3:
        _fail("masks shape", f"masks must be [T, H, W], got {list(masks.shape)}")
    if tuple(masks.shape) != (video.shape[0], *video.shape[2:]):
        _fail(
            "video and masks agree",
            f"video {list(video.shape)} and masks {list(masks.shape)} differ in T, H or W",
        )
    if video.shape[0] < 1:
        _fail("video shape", "a clip has at least one frame")
    if video.shape[2] < 1 or video.shape[3] < 1:
        _fail("video shape", f"frames must have at least one pixel, got {video.shape[2]}x{video.shape[3]}")
    if not bool(torch.isfinite(video).all()):
        _fail("video range", "video holds NaN or infinite values")
    if video.numel() and (float(video.min()) < 0.0 or float(video.max()) > 1.0):
        _fail("video range", f"video values must lie in [0, 1], got [{float(video.min()):.4g}, {float(video.max()):.4g}]")
    if tracks.dtype != torch.int64:
        _fail("tracks dtype", f"tracks must be int64, got {tracks.dtype}")
    if tracks.ndim != 2 or tracks.shape[1] != 4:
        _fail("tracks shape", f"tracks must be [N, 4], got {list(tracks.shape)}")
    if not isinstance(meta, Mapping):
        _fail("meta", f"meta must be a dict, got {type(meta).__name__}")
    for key, value in meta.items():
        if not isinstance(key, str) or not isinstance(value, META_VALUE_TYPES):
            _fail("meta", f"meta maps str to str/int/float/bool; entry {key!r}: {type(value).__name__}")
    _check_lineage(masks.detach().cpu().numpy(), tracks.detach().cpu().numpy())


def _check_lineage(masks: np.ndarray, tracks: np.ndarray) -> None:
    num_frames = masks.shape[0]
    if masks.size and int(masks.min()) < 0:
        _fail("ids positive", f"masks hold negative value {int(masks.min())}")
    ids, first, last, parent = (tracks[:, i] for i in range(4))
    if (ids <= 0).any():
        _fail("ids positive", f"track id {int(ids[ids <= 0][0])} is not positive")
    uniq, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        _fail("ids unique", f"track id {int(uniq[counts > 1][0])} has {int(counts.max())} rows")
    bad = (first < 0) | (last >= num_frames) | (first > last)
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        _fail(
            "track span",
            f"track {int(ids[k])} spans frames {int(first[k])}..{int(last[k])}, "
            f"outside 0..{num_frames - 1} or reversed",
        )
    row_of = {int(i): k for k, i in enumerate(ids)}
    for k, p in enumerate(parent):
        p = int(p)
        if p == 0:
            continue
        if p not in row_of:
            _fail("parent known", f"track {int(ids[k])} names parent {p}, which has no row")
        if p == int(ids[k]):
            _fail("parent known", f"track {p} is its own parent")
        if int(first[k]) <= int(last[row_of[p]]):
            _fail(
                "child after parent",
                f"track {int(ids[k])} starts in frame {int(first[k])} but its parent {p} "
                f"lasts until frame {int(last[row_of[p]])}",
            )

    mask_ids, present = track_presence(masks)
    unknown = np.setdiff1d(mask_ids, ids)
    if unknown.size:
        _fail("masks ids have rows", f"id {int(unknown[0])} is in masks but has no row in tracks")
    absent = np.setdiff1d(ids, mask_ids)
    if absent.size:
        _fail("rows have masks", f"track {int(absent[0])} has a row but never appears in masks")
    # Both id sets are equal now, so the sorted rows line up with mask_ids.
    order = np.argsort(ids)
    frames = np.arange(num_frames)[:, None]
    want = (frames >= first[order][None, :]) & (frames <= last[order][None, :])
    wrong = np.argwhere(want != present)
    if wrong.size:
        t, k = (int(v) for v in wrong[0])
        tid = int(mask_ids[k])
        if want[t, k]:
            _fail("present from first to last", f"track {tid} is missing from frame {t} inside its span")
        _fail("present from first to last", f"track {tid} appears in frame {t}, outside its span")


def relabel_tracks(
    masks: np.ndarray, parents: Mapping[int, int] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Relabel a window or crop of a label video so that it meets the contract.

    ``masks`` (``[T, H, W]``) holds the original track ids; ``parents`` maps an
    original id to its original parent (0 or absent = none). A track that
    leaves the crop and returns is split into runs of consecutive frames; each
    run becomes a track, a later run's parent being the run before it (as the
    CTC format encodes gaps). A track's first run keeps its parent when that
    parent appears in the clip (its last run is used); otherwise the parent
    is 0. New ids are ``1..N`` in order of first frame, then original id.

    Returns ``(masks int32, tracks int64 [N, 4])``.

    Example:
        >>> m = np.array([[[5, 0]], [[0, 0]], [[5, 7]]])
        >>> new, tracks = relabel_tracks(m, {7: 5})
        >>> tracks.tolist()
        [[1, 0, 0, 0], [2, 2, 2, 1], [3, 2, 2, 2]]
    """
    masks = np.asarray(masks)
    parents = dict(parents or {})
    num_frames = masks.shape[0]
    old_ids, present = track_presence(masks)
    runs: list[tuple[int, int, int, int]] = []  # (first, old id, last, run index)
    for k, old in enumerate(old_ids):
        frames = np.flatnonzero(present[:, k])
        breaks = np.flatnonzero(np.diff(frames) > 1)
        starts = np.concatenate([[frames[0]], frames[breaks + 1]])
        ends = np.concatenate([frames[breaks], [frames[-1]]])
        for r, (s, e) in enumerate(zip(starts, ends)):
            runs.append((int(s), int(old), int(e), r))
    runs.sort()
    new_id = {(old, r): i + 1 for i, (_, old, _, r) in enumerate(runs)}
    last_run = {}
    for _, old, _, r in runs:
        last_run[old] = max(last_run.get(old, -1), r)

    tracks = np.zeros((len(runs), 4), dtype=np.int64)
    lut = np.zeros((num_frames, old_ids.size + 1), dtype=np.int32)
    col = {int(old): k + 1 for k, old in enumerate(old_ids)}
    for (s, old, e, r) in runs:
        nid = new_id[(old, r)]
        if r > 0:
            parent = new_id[(old, r - 1)]
        else:
            p = int(parents.get(old, 0))
            parent = new_id[(p, last_run[p])] if p in last_run else 0
        tracks[nid - 1] = (nid, s, e, parent)
        lut[s : e + 1, col[old]] = nid
    # Compact the original ids to 1..K so the lookup table stays small.
    compact = np.searchsorted(old_ids, masks) + 1
    compact[masks == 0] = 0
    new_masks = lut[np.arange(num_frames)[:, None, None], compact]
    return new_masks.astype(np.int32), tracks


def relabel_per_frame(masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Treat each frame's labels as independent one-frame tracks with no parent.

    For segmentations whose ids are per frame (no lineage), such as the CTC
    ``ERR_SEG`` or silver-truth folders.

    Example:
        >>> m = np.array([[[3, 3, 0]], [[3, 0, 9]]])
        >>> relabel_per_frame(m)[1].tolist()
        [[1, 0, 0, 0], [2, 1, 1, 0], [3, 1, 1, 0]]
    """
    masks = np.asarray(masks)
    num_frames = masks.shape[0]
    flat = masks.reshape(num_frames, -1).astype(np.int64)
    # A (frame, label) pair becomes one key; np.unique numbers them in frame order.
    width = int(flat.max(initial=0)) + 1
    keys = np.where(flat > 0, np.arange(num_frames)[:, None] * width + flat, -1)
    uniq, inverse = np.unique(keys, return_inverse=True)
    has_bg = uniq.size > 0 and uniq[0] == -1
    new = inverse.reshape(flat.shape) + (0 if has_bg else 1)
    cell_keys = uniq[1:] if has_bg else uniq
    frames = cell_keys // width
    n = cell_keys.size
    tracks = np.stack([np.arange(1, n + 1), frames, frames, np.zeros(n, dtype=np.int64)], axis=1)
    return new.reshape(masks.shape).astype(np.int32), tracks.astype(np.int64)


def cell_frames(tracks: torch.Tensor | np.ndarray) -> int:
    """Annotated cell-frames of a clip: each track row is in view from its first to its last frame.

    Example:
        >>> cell_frames(np.array([[1, 0, 3, 0], [2, 2, 2, 1]]))
        5
    """
    tracks = np.asarray(tracks).reshape(-1, 4)
    return int((tracks[:, 2] - tracks[:, 1] + 1).sum())


def restore_contract(clip: Mapping[str, Any]) -> dict[str, Any]:
    """The clip with ``masks`` and ``tracks`` rebuilt to meet the contract after a spatial transform.

    A crop, rotation or warp (nearest-neighbour on the masks) can take a
    cell out of view in some frames or all of them, but leaves ``tracks``
    rows for it, and :func:`check_clip` then fails. This relabels the masks
    as :func:`relabel_tracks` does, keeping each cell's parent from the old
    rows: cells no longer in view lose their rows, a cell that leaves and
    comes back becomes two tracks (the CTC way), and a parent out of view
    becomes 0. ``video``, ``meta`` and other keys pass through;
    ``tv_tensors.Mask`` masks stay ``Mask``.

    Example:
        >>> clip = {"video": torch.zeros(2, 1, 4, 4), "masks": torch.zeros(2, 4, 4, dtype=torch.int32),
        ...         "tracks": torch.tensor([[1, 0, 1, 0], [2, 1, 1, 1]]), "meta": {}}
        >>> clip["masks"][0, 0, 0] = 1; clip["masks"][1, 3, 3] = 2  # cell 1 has left the view in frame 1
        >>> restore_contract(clip)["tracks"].tolist()
        [[1, 0, 0, 0], [2, 1, 1, 1]]
    """
    masks = clip["masks"]
    parents = {int(r[0]): int(r[3]) for r in torch.as_tensor(clip["tracks"]).tolist()}
    new, tracks = relabel_tracks(torch.as_tensor(masks).cpu().numpy(), parents)
    out_masks = torch.from_numpy(new)
    if type(masks) is not torch.Tensor and isinstance(masks, torch.Tensor):  # e.g. tv_tensors.Mask
        out_masks = type(masks)(out_masks)
    return {**clip, "masks": out_masks, "tracks": torch.from_numpy(tracks)}


def collate_clips(batch: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Batch clips for a ``DataLoader``.

    ``video`` and ``masks`` are stacked to ``[B, T, 1, H, W]`` and
    ``[B, T, H, W]`` (all clips must share T, H, W); ``tracks`` and ``meta``
    stay lists, one entry per clip, because clips hold different numbers of
    tracks.

    Example:
        >>> import torch
        >>> from torch.utils.data import DataLoader
        >>> clip = {"video": torch.zeros(2, 1, 8, 8), "masks": torch.zeros(2, 8, 8, dtype=torch.int32),
        ...         "tracks": torch.zeros(0, 4, dtype=torch.int64), "meta": {}}
        >>> batch = next(iter(DataLoader([clip, clip], batch_size=2, collate_fn=collate_clips)))
        >>> tuple(batch["video"].shape), len(batch["tracks"])
        ((2, 2, 1, 8, 8), 2)
    """
    if len(batch) == 0:
        raise ClipError("collate_clips got an empty batch")
    shapes = {tuple(c["video"].shape) for c in batch}
    if len(shapes) > 1:
        raise ClipError(
            f"collate_clips needs clips of one shape to stack; got video shapes {sorted(shapes)}. "
            "Use the same clip_len and size for every source, or batch_size=1."
        )
    return {
        "video": torch.stack([c["video"] for c in batch]),
        "masks": torch.stack([c["masks"] for c in batch]),
        "tracks": [c["tracks"] for c in batch],
        "meta": [dict(c["meta"]) for c in batch],
    }
