"""Train on synthetic, test on real: the paper's Table 1 protocol at a size a CPU can run.

One fixed segmenter (:class:`SegNet`, a small U-Net predicting background,
cell interior and cell boundary; instances are interior components grown
back over the foreground) and one fixed tracker (:func:`track_by_overlap`,
overlap linking with division detection) are trained with the same budget on
each source of frames; the result on held-out real frames is scored with the
CTC's own metrics (:func:`bvdm_data.evaluate.ctc.evaluate_ctc`).

Every source is a list of clips of the contract (``video`` 0..1, ``masks``),
so real CTC clips, a :class:`~bvdm_data.stream.BVDMStream`, an LMDB cache
and mixtures all enter the same way.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import nn
from tqdm.auto import tqdm

from bvdm_data.atomic_io import atomic_file
from bvdm_data.clip import Clip, check_clip, relabel_per_frame
from bvdm_data.ctc.writer import write_ctc_result, write_ctc_sequence
from bvdm_data.errors import BVDMDataError
from bvdm_data.evaluate.ctc import ERRORS, evaluate_ctc
from bvdm_data.photometric import Photometric, augment_photometric
from bvdm_data.training import dihedral

BACKGROUND, INTERIOR, BOUNDARY = 0, 1, 2
MIN_ONE_CYCLE_STEPS = 20  # shorter trainings keep a constant learning rate
SCORING_ONLY = ("min_area",)  # ProtocolConfig fields that do not change the trained weights


@dataclass
class ProtocolConfig:
    """The budget every source gets: same steps, batch, crop, learning rate and seed.

    ``augment=True`` varies each crop's contrast, blur and noise (:func:`bvdm_data.photometric.augment_photometric`),
    whatever pool it came from, after the pools' own flips, turns and mild gain.
    """

    steps: int = 1500
    batch_size: int = 8
    crop: int = 128
    lr: float = 2e-3
    width: int = 16
    seed: int = 0
    boundary_weight: float = 3.0
    min_area: int = 40  # px; smaller predicted objects are dropped (HeLa nuclei: 5th percentile ~350 px)
    device: str = "cpu"
    # Trainer-side photometric augmentation of every crop, whatever its source (bvdm_data.photometric).
    augment: bool = False


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.GroupNorm(4, c_out), nn.SiLU(),
                         nn.Conv2d(c_out, c_out, 3, padding=1), nn.GroupNorm(4, c_out), nn.SiLU())


class SegNet(nn.Module):
    """Three-level U-Net: one grey channel in, logits of background / interior / boundary out.

    Example:
        >>> SegNet(width=8)(torch.zeros(2, 1, 64, 64)).shape
        torch.Size([2, 3, 64, 64])
    """

    levels = 3

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        w = [width, 2 * width, 4 * width]
        self.down = nn.ModuleList([_block(1, w[0]), _block(w[0], w[1]), _block(w[1], w[2])])
        self.up = nn.ModuleList([_block(w[2] + w[1], w[1]), _block(w[1] + w[0], w[0])])
        self.head = nn.Conv2d(w[0], 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        for block, skip in zip(self.up, reversed(skips[:-1])):
            x = block(torch.cat([F.interpolate(x, size=skip.shape[-2:], mode="nearest"), skip], 1))
        return self.head(x)


IGNORE = -1  # a mask value for pixels whose class is unknown (a cell the annotation marks but does not outline)


def seg_targets(masks: torch.Tensor) -> torch.Tensor:
    """Classes ``[N, H, W]`` from instance masks: a cell pixel with a 4-neighbour of another label is boundary.

    Pixels labelled :data:`IGNORE` get the class ``IGNORE`` too, which the loss skips.
    """
    m = masks.long()[:, None].float()
    padded = F.pad(m, (1, 1, 1, 1), mode="replicate")
    neighbours = [padded[..., 1:-1, :-2], padded[..., 1:-1, 2:], padded[..., :-2, 1:-1], padded[..., 2:, 1:-1]]
    edge = torch.stack([n != m for n in neighbours]).any(0)[:, 0]
    inside = masks > 0
    classes = torch.where(inside & edge, BOUNDARY, torch.where(inside, INTERIOR, BACKGROUND))
    return torch.where(masks == IGNORE, IGNORE, classes).long()


def outline_band(masks: torch.Tensor, width: int) -> torch.Tensor:
    """Pixels ``[N, H, W]`` within ``width`` px (3x3 steps) of both a cell and the background: the band where an
    outline convention decides, on both sides of every cell's edge that meets the background (not where two
    cells touch).

    Example:
        >>> m = torch.zeros(1, 7, 7, dtype=torch.int32); m[0, 2:5, 2:5] = 1
        >>> outline_band(m, 1)[0].sum().item()  # the 16 pixels around the 3x3 cell and its 8 edge pixels
        24
    """
    cell = (masks > 0).float()[:, None]
    k = 2 * width + 1
    near_cell = F.max_pool2d(cell, k, 1, width) > 0
    near_background = F.max_pool2d(1 - cell, k, 1, width) > 0
    return (near_cell & near_background)[:, 0]


class FramePool:
    """Every frame of some clips, for random crops with flips, 90-degree turns and a mild gain.

    ``outline_ignore`` (px, 0: off) leaves the loss blind to the :func:`outline_band` of that width around its
    cells, so the pool teaches where cells are and where touching cells part, not where their outlines lie. On
    HeLa (real + BVDM, 1-px band) it changed nothing: 0.926 vs 0.924 SEG at 1 500 steps, 0.935 vs 0.935 at 4 500
    (benchmarks/RESULTS.md §1, "Where the mix loses").

    ``fade=True`` makes the pool's share of each batch fall linearly from its even share at the first step to
    none at the last; the other pools take the crops it gives up (:func:`batch_shares`): synthetic crops first,
    real ones last. Measured against half of each batch throughout (RESULTS.md §1, "Synthetic crops first, real
    ones last"): the same SEG on HeLa (0.937), and on GOWT1 the clips' SEG gain given up (0.887 against 0.915).

    ``photometric`` (a :class:`~bvdm_data.photometric.Photometric`, None: off) varies this pool's crops alone, after
    its flips, turns and gain, with draws from the training's generator: the image formation of its source drawn
    anew per crop, as a generator that varied focus, noise and contrast per clip would show it. A protocol-wide
    augmentation of every pool is ``ProtocolConfig.augment``.
    """

    def __init__(self, clips: Iterable[Clip], name: str, outline_ignore: int = 0, fade: bool = False,
                 photometric: Photometric | None = None) -> None:
        images, masks = [], []
        for clip in clips:
            images += [f[0].float() for f in clip["video"]]
            masks += [f.to(torch.int32) for f in clip["masks"]]
        if not images:
            raise BVDMDataError(f"{name}: no frames to train on")
        if outline_ignore < 0:
            raise BVDMDataError(f"{name}: outline_ignore is a width in px (0: off), got {outline_ignore}")
        self.images, self.masks, self.name, self.outline_ignore = images, masks, name, outline_ignore
        self.fade = bool(fade)
        self.photometric = photometric

    def targets(self, masks: torch.Tensor) -> torch.Tensor:
        """:func:`seg_targets` of this pool's crops, the outline band set to ``IGNORE`` where asked."""
        classes = seg_targets(masks)
        if self.outline_ignore:
            classes[outline_band(masks, self.outline_ignore)] = IGNORE
        return classes

    def __len__(self) -> int:
        return len(self.images)

    def batch(self, n: int, crop: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        xs, ys = [], []
        for _ in range(n):
            i = int(torch.randint(len(self.images), (1,), generator=gen))
            image, mask = self.images[i], self.masks[i]
            h, w = image.shape
            if min(h, w) < crop:
                raise BVDMDataError(f"{self.name}: frames of {h}x{w} are smaller than the {crop} px crop")
            y0 = int(torch.randint(h - crop + 1, (1,), generator=gen))
            x0 = int(torch.randint(w - crop + 1, (1,), generator=gen))
            x, y = image[y0:y0 + crop, x0:x0 + crop], mask[y0:y0 + crop, x0:x0 + crop]
            k = int(torch.randint(4, (1,), generator=gen))
            flip = bool(torch.rand((), generator=gen) < 0.5)
            x, y = dihedral(x, k, flip), dihedral(y, k, flip)
            gain = 1 + 0.1 * (2 * float(torch.rand((), generator=gen)) - 1)
            xs.append((x * gain).clamp(0, 1))
            ys.append(y)
        x = torch.stack(xs)[:, None]
        if self.photometric is not None:
            x = augment_photometric(x, gen, self.photometric)
        return x, torch.stack(ys)


def batch_shares(pools: Sequence[FramePool], batch_size: int, step: int, steps: int) -> list[int]:
    """Crops per pool at ``step`` of ``steps``: an even split, a fading pool's share scaled by ``1 - step/steps``.

    Example:
        >>> import torch
        >>> clip = {"video": torch.rand(1, 1, 32, 32), "masks": torch.zeros(1, 32, 32, dtype=torch.int32)}
        >>> real, synthetic = FramePool([clip], "real"), FramePool([clip], "BVDM", fade=True)
        >>> batch_shares([real, synthetic], 8, 0, 100), batch_shares([real, synthetic], 8, 50, 100)
        ([4, 4], [6, 2])
    """
    shares = [batch_size // len(pools) + (i < batch_size % len(pools)) for i in range(len(pools))]
    keep = [i for i, pool in enumerate(pools) if not pool.fade]
    if len(keep) == len(pools):
        return shares
    if not keep:
        raise BVDMDataError("every pool fades: no pool is left to take the crops they give up")
    left = [round(n * (1 - step / steps)) if pool.fade else n for pool, n in zip(pools, shares)]
    for j in range(batch_size - sum(left)):
        left[keep[j % len(keep)]] += 1
    return left


def train_segmenter(pools: Sequence[FramePool], config: ProtocolConfig, progress: bool = True,
                    checkpoint: str | Path | None = None, checkpoint_every: int = 100) -> SegNet:
    """Train a fresh :class:`SegNet` for ``config.steps``; each batch splits over ``pools`` by :func:`batch_shares`.

    With ``checkpoint`` (a file) the run saves its weights, optimiser, schedule and crop generator every
    ``checkpoint_every`` steps and, when the file exists, continues from it: a run cut short and resumed
    ends with the same weights as one that was never stopped. A checkpoint from another config or other
    pools is refused.

    Example:
        >>> import torch
        >>> clip = {"video": torch.rand(1, 1, 32, 32), "masks": torch.zeros(1, 32, 32, dtype=torch.int32)}
        >>> net = train_segmenter([FramePool([clip], "demo")], ProtocolConfig(steps=1, batch_size=2, crop=32, width=8),
        ...                       progress=False)
    """
    torch.manual_seed(config.seed)
    device = torch.device(config.device)
    net = SegNet(config.width).to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=config.lr)
    # One-cycle needs a warm-up of a few steps (10 steps make it divide by zero); a shorter run is a plumbing check
    # and keeps the rate constant.
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, config.lr, total_steps=config.steps, pct_start=0.1) \
        if config.steps >= MIN_ONE_CYCLE_STEPS else torch.optim.lr_scheduler.ConstantLR(opt, factor=1.0, total_iters=0)
    weight = torch.tensor([1.0, 1.0, config.boundary_weight], device=device)
    gen = torch.Generator().manual_seed(config.seed)
    # What the weights depend on besides the seed's draws; the device is not part of it (a CPU checkpoint
    # may finish on a GPU), nor min_area (it filters what the finished net draws, so a kept net can be scored
    # with another).
    # augment is named only when on, so that checkpoints from before it existed still resume.
    identity = {**{k: v for k, v in asdict(config).items() if k not in SCORING_ONLY
                   and not (k == "augment" and not v)}, "device": None,
                "pools": [[p.name, len(p)] + ([p.outline_ignore] if p.outline_ignore else [])
                          + (["fade"] if p.fade else [])
                          + ([asdict(p.photometric)] if p.photometric is not None else []) for p in pools]}
    start, before, began = 0, 0.0, time.perf_counter()
    path = None if checkpoint is None else Path(checkpoint)
    if path is not None and path.is_file():
        state = torch.load(path, map_location=device, weights_only=True)
        kept = {k: v for k, v in (state.get("identity") or {}).items() if k not in SCORING_ONLY}  # older files hold it
        if kept != identity:
            raise BVDMDataError(f"{path}: a segmenter checkpoint of another run ({state.get('identity')}); "
                                f"this one is {identity}. Remove it or use another file.")
        net.load_state_dict(state["net"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        gen.set_state(state["gen"])
        start, before = int(state["step"]), float(state.get("seconds", 0.0))

    def save(step: int) -> None:
        state = {"identity": identity, "step": step, "seconds": before + time.perf_counter() - began,
                 "net": net.state_dict(), "opt": opt.state_dict(),
                 "sched": sched.state_dict(), "gen": gen.get_state()}
        with atomic_file(path) as tmp:
            torch.save(state, tmp)

    bar = tqdm(range(start, config.steps), desc="train " + "+".join(p.name for p in pools), disable=not progress,
               leave=False, initial=start, total=config.steps)
    net.train()
    for step in bar:
        shares = batch_shares(pools, config.batch_size, step, config.steps)
        active = [(pool, n) for pool, n in zip(pools, shares) if n > 0]
        parts = [pool.batch(n, config.crop, gen) for pool, n in active]
        x = torch.cat([p[0] for p in parts]).to(device)
        if config.augment:
            x = augment_photometric(x, gen)
        y = torch.cat([pool.targets(p[1]) for (pool, _), p in zip(active, parts)]).to(device)
        if (y != IGNORE).any():  # else nothing known in this batch (crops inside ignored cells): no step
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                loss = F.cross_entropy(net(x).float(), y, weight=weight, ignore_index=IGNORE)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            bar.set_postfix(loss=f"{loss.item():.3f}")
        # The last step is saved too: a stop while the net is being scored does not retrain it.
        if path is not None and ((step + 1) % checkpoint_every == 0 or step + 1 == config.steps):
            save(step + 1)
    net.train_seconds = before + time.perf_counter() - began  # over every run that trained it
    return net.eval()


def load_segmenter(checkpoint: str | Path, device: str = "cpu") -> SegNet:
    """The segmenter a :func:`train_segmenter` checkpoint holds, in eval mode; ``steps`` says how far it trained.

    Example:
        >>> net = load_segmenter("runs/downstream_parts/run/d__real___BVDM_seed0.ckpt")  # doctest: +SKIP
        >>> masks = segment(net, video)  # doctest: +SKIP
    """
    state = torch.load(checkpoint, map_location=device, weights_only=True)
    net = SegNet(state["identity"].get("width", ProtocolConfig.width)).to(device)
    net.load_state_dict(state["net"])
    net.steps = int(state["step"])
    return net.eval()


def instances(logits: torch.Tensor, min_area: int = 40) -> np.ndarray:
    """Instance labels ``[H, W]`` from ``[3, H, W]`` logits: interior components, grown over the foreground.

    Example:
        >>> logits = torch.zeros(3, 16, 16); logits[1, 4:12, 4:12] = 5
        >>> int(instances(logits, min_area=4).max())
        1
    """
    cls = logits.argmax(0).cpu().numpy()
    seeds, _ = ndimage.label(cls == INTERIOR)
    areas = np.bincount(seeds.ravel())
    seeds[(areas < min_area // 4)[seeds]] = 0
    if not seeds.any():
        return np.zeros(cls.shape, np.int32)
    # Every foreground pixel joins its nearest seed: boundaries between touching cells are split there.
    _, (iy, ix) = ndimage.distance_transform_edt(seeds == 0, return_indices=True)
    labels = np.where(cls != BACKGROUND, seeds[iy, ix], 0)
    labels[(np.bincount(labels.ravel()) < min_area)[labels]] = 0
    _, compact = np.unique(labels, return_inverse=True)
    return compact.reshape(labels.shape).astype(np.int32)


@torch.no_grad()
def segment(net: SegNet, video: torch.Tensor, min_area: int = 40) -> np.ndarray:
    """Instance masks ``[T, H, W]`` of a video ``[T, 1, H, W]`` in 0..1 (padded to the U-Net's multiple)."""
    device = next(net.parameters()).device
    multiple = 2 ** (SegNet.levels - 1)
    h, w = video.shape[-2:]
    pad = (0, -w % multiple, 0, -h % multiple)
    out = []
    for frame in video:
        logits = net(F.pad(frame[None].float().to(device), pad, mode="reflect"))[0, :, :h, :w]
        out.append(instances(logits.float(), min_area))
    return np.stack(out)


def _centroids(frame: np.ndarray, ids: list[int]) -> np.ndarray:
    return np.asarray(ndimage.center_of_mass(np.ones(frame.shape), frame, ids)).reshape(-1, 2)


def _link(frame: np.ndarray, previous: np.ndarray, min_cover: float, max_jump: float) -> dict[int, int]:
    """Object of ``frame`` -> the track (id in ``previous``) it continues, by overlap, then by proximity."""
    ids = [int(i) for i in np.unique(frame) if i > 0]
    both = (frame > 0) & (previous > 0)
    pairs, counts = np.unique(np.stack([frame[both], previous[both]]), axis=1, return_counts=True)
    area = np.bincount(frame.ravel())
    link: dict[int, int] = {}
    for obj in ids:
        hit = pairs[0] == obj
        if hit.any():
            best = int(np.argmax(np.where(hit, counts, -1)))
            if counts[best] >= min_cover * area[obj]:
                link[obj] = int(pairs[1, best])
    # Objects overlapping nothing: a daughter thrown clear of its mother, or a fast cell. Join the nearest
    # previous cell within max_jump that has at most one follower so far (two followers = a division).
    loose = [obj for obj in ids if obj not in link]
    before = [int(i) for i in np.unique(previous) if i > 0]
    if loose and before:
        dist = np.linalg.norm(_centroids(frame, loose)[:, None] - _centroids(previous, before)[None], axis=-1)
        for flat in np.argsort(dist, axis=None):
            i, j = np.unravel_index(flat, dist.shape)
            if dist[i, j] > max_jump:
                break
            obj, track = loose[i], before[j]
            if obj not in link and sum(v == track for v in link.values()) <= 1:
                link[obj] = track
    return link


def track_by_overlap(masks: np.ndarray, min_cover: float = 0.3, max_jump: float = 30.0
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Link per-frame instances ``[T, H, W]`` into tracks; returns (track-id masks, ``[L, B, E, P]`` rows).

    An object continues the track of the previous object covering most of it
    (at least ``min_cover`` of its area); an object overlapping nothing joins
    the nearest previous cell within ``max_jump`` px that has at most one
    follower. When two or more objects continue the same track, it ends and
    each starts a daughter track with it as parent (a division); objects
    continuing nothing start a new root track.

    Example:
        >>> m = np.zeros((2, 8, 8), np.int32); m[0, 2:6, 1:7] = 1; m[1, 2:6, 1:4] = 1; m[1, 2:6, 4:7] = 2
        >>> track_by_overlap(m)[1].tolist()
        [[1, 0, 0, 0], [2, 1, 1, 1], [3, 1, 1, 1]]
    """
    masks = np.asarray(masks)
    out = np.zeros(masks.shape, np.int32)
    rows: list[list[int]] = []

    def start(t: int, parent: int) -> int:
        rows.append([len(rows) + 1, t, t, parent])
        return len(rows)

    for t, frame in enumerate(masks):
        link = _link(frame, out[t - 1], min_cover, max_jump) if t > 0 else {}
        followers: dict[int, int] = {}
        for track in link.values():
            followers[track] = followers.get(track, 0) + 1
        for obj in (int(i) for i in np.unique(frame) if i > 0):
            track = link.get(obj)
            if track is None:
                new = start(t, 0)
            elif followers[track] == 1:
                new = track
                rows[track - 1][2] = t
            else:
                new = start(t, track)
            out[t][frame == obj] = new
    return out, np.asarray(rows, dtype=np.int64).reshape(-1, 4)


def boundary_offset(predicted: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """How far predicted outlines sit outside the reference ones, over the cells SEG matches.

    A reference cell is matched by the predicted object covering more than
    half of it (the SEG rule). ``offset_px`` is the mean of (predicted area -
    reference area) / reference perimeter: the mean outward shift of the
    outline in pixels (negative: drawn too tight). SEG is very sensitive to it:
    on a 600 px nucleus a half-pixel shift alone costs about 0.07 IoU.
    ``matched_iou`` is the mean IoU over matched cells, ``matched`` their share.

    Example:
        >>> r = np.zeros((1, 20, 20), np.int32); r[0, 5:15, 5:15] = 1
        >>> p = np.zeros_like(r); p[0, 4:16, 4:16] = 1
        >>> round(boundary_offset(p, r)["offset_px"], 2)
        1.22
    """
    predicted, reference = np.asarray(predicted), np.asarray(reference)
    offsets, ious, total = [], [], 0
    for pred, ref in zip(predicted.reshape(-1, *predicted.shape[-2:]), reference.reshape(-1, *reference.shape[-2:])):
        ref_area = np.bincount(ref.ravel())
        pred_area = np.bincount(pred.ravel())
        edge = (ref > 0) & (ndimage.grey_erosion(ref, size=3, mode="nearest") != ref)
        perimeter = np.bincount(ref[edge], minlength=len(ref_area))
        both = (ref > 0) & (pred > 0)
        pairs, counts = np.unique(np.stack([ref[both], pred[both]]), axis=1, return_counts=True)
        total += int((ref_area[1:] > 0).sum())
        for r, p, n in zip(*pairs, counts):
            if 2 * n > ref_area[r]:
                offsets.append((pred_area[p] - ref_area[r]) / max(1, perimeter[r]))
                ious.append(n / (pred_area[p] + ref_area[r] - n))
    return {"offset_px": float(np.mean(offsets)) if offsets else float("nan"),
            "matched_iou": float(np.mean(ious)) if ious else float("nan"),
            "matched": len(offsets) / max(1, total)}


def score_segmentation(predicted: np.ndarray, gt: str | Path, metrics: Sequence[str] = ("SEG", "DET", "TRA"),
                       errors: bool = False) -> dict[str, float]:
    """CTC scores of per-frame instances ``[T, H, W]``, linked by :func:`track_by_overlap`, against ``gt`` (``NN_GT``);
    with ``errors``, also DET's error counts (:func:`~bvdm_data.evaluate.ctc.evaluate_ctc`)."""
    masks, tracks = track_by_overlap(predicted)
    with tempfile.TemporaryDirectory() as tmp:
        write_ctc_result(masks, tracks, Path(tmp) / "RES")
        return evaluate_ctc(Path(tmp) / "RES", gt, metrics, errors=errors)


def score_on_clip(predicted: np.ndarray, test: Clip, metrics: Sequence[str] = ("SEG", "DET"),
                  errors: bool = False) -> dict[str, float]:
    """:func:`score_segmentation` of per-frame instances ``[T, H, W]`` against a contract clip's masks and tracks."""
    check_clip(test)
    with tempfile.TemporaryDirectory() as tmp:
        write_ctc_sequence(test, tmp, "01")
        return score_segmentation(predicted, Path(tmp) / "01_GT", metrics, errors)


def score_on_real(net: SegNet, test: Clip, min_area: int = 40, metrics: Sequence[str] = ("SEG", "DET"),
                  errors: bool = False) -> dict[str, float]:
    """SEG/DET (and TRA when ``test`` has real lineage) of segmenter + tracker on a real clip, via py-ctcmetrics."""
    return score_on_clip(segment(net, test["video"], min_area), test, metrics, errors)


@dataclass
class RealSequence:
    """A whole real CTC test sequence scored against its own ground truth folder (TRA on every frame, sparse SEG).

    ``video`` ``[T, 1, H, W]`` in 0..1; ``seg_index`` the positions in
    ``video`` of the frames with a gold ``SEG`` mask, ``seg`` those masks
    (for :func:`boundary_offset`).

    Example:
        >>> test = RealSequence.load("Fluo-N2DH-GOWT1", "02")  # doctest: +SKIP
        >>> test.video.shape, len(test.seg_index)  # doctest: +SKIP
        (torch.Size([92, 1, 1024, 1024]), 20)
    """

    video: torch.Tensor
    gt: Path
    seg_index: list[int]
    seg: np.ndarray

    @classmethod
    def load(cls, root: str | Path, seq: str, percentiles: tuple[float, float] = (1.0, 99.9)) -> RealSequence:
        from bvdm_data.ctc.clips import intensity_range, to_unit
        from bvdm_data.ctc.sequence import open_sequence

        sequence = open_sequence(root, seq, labels="GT")
        if sequence.seg is None:
            raise BVDMDataError(f"{root}/{seq}_GT: no SEG folder to score segmentation against")
        frames = list(sequence.images.frames)
        raw = np.stack([sequence.images.read(f) for f in frames]).astype(np.float32)
        video = torch.from_numpy(to_unit(raw, intensity_range(sequence, percentiles, frames=frames))[:, None])
        seg_frames = [f for f in sequence.seg.frames if f in frames]
        seg = np.stack([sequence.seg.read(f) for f in seg_frames]).astype(np.int64)
        return cls(video, Path(root) / f"{seq}_GT", [frames.index(f) for f in seg_frames], seg)


def per_frame_clip(video: torch.Tensor, labels: np.ndarray, meta: dict[str, Any]) -> Clip:
    """A contract clip from frames whose labels are per-frame ids (a segmentation without lineage)."""
    masks, tracks = relabel_per_frame(labels)
    return {"video": video.float(), "masks": torch.from_numpy(masks), "tracks": torch.from_numpy(tracks),
            "meta": meta}


def run_protocol(arms: dict[str, Sequence[FramePool]], test: Clip | RealSequence, config: ProtocolConfig,
                 metrics: Sequence[str] = ("SEG", "DET"), progress: bool = True,
                 calibration: Clip | None = None,
                 checkpoints: Mapping[str, str | Path] | None = None) -> list[dict[str, Any]]:
    """Train one segmenter per arm with the same budget and score each on the real ``test`` clip.

    ``test`` is a clip (scored against its own masks and tracks) or a
    :class:`RealSequence` (scored against its ground truth folder). Returns
    one row per arm: the scores and DET's error counts (false positives, misses, splits), the outline offset on ``test``
    (:func:`boundary_offset`; also on ``calibration``, real frames apart from
    the test, as ``calibration_offset_px``), training seconds and frames seen. ``checkpoints`` names a
    checkpoint file per arm (see :func:`train_segmenter`), so that a long run can stop and resume.
    """
    rows = []
    for name, pools in arms.items():
        net = train_segmenter(pools, config, progress, checkpoint=(checkpoints or {}).get(name))
        seconds = net.train_seconds
        if isinstance(test, RealSequence):
            predicted = segment(net, test.video, config.min_area)
            scores = score_segmentation(predicted, test.gt, metrics, errors=True)
            offset = boundary_offset(predicted[test.seg_index], test.seg)
        else:  # segmented once, for the scores and the outlines
            predicted = segment(net, test["video"], config.min_area)
            scores = score_on_clip(predicted, test, metrics, errors=True)
            offset = boundary_offset(predicted, test["masks"].numpy())
        if calibration is not None:
            offset["calibration_offset_px"] = boundary_offset(segment(net, calibration["video"], config.min_area),
                                                              calibration["masks"].numpy())["offset_px"]
        distinct = {id(p): p for p in pools}.values()  # a pool listed twice (a larger share) counts once
        rows.append({"arm": name, **scores, **offset, "train_s": seconds, "frames": sum(len(p) for p in distinct)})
        if progress:
            tqdm.write(f"{name}: " + ", ".join(f"{m} {scores[m]:.3f}" for m in metrics if m in scores)
                       + ", " + ", ".join(f"{scores[e]:.0f} {e.replace('_', ' ')}" for e in ERRORS))
    return rows


__all__ = ["FramePool", "ProtocolConfig", "RealSequence", "SegNet", "boundary_offset", "instances", "per_frame_clip",
           "run_protocol", "score_on_clip", "score_on_real", "score_segmentation", "seg_targets", "segment",
           "track_by_overlap", "train_segmenter"]
