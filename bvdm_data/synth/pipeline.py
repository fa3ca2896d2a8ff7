"""The BVDM pipeline: simulated masks -> cell textures -> scene, for several clips at once.

Every cell of every clip in flight is painted in one of two kinds of network
pass (paper, section 2):

* a cell seen for the first time (present in frame 0, entering the view, or
  with no parent texture) is painted by SDEdit from a flat image of its mask,
  noised to ``t_s``;
* a cell seen before is carried over: the flow model maps its previous mask
  onto its new one, its previous texture is warped along that flow (Kornia)
  and refined by ``t_f`` denoising steps; a daughter starts from its mother's
  last texture warped onto her own mask.

First appearances depend only on their own masks, so all of them, in every
frame of every clip in flight, are painted in one wide pass; carried cells
then follow frame by frame (``t_s + (T - 1) t_f`` sequential network calls
per batch instead of ``T (t_s + t_f)``). Clips are simulated on a view padded
by half a crop, so that cells at the border are textured whole, then cropped
(resampled, where a clip draws a magnification) and relabelled. Masks and brightness come from each clip's seed on the CPU
(:meth:`Synthesizer.plan`); every painted cell's noise comes from a key
derived from its clip, frame and id, drawn on the device, so a clip is the
same whatever else shares its batch and however the work is chunked.
"""

from __future__ import annotations

import itertools
import math
import multiprocessing
import os
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from scipy import ndimage

from bvdm_data.arguments import as_contrast, as_density, as_device, as_range, as_size, check_density_fits
from bvdm_data.bundle import Bundle
from bvdm_data.cells import cell_windows
from bvdm_data.clip import Clip, relabel_tracks
from bvdm_data.diffusion.crops import sample_brightness
from bvdm_data.diffusion.noise import MASK32, derive_key, keyed_normal, keyed_uniform
from bvdm_data.diffusion.sample import DEFAULT_SAMPLER, SAMPLERS, check_stride, resolve_stride
from bvdm_data.diffusion.texture import TextureModel
from bvdm_data.errors import BVDMDataError
from bvdm_data.flow.model import load_flow
from bvdm_data.masks.coverage import meeting_pixels
from bvdm_data.masks.model import MaskModel
from bvdm_data.masks.simulate import simulate_masks
from bvdm_data.photometric import CHANGES, Photometric, PhotometricDraw, apply_photometric, draw_photometric
from bvdm_data.scene.model import SceneModel
from bvdm_data.synth.annotation import relabel_clip
from bvdm_data.synth.compose import OVERLAPS, compose
from bvdm_data.synth.propagation import carry_over, paint_first_frame, paint_flat


TEXTURES = ("ddpm", "flat", "detail")
EDGES = ("by_brightness", "mean", "blur")
SCHEDULES = ("wide", "frame")
LABELS = ("auto", "painted", "profile", "masks")
BRIGHTNESS_LAWS = ("marginal", "by_area")
FIRST_PAINT, CARRY, BACKGROUND, CONTRAST, FORMATION, MAGNIFY = 1, 2, 3, 4, 5, 6  # purposes in noise keys
# Work sizes on an accelerator when not given (benchmarks/results/gpu_generation_cuda.json: peak memory and rate).
DEVICE_GEN_BATCH = 64       # clips in flight
DEVICE_CELL_BATCH = 4096    # cells per network call
CPU_CELL_BATCH = 256        # cells per network call on the CPU (bounds memory; pixels do not depend on it)
# CPU processes that plan clips and redraw labels while an accelerator paints.
DEVICE_CPU_WORKERS = min(8, os.cpu_count() or 1)
MOSTLY_EMPTY_CELLS = 1.0  # expected cells per frame under which a request warns (over a third start empty)
MAX_EDGE_SHIFT = 3.0      # px; the measured profile reaches 6 px each side of the outline
PRESSED_REACH = 6         # px a pressed cell is painted on into its neighbour: past the measured profile's reach


@dataclass(frozen=True, kw_only=True)
class SynthesisSettings:
    """How clips are painted: ``t_s=200``, ``t_f=10`` (the paper's optimum), DDIM every 4th step.

    The paper samples with full DDPM (``sampler="ddpm"``); DDIM /4 takes a
    quarter of the network calls and its clips mixed better with real frames
    downstream (benchmarks/RESULTS.md section 1). ``stride=None`` takes the
    sampler's default: 4 for DDIM, 1 for DDPM (which takes every step).

    ``texture="detail"`` keeps only the DDPM's fine texture on the flat start
    image (measured edge and brightness), an experiment (RESULTS.md §1).
    ``texture="flat"`` paints new cells as the flat baseline (drawn brightness,
    blur, noise; no network) and carries them along the flow without
    refinement: the same masks and scene with CellCycleGAN-style textures, for ablations.
    """

    t_s: int = 200
    t_f: int = 10
    sampler: str = DEFAULT_SAMPLER
    stride: int | None = None  # None: resolve_stride(sampler), resolved on construction
    density: float | None = None  # cells per px^2 in the first frame; None: the fitted density
    bf16: bool = False  # the DDPM in bf16, weights and activations (Denoiser(bf16=True))
    # torch.compile the DDPM (with CUDA graphs on a GPU): 10-25 s to compile, then fewer, fused kernels per
    # denoising call; changes pixels by float rounding, like bf16. Off by default; benchmarks/gpu_generation.py.
    compile: bool = False
    independent_frames: bool = False  # paint every frame from scratch (the paper's flickering ablation)
    texture: str = "ddpm"
    # At most this many cells per network call: caps memory (1 is the reference-style one-cell-at-a-time
    # loop). None: CPU_CELL_BATCH or DEVICE_CELL_BATCH. Pixels do not depend on it (each cell has its own noise).
    cell_batch: int | None = None
    # "wide": all first appearances of a batch in one pass, then carried cells frame by frame; "frame": new
    # cells frame by frame (the reference order, more sequential calls, the same clips).
    schedule: str = "wide"
    # Image formation and annotation convention measured from the real data (benchmarks/RESULTS.md, ablation).
    # edge: how a new cell's start image meets the background: "by_brightness" (the edge profile measured on the
    # real annotation, per brightness: bright cells are drawn more generously), "mean" (one measured profile;
    # +0.012 SEG over "blur" on HeLa), "blur" (a flat mask blurred 1 px, before 2026-11-26). unlabelled: paint the
    # nuclei the real labels leave out, at the measured rate and contrast, without labels (off: it cost 0.044
    # SEG). Bundles without these laws fall back to "blur" and no unlabelled nuclei.
    edge: str = "by_brightness"
    # px the painted edge sits outside the mask beyond the measured profile (negative: inside); where the annotation
    # convention sits on the soft edge, calibrated downstream (benchmarks/downstream.py --calibrate-edge).
    edge_shift: float = 0.0
    unlabelled: bool = False
    # glow: add the cells' out-of-focus light at the measured share and spread (scene.model.glow_law). Off: it matches
    # the real halo but left SEG unchanged on HeLa (RESULTS.md §1, --glow-ablation). Bundles fitted before 2026-11-26
    # evening have no glow law.
    glow: bool = False
    # labels: "painted" (each label redrawn from its painted cell by the real annotation's measured threshold, the
    # bundle's label law, synth/annotation.py), "profile" (redrawn at the edge profile's midpoint, the rule before
    # the label law: +0.029 SEG BVDM-only, +0.011 mixed with real on HeLa over the masks, RESULTS.md §1), "masks"
    # (the simulated masks), "auto" (painted where the bundle has a label law, whatever the edge; else profile where
    # it has an edge profile and edge is not "blur"; else masks).
    labels: str = "auto"
    # overlap: where cells' soft footprints meet, "add" sums their light (as fluorescence does: where real touching
    # HeLa nuclei meet, 0.65 of their contrast is left, 0.61 added, 0.39 averaged) or "average" averages their
    # paintings (a dark seam; the rule before 2026-11-27). Added: +0.004 SEG for real + BVDM on HeLa, RESULTS.md §1.
    overlap: str = "add"
    # pressed: the share of touching cell pairs painted pressed against each other, as real nuclei that push on
    # each other are: each is painted on through the contact (no falloff there) and its light gives way to its
    # partner's across the contact line, so no dark seam parts them, only their shapes and textures. On HeLa 12 of
    # the 32 touching pairs of 02 frames 0-10 show no seam (light >= 0.8 of the pair's contrast where they meet;
    # benchmarks/touching.py). 1 (default) presses every touching pair: with the hela bundle's closer spacing the
    # mix with real frames came within 0.001 SEG of its real half (3 seeds) and one real frame + BVDM gained
    # +0.01 (RESULTS.md §1); 0 paints every pair as two free cells whose light adds (the rule until 2026-11-27).
    pressed: float = 1.0
    # brightness: how a new cell's brightness is drawn: "marginal" (the real cells' law, whatever the cell's size)
    # or "by_area" (the law of real cells of its size class: small cells hold both the dimmest nuclei and the bright
    # mitotic figures, large ones are rarely dim); needs a bundle whose statistics hold that law. Off: SEG unchanged
    # on HeLa; on GOWT1 (a law from 140 cells of one video) clips alone marked more faint fragments (RESULTS.md §1).
    brightness: str = "marginal"
    # contrast: None (default) or a range (lo, hi): each clip's light above the background level (cells, glow and
    # noise alike) is scaled by one gain drawn log-uniformly from it, as another recording, normalised by its own
    # percentiles, shows its nuclei brighter or dimmer (GOWT1: 02's nuclei sit 2.7x higher in their range than
    # 01's; HeLa 02's test frames 1.03x its training frames': benchmarks/results/contrast_by_sequence_cpu.txt).
    # Labels are those of the unscaled painting: the annotation does not depend on the display. Domain
    # randomisation, off: gains of 0.5..2 cost SEG on HeLa (-0.004 mixed) and on GOWT1's cross-video test (-0.045
    # mixed, more misses, fewer false positives; RESULTS.md §1, "Contrast varied per clip").
    contrast: tuple[float, float] | None = None
    # formation: a Photometric (default: its ranges, all three changes) or None: each finished clip's image
    # formation drawn anew, as another microscope would record the same cells: the light above its median, its focus
    # and its noise changed as bvdm_data.photometric draws them (each with probability 0.5), one draw per clip from
    # the clip's key (its frames share it, each gets its own noise). Labels unchanged: the annotation follows the
    # cells. On since 2026-11-28 (RESULTS.md §1, "Image formation varied on the synthetic half"): mixed with
    # unchanged real frames, HeLa SEG 0.001 under the plain mix on unchanged test frames and far steadier under
    # blur and contrast (blur 2 px: 0.899 against 0.844); GOWT1's other recording SEG +0.010 and, with the size
    # filter at its nuclei's scale, no DET lost. None paints every clip with the recording's own formation.
    formation: Photometric | None = Photometric()
    # magnification: None (default) or a range (lo, hi): each clip shows its cells at a magnification drawn
    # log-uniformly from it (another objective or camera binning: cells and their labels larger or smaller, the
    # frame the same size), resampled from a painting of the field that magnification shows. A range below 1
    # paints a larger field (e.g. 0.8 on 256^2 views: 1.44x the cells).
    magnification: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        # frozen: the resolved stride is what caches and clip meta record
        object.__setattr__(self, "stride", resolve_stride(self.sampler, self.stride))
        object.__setattr__(self, "contrast", as_contrast(self.contrast))
        object.__setattr__(self, "magnification", as_range(self.magnification, "magnification", "magnifications"))
        if self.formation is not None and not isinstance(self.formation, Photometric):
            raise BVDMDataError(f"formation must be None or a bvdm_data.Photometric, got {self.formation!r}")

    def check(self, num_steps: int) -> None:
        if self.edge not in EDGES:
            raise BVDMDataError(f"edge must be one of {EDGES}, got {self.edge!r}")
        if not -MAX_EDGE_SHIFT <= self.edge_shift <= MAX_EDGE_SHIFT:
            raise BVDMDataError(f"edge_shift must lie in -{MAX_EDGE_SHIFT}..{MAX_EDGE_SHIFT} px, got {self.edge_shift}")
        if self.edge_shift and self.edge == "blur":
            raise BVDMDataError("edge_shift moves the measured edge profile; edge='blur' has none")
        if self.labels not in LABELS:
            raise BVDMDataError(f"labels must be one of {LABELS}, got {self.labels!r}")
        if self.labels == "profile" and self.edge == "blur":  # the label law ("painted") needs no edge profile
            raise BVDMDataError("labels='profile' follows the measured edge; edge='blur' has none")
        if self.overlap not in OVERLAPS:
            raise BVDMDataError(f"overlap must be one of {OVERLAPS}, got {self.overlap!r}")
        if not 0.0 <= self.pressed <= 1.0:
            raise BVDMDataError(f"pressed must lie in 0..1 (a share of touching pairs), got {self.pressed}")
        if self.brightness not in BRIGHTNESS_LAWS:
            raise BVDMDataError(f"brightness must be one of {BRIGHTNESS_LAWS}, got {self.brightness!r}")
        if self.schedule not in SCHEDULES:
            raise BVDMDataError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.texture not in TEXTURES:
            raise BVDMDataError(f"texture must be one of {TEXTURES}, got {self.texture!r}")
        if not 1 <= self.t_s <= num_steps:
            raise BVDMDataError(f"t_s must lie in 1..{num_steps}, got {self.t_s}")
        if not 0 <= self.t_f <= self.t_s:
            raise BVDMDataError(f"t_f must lie in 0..t_s={self.t_s}, got {self.t_f}")
        if self.sampler not in SAMPLERS:
            raise BVDMDataError(f"sampler must be one of {SAMPLERS}, got {self.sampler!r}")
        check_stride(self.sampler, self.stride)
        if self.cell_batch is not None and self.cell_batch < 1:
            raise BVDMDataError(f"cell_batch must be at least 1 or None, got {self.cell_batch}")
        as_density(self.density)


@dataclass
class ClipPlan:
    """A batch of clips before painting (:meth:`Synthesizer.plan`): CPU work that depends on each seed alone.

    ``new`` lists first appearances ``(clip, frame, id)``, ``carried`` the
    cells carried over ``(clip, frame, id, source id in frame - 1)``,
    ``values`` the drawn brightness of each new cell, ``keys`` each clip's
    noise key (:mod:`bvdm_data.diffusion.noise`).
    """

    size: tuple[int, int]
    padded: tuple[int, int]
    num_frames: int
    sims: list[dict] = field(default_factory=list)
    crops: list[list[dict[int, _Cell]]] = field(default_factory=list)
    parents: list[dict[int, int]] = field(default_factory=list)
    hidden: list[dict[int, int]] = field(default_factory=list)
    keys: list[int] = field(default_factory=list)
    new: list[tuple[int, int, int]] = field(default_factory=list)
    carried: list[tuple[int, int, int, int]] = field(default_factory=list)
    values: dict[tuple[int, int, int], float] = field(default_factory=dict)


@dataclass
class _Cell:
    """Where one cell's mask sits in one frame: its crop and the crop's top-left corner; for a cell pressed
    against others, also those neighbours' pixels (``cut``: its light stops there) and the shape its texture is
    painted on (``shape``: its mask and a band of theirs, so the painting does not fall off at the contact)."""

    mask: np.ndarray  # bool; numpy, not torch: thousands of small tensors leave planner processes slowly
    corner: tuple[int, int]
    cut: np.ndarray | None = None
    shape: np.ndarray | None = None

    @property
    def painted_on(self) -> np.ndarray:
        return self.mask if self.shape is None else self.shape


# How vary_formation draws a clip's camera noise, recorded in a cache's meta: caches painted before this was keyed
# (2026-11-28, a CPU generator's normals copied to the device) lack it, so they are not resumed with other noise.
FORMATION_NOISE = "keyed"


def vary_formation(videos: torch.Tensor, keys: Sequence[int], ranges: Photometric) -> torch.Tensor:
    """Finished clips ``[K, T, 1, H, W]`` in 0..1, each as another microscope would record it, on their device.

    Clip ``k``'s changes are one :func:`~bvdm_data.photometric.draw_photometric` from a CPU generator seeded by
    its noise key ``keys[k]``, and its camera noise is keyed noise made on the device
    (:func:`~bvdm_data.diffusion.noise.keyed_normal`): a clip is the same in any batch and on any device (to float
    rounding), and no image-sized draw crosses from the host.

    Example:
        >>> clips = torch.rand(2, 2, 1, 32, 32)
        >>> torch.equal(vary_formation(clips, [7, 8], Photometric()), vary_formation(clips, [7, 8], Photometric()))
        True
    """
    if videos.ndim != 5 or len(videos) != len(keys):
        raise BVDMDataError(f"vary_formation takes clips [K, T, 1, H, W] and one key per clip; got "
                            f"{tuple(videos.shape)} and {len(keys)} key(s)")
    draws = PhotometricDraw.cat([draw_photometric(torch.Generator().manual_seed(derive_key(key, FORMATION)), 1, ranges)
                                 for key in keys])
    # Only the noisy clips' noise, one clip at a time: the hash's int64 temporaries of a whole batch would be
    # several times its pixels.
    noisy = torch.tensor([derive_key(key, FORMATION) for key, on in zip(keys, draws.noise_on.tolist()) if on],
                         dtype=torch.int64, device=videos.device)  # one copy to the device for the batch
    noise = torch.cat([keyed_normal(noisy[i:i + 1], 0, videos.shape[1:]) for i in range(len(noisy))] or
                      [videos.new_empty((0, *videos.shape[1:]))])
    return apply_photometric(videos, draws, noise, ranges)


def formation_meta(ranges: Photometric) -> dict[str, float]:
    """The ranges of :func:`vary_formation` as the scalars a clip's meta holds (an unused change: no entry)."""
    meta: dict[str, float] = {"synth_formation_p": ranges.p}
    for name in CHANGES:
        bounds = getattr(ranges, name)
        if bounds is not None:
            meta.update({f"synth_formation_{name}_lo": bounds[0], f"synth_formation_{name}_hi": bounds[1]})
    return meta


def keyed_log_uniform(key: int, purpose: int, bounds: tuple[float, float]) -> float:
    """One number drawn log-uniformly in ``bounds`` for the clip of noise ``key`` and this ``purpose``.

    Example:
        >>> 0.5 <= keyed_log_uniform(derive_key(7), CONTRAST, (0.5, 2.0)) <= 2.0
        True
    """
    u = float(keyed_uniform(torch.tensor([derive_key(key, purpose)]), 0, 1)[0, 0])
    lo, hi = np.log(bounds[0]), np.log(bounds[1])
    return float(np.exp(lo + u * (hi - lo)))


def contrast_gain(key: int, contrast: tuple[float, float]) -> float:
    """The gain a clip of noise ``key`` shows its light with: log-uniform in the range ``contrast``.

    Example:
        >>> 0.5 <= contrast_gain(derive_key(7), (0.5, 2.0)) <= 2.0
        True
    """
    return keyed_log_uniform(key, CONTRAST, contrast)


def painted_field(size: tuple[int, int], half: int, magnification: tuple[float, float] | None) -> tuple[int, int]:
    """The padded field a view of ``size`` is simulated and painted on: the largest part of it a magnification
    of the range shows (the view itself unless the range goes below 1), plus ``half`` a texture crop on each side,
    so that cells crossing the view's edge are painted whole.

    Example:
        >>> painted_field((256, 256), 32, None), painted_field((256, 256), 32, (0.8, 1.25))
        ((320, 320), (384, 384))
    """
    lo = 1.0 if magnification is None else min(1.0, magnification[0])
    return tuple(math.ceil(n / lo - 1e-9) + 2 * half for n in size)


def view_region(size: tuple[int, int], padded: tuple[int, int], zoom: float | None) -> tuple[int, int, int, int]:
    """``(top, left, height, width)`` of the part of the padded painting that becomes a view of ``size`` at
    magnification ``zoom`` (None: 1): centred, ``size / zoom`` pixels.

    Example:
        >>> view_region((256, 256), (320, 320), None), view_region((256, 256), (384, 384), 1.25)
        ((32, 32, 256, 256), (89, 89, 205, 205))
    """
    (h, w), (ph, pw) = size, padded
    rh, rw = (h, w) if zoom is None else (min(ph, max(1, round(h / zoom))), min(pw, max(1, round(w / zoom))))
    return (ph - rh) // 2, (pw - rw) // 2, rh, rw


def resample_labels(labels: np.ndarray, region: tuple[int, int, int, int], size: tuple[int, int]) -> np.ndarray:
    """The labels ``[T, H, W]`` of ``region`` (:func:`view_region`) at ``size``: each pixel takes the label under
    its centre (nearest neighbour, the same grid as the painting's resampling).

    Example:
        >>> labels = np.arange(16).reshape(1, 4, 4)
        >>> resample_labels(labels, (0, 0, 4, 4), (2, 2)).tolist()
        [[[5, 7], [13, 15]]]
    """
    top, left, rh, rw = region
    rows = top + np.floor((np.arange(size[0]) + 0.5) * rh / size[0]).astype(int)
    cols = left + np.floor((np.arange(size[1]) + 0.5) * rw / size[1]).astype(int)
    return labels[:, rows[:, None], cols[None, :]]


def pressed_partners(frame: np.ndarray, share: float, draw: np.ndarray) -> dict[int, set[int]]:
    """Which touching cells of one ``[H, W]`` label frame are pressed against which: ``{id: partner ids}``.

    A pair ``(a, b)`` is pressed when ``(draw[a] + draw[b]) % 1 < share``;
    ``draw`` holds one uniform number per cell id, drawn once per clip, so a
    pair stays pressed (or not) for as long as it touches, and ``share`` of
    the pairs are.

    Example:
        >>> frame = np.zeros((3, 4), np.int32); frame[:, :2], frame[:, 2:] = 1, 2
        >>> pressed_partners(frame, 1.0, np.zeros(3)), pressed_partners(frame, 0.0, np.zeros(3))
        ({1: {2}, 2: {1}}, {})
    """
    here, there, _ = meeting_pixels(frame)
    out: dict[int, set[int]] = {}
    for a, b in set(zip(here.tolist(), there.tolist())):
        if (draw[a] + draw[b]) % 1.0 < share:
            out.setdefault(a, set()).add(b)
    return out


def _cell_crops(frame: np.ndarray, size: int, pressed: dict[int, set[int]] | None = None) -> dict[int, _Cell]:
    """Mask crops centred on each cell's centroid (the frame is padded, so every cell fits); ``pressed``
    (:func:`pressed_partners`) adds the cut and painted shape of the cells pressed against others."""
    half = size // 2
    padded = np.pad(frame, half)
    out = {}
    for cell in cell_windows(frame, size):
        y0, x0 = cell.corner
        window = padded[y0 + half:y0 + half + size, x0 + half:x0 + half + size]
        mask = window == cell.label
        partners = (pressed or {}).get(cell.label)
        if partners:
            cut = np.isin(window, list(partners))
            near = ndimage.distance_transform_edt(~mask) <= PRESSED_REACH
            out[cell.label] = _Cell(mask, cell.corner, cut, mask | (cut & near))
        else:
            out[cell.label] = _Cell(mask, cell.corner)
    return out


def _stacked(arrays: list[np.ndarray], device: torch.device) -> torch.Tensor:
    """Crops (cells' masks or painted shapes) as one ``[N, S, S]`` bool tensor on ``device``."""
    return torch.from_numpy(np.stack(arrays)).to(device)


def _by_frame(items: list[tuple], num_frames: int) -> list[list[tuple]]:
    """``(clip, frame, ...)`` items grouped by frame, in their order."""
    out: list[list[tuple]] = [[] for _ in range(num_frames)]
    for item in items:
        out[item[1]].append(item)
    return out


def default_gen_batch(device: str | torch.device) -> int:
    """Clips painted together when the caller does not say: 1 on the CPU, :data:`DEVICE_GEN_BATCH` elsewhere."""
    return 1 if as_device(device).type == "cpu" else DEVICE_GEN_BATCH


def child_seed(seed: np.random.SeedSequence, i: int) -> np.random.SeedSequence:
    """The ``i``-th child of ``seed``, the same however often it is asked for (``spawn`` is stateful)."""
    return np.random.SeedSequence(seed.entropy, spawn_key=(*seed.spawn_key, i), pool_size=seed.pool_size)


def edge_statistics(statistics: dict, edge: str, shift: float = 0.0) -> dict:
    """The texture statistics with the one ``edge_profile`` that ``edge`` asks for (none for ``"blur"``), moved
    outward by ``shift`` px."""
    out = {k: v for k, v in statistics.items() if k not in ("edge_profile", "edge_profiles")}
    out["edge_shift"] = shift
    if edge == "by_brightness" and statistics.get("edge_profiles", {}).get("contrast"):
        out["edge_profile"] = statistics["edge_profiles"]
    elif edge in ("by_brightness", "mean") and "edge_profile" in statistics:
        out["edge_profile"] = statistics["edge_profile"]
    return out


def unlabelled_lineages(tracks: np.ndarray, fraction: float, rng: np.random.Generator) -> dict[int, int]:
    """Pick whole lineages to paint but not label: ``{track id: index of its lineage's root among the picks}``.

    Each root track (no parent in ``tracks``) is picked with probability
    ``fraction``; its descendants follow it, as daughters inherit its texture.
    """
    parent = {int(r[0]): int(r[3]) for r in tracks}
    roots = [i for i in parent if parent[i] not in parent]
    picked = {r: k for k, r in enumerate(r for r, u in zip(roots, rng.random(len(roots))) if u < fraction)}
    out = {}
    for i in parent:
        root = i
        while parent[root] in parent:
            root = parent[root]
        if root in picked:
            out[i] = picked[root]
    return out


@dataclass(frozen=True)
class PlanContext:
    """What planning one clip reads (all on the CPU, ~13 KB pickled): sent to planner processes with each task."""

    masks: MaskModel
    scene: SceneModel
    settings: SynthesisSettings
    statistics: dict
    crop_size: int


def plan_clip(ctx: PlanContext, seed: np.random.SeedSequence, num_frames: int, padded: tuple[int, int]) -> tuple:
    """One clip's part of a :class:`ClipPlan`, from its seed alone (module level: it runs in worker processes)."""
    s = ctx.settings
    # Unlabelled nuclei come on top of the labelled density, so labelled cells keep the fitted density.
    rate = ctx.scene.unlabelled_rate if s.unlabelled and len(ctx.scene.unlabelled_contrast) > 1 else 0.0
    density = (ctx.masks.density if s.density is None else s.density) * (1 + rate)
    stats = edge_statistics(ctx.statistics, s.edge, s.edge_shift)
    mask_seed, texture_seed = child_seed(seed, 0), child_seed(seed, 1)
    sim = simulate_masks(ctx.masks, num_frames, padded, seed=mask_seed, density=density)
    hide_rng = np.random.default_rng(child_seed(seed, 2))
    hidden = unlabelled_lineages(sim["tracks"].numpy(), rate / (1 + rate), hide_rng)
    hidden_contrast = (ctx.scene.sample_unlabelled_contrast(len(set(hidden.values())), hide_rng)
                       if hidden else np.zeros(0))
    labels = sim["masks"].numpy()
    pressed: list[dict[int, set[int]]] = [{} for _ in range(num_frames)]
    if s.pressed > 0 and labels.any():
        draw = np.random.default_rng(child_seed(seed, 3)).random(int(labels.max()) + 1)
        pressed = [pressed_partners(labels[t], s.pressed, draw) for t in range(num_frames)]
    crops = [_cell_crops(labels[t], ctx.crop_size, pressed[t]) for t in range(num_frames)]
    parents = {int(r[0]): int(r[3]) for r in sim["tracks"].tolist()}
    new, carried = [], []
    for t in range(num_frames):
        for cid in sorted(crops[t]):
            if s.independent_frames or t == 0:
                new.append((t, cid))
            elif cid in crops[t - 1]:
                carried.append((t, cid, cid))
            elif parents.get(cid, 0) in crops[t - 1]:
                carried.append((t, cid, parents[cid]))
            else:
                new.append((t, cid))
    state = texture_seed.generate_state(1, np.uint64)[0]
    areas = [int(crops[t][cid].mask.sum()) for t, cid in new] if s.brightness == "by_area" else None
    values = sample_brightness(stats, len(new), torch.Generator().manual_seed(int(state >> 1)), areas).tolist()
    for i, (_, cid) in enumerate(new):
        if cid in hidden:
            values[i] = stats["background_mean"] + float(hidden_contrast[hidden[cid]])
    return sim, crops, parents, hidden, int(state & MASK32), new, carried, values


def _plan_clip_as_numpy(ctx: PlanContext, seed: np.random.SeedSequence, num_frames: int,
                        padded: tuple[int, int]) -> tuple:
    """:func:`plan_clip` in a worker process, its simulation's tensors as numpy: torch pickles each tensor
    through shared memory, which made planning in processes slower than inline."""
    sim, *rest = plan_clip(ctx, seed, num_frames, padded)
    return ({k: v.numpy() if isinstance(v, torch.Tensor) else v for k, v in sim.items()}, *rest)


def _from_numpy(part: tuple) -> tuple:
    sim, *rest = part
    return ({k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in sim.items()}, *rest)


def _done(value: Any) -> Future:
    """A future that already holds ``value``."""
    future: Future = Future()
    future.set_result(value)
    return future


def _one_thread() -> None:
    """Worker processes run one torch thread each: several processes of many threads each would oversubscribe."""
    torch.set_num_threads(1)


class Synthesizer:
    """Loads a bundle once and turns seeds into annotated clips.

    Example:
        >>> synth = Synthesizer("hela")  # doctest: +SKIP
        >>> clips = synth.generate([np.random.SeedSequence(0)], num_frames=4, size=(128, 128))  # doctest: +SKIP
    """

    def __init__(self, bundle: str | Bundle = "hela", device: str | torch.device = "cpu",
                 settings: SynthesisSettings = SynthesisSettings(), cpu_workers: int | None = None) -> None:
        bundle = bundle if isinstance(bundle, Bundle) else Bundle.load(bundle)
        self.bundle = bundle
        self.device = as_device(device)
        # Processes planning masks and redrawing labels from the painting: none on the CPU (painting dominates
        # there), several on an accelerator, where the painting is fast and this CPU work would set the pace.
        self.cpu_workers = (0 if self.device.type == "cpu" else DEVICE_CPU_WORKERS) \
            if cpu_workers is None else cpu_workers
        self._cpu_pool: ProcessPoolExecutor | None = None
        self.settings = settings
        self.masks = MaskModel.load(bundle)
        self.texture = TextureModel.load(bundle, self.device, settings.bf16, settings.compile)
        self.flow, flow_crop = load_flow(bundle, self.device)
        self.scene = SceneModel.load(bundle)
        if flow_crop != self.texture.crop_size:
            raise BVDMDataError(f"{bundle.root}: flow crops are {flow_crop} px but texture crops "
                                f"{self.texture.crop_size} px; refit one of them")
        settings.check(self.texture.denoiser.schedule.num_steps)
        if settings.glow and self.scene.glow_weight <= 0:
            why = ("its background is photon counts, whose medians carry no glow" if self.scene.photon_step > 0 else
                   "none was measured: run bvdm-data fit-statistics on frames whose every cell is outlined")
            raise BVDMDataError(f"{bundle.root}: glow=True needs the scene's glow law, and this bundle has none ({why})")
        if settings.brightness == "by_area" and self.texture.statistics.get("cell_mean_by_area") is None:
            raise BVDMDataError(f"{bundle.root}: brightness='by_area' needs the bundle's brightness law by size "
                                "(fitted by bvdm-data fit-statistics since 2026-11-28, from 100 or more whole cells)")
        has_profile = "edge_profile" in self.texture.statistics
        self.label_law = self.texture.statistics.get("label_law")
        if settings.labels == "profile" and not has_profile:
            raise BVDMDataError(f"{bundle.root}: labels='profile' needs the measured edge profile; run "
                                "bvdm-data fit-statistics on this bundle first")
        if settings.labels == "painted" and self.label_law is None:
            raise BVDMDataError(f"{bundle.root}: labels='painted' needs the bundle's label law (fitted by bvdm-data "
                                "fit-statistics since 2026-11-27); labels='profile' uses its edge profile")
        # What "auto" means for this bundle; recorded in every clip's meta as synth_labels.
        self.labels = settings.labels if settings.labels != "auto" else \
            ("painted" if self.label_law is not None else
             "profile" if has_profile and settings.edge != "blur" else "masks")
        if settings.density is not None:
            check_density_fits(settings.density, float(np.exp(self.masks.log_area_mean[0])))

    def check_size(self, size: tuple[int, int]) -> tuple[int, int]:
        """``(H, W)`` if a frame of that size holds at least one cell of median size, else a one-line error."""
        h, w = as_size(size)
        diameter = 2 * self.masks.median_radius()
        if min(h, w) < diameter:
            raise BVDMDataError(f"size {h}x{w} is smaller than one cell (median diameter {diameter:.0f} px)")
        density = self.masks.density if self.settings.density is None else self.settings.density
        expected = density * h * w
        if expected < MOSTLY_EMPTY_CELLS:
            warnings.warn(f"frames of {h}x{w} at {density:.3g} cells/px^2 hold {expected:.1f} cells on average; "
                          f"about {np.exp(-expected):.0%} of clips will start empty (raise size or density)",
                          stacklevel=3)
        return h, w

    @property
    def crop_size(self) -> int:
        return self.texture.crop_size

    def plan(self, seeds: Sequence[np.random.SeedSequence], num_frames: int, size: tuple[int, int]) -> ClipPlan:
        """Everything but the painting, on the CPU: masks, lineage, which cells are new or carried, brightness.

        Each clip's part depends on its seed alone; with ``cpu_workers``
        (the default on an accelerator) worker processes plan clips in
        parallel (threads gained nothing: the work holds the GIL), and the
        result does not depend on it. :meth:`paint` then does the device work;
        :class:`~bvdm_data.stream.BVDMStream` plans the next batch while the
        device paints this one.
        """
        h, w = self.check_size(size)
        if num_frames < 1:
            raise BVDMDataError(f"clips need at least 1 frame, got {num_frames}")
        plan = ClipPlan(size=(h, w), padded=painted_field((h, w), self.crop_size // 2, self.settings.magnification),
                        num_frames=num_frames)
        ctx = PlanContext(self.masks, self.scene, self.settings, self.texture.statistics, self.crop_size)
        pool = self._pool() if len(seeds) > 1 else None
        if pool is not None:
            parts = [_from_numpy(p) for p in pool.map(_plan_clip_as_numpy, itertools.repeat(ctx), seeds,
                                                       itertools.repeat(num_frames), itertools.repeat(plan.padded))]
        else:
            parts = [plan_clip(ctx, seed, num_frames, plan.padded) for seed in seeds]
        for k, (sim, crops, parents, hidden, key, new, carried, values) in enumerate(parts):
            plan.new += [(k, t, cid) for t, cid in new]
            plan.carried += [(k, t, cid, src) for t, cid, src in carried]
            plan.values.update(((k, t, cid), v) for (t, cid), v in zip(new, values))
            plan.sims.append(sim)
            plan.crops.append(crops)
            plan.parents.append(parents)
            plan.hidden.append(hidden)
            plan.keys.append(key)
        return plan

    def _calls(self, items: list) -> list[list]:
        cap = self.settings.cell_batch or (CPU_CELL_BATCH if self.device.type == "cpu" else DEVICE_CELL_BATCH)
        return [items[i:i + cap] for i in range(0, len(items), cap)]

    def _paint_new(self, plan: ClipPlan, items: list[tuple[int, int, int]], stats: dict,
                   textures: dict[tuple[int, int, int], torch.Tensor]) -> None:
        """First paint of ``items`` ``(clip, frame, id)``: SDEdit from the mask at ``t_s`` (or the flat baseline)."""
        s = self.settings
        for part in self._calls(items):
            masks = _stacked([plan.crops[k][t][cid].painted_on for k, t, cid in part], self.device)
            values = torch.tensor([plan.values[item] for item in part])
            keys = torch.tensor([derive_key(plan.keys[k], FIRST_PAINT, t, cid) for k, t, cid in part])
            if s.texture == "flat":
                out = paint_flat(stats, masks, values, keys)
            else:
                out = paint_first_frame(self.texture.denoiser, stats, masks, values, keys, s.t_s, s.sampler,
                                        s.stride, detail_only=s.texture == "detail")
            textures.update(zip(part, out))

    def _carry(self, plan: ClipPlan, items: list[tuple[int, int, int, int]], stats: dict,
               textures: dict[tuple[int, int, int], torch.Tensor]) -> None:
        """Carry ``items`` ``(clip, frame, id, source id)`` from their texture one frame earlier (flow + ``t_f``)."""
        s = self.settings
        for part in self._calls(items):
            moving = _stacked([plan.crops[k][t - 1][src].painted_on for k, t, _, src in part], self.device)
            fixed = _stacked([plan.crops[k][t][cid].painted_on for k, t, cid, _ in part], self.device)
            previous = torch.stack([textures[(k, t - 1, src)] for k, t, _, src in part])
            keys = torch.tensor([derive_key(plan.keys[k], CARRY, t, cid) for k, t, cid, _ in part])
            out = carry_over(self.texture.denoiser, self.flow, previous, moving, fixed, self.scene.alpha,
                             stats["background_mean"], keys, 0 if s.texture == "flat" else s.t_f, s.sampler,
                             s.stride)
            textures.update(((k, t, cid), o) for (k, t, cid, _), o in zip(part, out))

    def paint(self, plan: ClipPlan, meta: Sequence[dict[str, Any]] | None = None) -> list[Clip]:
        """The clips of a :meth:`plan`, painted on the device. ``meta`` entries are merged into each clip's meta.

        The same as ``paint_started(plan, meta)()``.
        """
        return self.paint_started(plan, meta)()

    @torch.no_grad()
    def paint_started(self, plan: ClipPlan,
                      meta: Sequence[dict[str, Any]] | None = None) -> Callable[[], list[Clip]]:
        """Paint a :meth:`plan` on the device now; the returned call finishes its clips (labels, crops).

        With worker processes (``cpu_workers``) the labels are redrawn from
        the painting in them while the caller goes on, e.g. painting the next
        batch (:func:`~bvdm_data.stream.paint_indices` does): the clips are
        those of :meth:`paint`.

        ``schedule="wide"`` paints every first appearance of every clip and
        frame in one pass (a new cell depends only on its own mask), then
        carries cells frame by frame: about ``t_s + (T - 1) t_f`` sequential
        network calls per batch. ``"frame"`` paints the new cells of each
        frame just before carrying that frame (``T (t_s + t_f)`` calls), the
        reference order; both give the same clips, as every cell's noise
        comes from its own key.
        """
        s = self.settings
        stats = edge_statistics(self.texture.statistics, s.edge, s.edge_shift)
        textures: dict[tuple[int, int, int], torch.Tensor] = {}
        if s.schedule == "wide":
            self._paint_new(plan, plan.new, stats, textures)
        backgrounds = [self.scene.background(plan.num_frames, plan.padded, derive_key(key, BACKGROUND), self.device)
                       for key in plan.keys]
        frames = [list(b) for b in backgrounds]
        new_at, carried_at = _by_frame(plan.new, plan.num_frames), _by_frame(plan.carried, plan.num_frames)
        for t in range(plan.num_frames):
            if s.schedule == "frame":
                self._paint_new(plan, new_at[t], stats, textures)
            self._carry(plan, carried_at[t], stats, textures)
            # Every clip's frame t in one paste: one alpha, one scatter, no per-clip transfers.
            cells = [(k, cid) for k, crops in enumerate(plan.crops) for cid in sorted(crops[t])]
            if cells:
                shown = [plan.crops[k][t][cid] for k, cid in cells]
                cut = None
                if any(c.cut is not None for c in shown):  # a pressed cell's light gives way to its partner's
                    empty = np.zeros_like(shown[0].mask)
                    cut = _stacked([empty if c.cut is None else c.cut for c in shown], self.device)
                alpha = self.scene.alpha(_stacked([c.mask for c in shown], self.device), cut)
                tex = torch.stack([textures[(k, t, cid)] for k, cid in cells])
                place = torch.tensor([(k, *c.corner) for (k, _), c in zip(cells, shown)], device=self.device)
                composed = compose(torch.cat([frames[k][t] for k in range(len(frames))]), tex,
                                   alpha, place[:, 1:], place[:, 0], s.overlap)
                for k in range(len(frames)):
                    frames[k][t] = composed[k:k + 1]
            for key in [key for key in textures if key[1] < t]:  # carried on from, no longer needed
                del textures[key]
        videos = [torch.stack(frames[k]) for k in range(len(plan.sims))]
        labels = [sim["masks"].numpy() for sim in plan.sims]
        if s.glow:  # before the labels are read from the painting: real annotations saw the glow too
            videos = [self.scene.add_glow(v, b, sim["masks"].to(self.device))
                      for v, b, sim in zip(videos, backgrounds, plan.sims)]
        # One transfer for the whole batch: a copy per clip was a stall per clip on a GPU (192 per 64 clips).
        painted = torch.stack(videos)
        gains = [contrast_gain(key, s.contrast) if s.contrast is not None else None for key in plan.keys]
        zooms = [keyed_log_uniform(key, MAGNIFY, s.magnification) if s.magnification is not None else None
                 for key in plan.keys]
        regions = [view_region(plan.size, plan.padded, zoom) for zoom in zooms]
        views = self._views(plan, painted, gains, regions)
        if self.labels in ("painted", "profile"):
            redrawn = self._labels_from_painting(painted.float().cpu(), torch.stack(backgrounds).float().cpu(),
                                                 labels)
        else:
            redrawn = [_done(lab) for lab in labels]

        def finish() -> list[Clip]:
            return [self._finish(plan, k, views[k], gains[k], zooms[k], regions[k], redrawn[k].result(),
                                 meta[k] if meta is not None else {}) for k in range(len(plan.sims))]

        return finish

    def _labels_from_painting(self, videos: torch.Tensor, backgrounds: torch.Tensor,
                              labels: list[np.ndarray]) -> list[Future]:
        """Every clip's labels redrawn from its painting (``videos``, ``backgrounds``: ``[K, T, 1, H, W]`` float32
        on the CPU; synth/annotation.py), as futures: in worker processes when ``cpu_workers`` is set (the default
        on an accelerator, where it would otherwise set the pace: 27 ms of CPU per padded 320^2 frame,
        benchmarks/results/relabel_cpu.txt), else done inline."""
        profile = edge_statistics(self.texture.statistics, self.settings.edge).get("edge_profile")
        law = self.label_law if self.labels == "painted" else None
        jobs = [(v[:, 0].numpy(), b[:, 0].numpy(), lab, profile, law)
                for v, b, lab in zip(videos, backgrounds, labels)]
        pool = self._pool() if len(jobs) > 1 else None
        if pool is not None:
            return [pool.submit(relabel_clip, *job) for job in jobs]
        return [_done(relabel_clip(*job)) for job in jobs]

    @property
    def uses_worker_processes(self) -> bool:
        """Whether CPU work (planning, relabelling) runs in worker processes here (not inline)."""
        return self._pool() is not None

    def _pool(self) -> ProcessPoolExecutor | None:
        """The worker processes for CPU work (planning, relabelling), started on first use; ``None``: work inline.

        A DataLoader worker is a daemon process, which may not start processes of its own: it works inline.
        """
        if self.cpu_workers < 2 or multiprocessing.current_process().daemon:
            return None
        if self._cpu_pool is None:
            context = multiprocessing.get_context("spawn")  # no fork of a process holding CUDA state
            self._cpu_pool = ProcessPoolExecutor(self.cpu_workers, mp_context=context, initializer=_one_thread)
        return self._cpu_pool

    def _views(self, plan: ClipPlan, painted: torch.Tensor, gains: Sequence[float | None],
               regions: Sequence[tuple[int, int, int, int]]) -> torch.Tensor:
        """The clips as delivered, before labels: each clip's view (``regions``, :func:`view_region`) of the padded
        painting (``[K, T, 1, H, W]`` on the device), resampled to the view's size where its magnification asks,
        its contrast gain applied, 0..1, its image formation drawn; float32 on the CPU. All on the device, one
        transfer for the batch."""
        h, w = plan.size
        if self.settings.magnification is None:  # every view the centre of the painting: one crop for all
            top, left, _, _ = regions[0]
            video = painted[..., top:top + h, left:left + w].float()
        else:  # bilinear, antialiased where the view shrinks cells: what a camera at that magnification records
            video = torch.stack([torch.nn.functional.interpolate(
                clip[..., top:top + rh, left:left + rw].float(), size=(h, w), mode="bilinear", align_corners=False,
                antialias=True) for clip, (top, left, rh, rw) in zip(painted, regions)])
        if self.settings.contrast is not None:
            level = self.scene.background_mean
            video = level + torch.tensor(gains, device=video.device).view(-1, 1, 1, 1, 1) * (video - level)
        video = ((video + 1) / 2).clamp(0, 1)
        if self.settings.formation is not None:
            video = vary_formation(video, plan.keys, self.settings.formation)
        return video.cpu()

    def _finish(self, plan: ClipPlan, k: int, video: torch.Tensor, gain: float | None, zoom: float | None,
                region: tuple[int, int, int, int], labels: np.ndarray, meta: dict[str, Any]) -> Clip:
        """One clip from its view (:meth:`_views`) and its padded labels: the labels of the view's region at the
        view's size, the unlabelled lineages hidden, relabelled, the meta written."""
        view = resample_labels(labels, region, plan.size)
        hidden, parents = plan.hidden[k], plan.parents[k]
        if hidden:
            view = np.where(np.isin(view, list(hidden)), 0, view)
        masks, tracks = relabel_tracks(view, {i: p for i, p in parents.items() if i not in hidden})
        settings = {n: v for n, v in asdict(self.settings).items()
                    if v is not None and n not in ("contrast", "formation", "magnification")}
        clip_meta = {"source": "bvdm", "bundle": self.bundle.name, **{f"synth_{n}": v for n, v in settings.items()},
                     "synth_labels": self.labels, **dict(meta)}
        if self.settings.contrast is not None:  # the contract's meta holds scalars: the range as two entries
            clip_meta.update(synth_contrast_lo=self.settings.contrast[0], synth_contrast_hi=self.settings.contrast[1],
                             synth_gain=gain)
        if self.settings.magnification is not None:
            lo, hi = self.settings.magnification
            clip_meta.update(synth_magnification_lo=lo, synth_magnification_hi=hi, synth_magnification=zoom)
        if self.settings.formation is not None:
            clip_meta.update(formation_meta(self.settings.formation))
        # A clone, not the batch's storage: a clip saved or sent to another process would carry the whole batch.
        return {"video": video.clone(),
                "masks": torch.from_numpy(masks), "tracks": torch.from_numpy(tracks), "meta": clip_meta}

    def generate(self, seeds: Sequence[np.random.SeedSequence], num_frames: int, size: tuple[int, int],
                 meta: Sequence[dict[str, Any]] | None = None) -> list[Clip]:
        """One clip per seed, all painted together (:meth:`plan`, then :meth:`paint`).

        A clip depends only on its seed and the settings: not on the other
        seeds, the batch, ``cell_batch`` or ``schedule`` (on one device, up
        to float rounding). CPU and CUDA give pixels equal to float rounding;
        with the simulated masks as labels the same masks and tracks, while
        labels redrawn from the painting can differ where a pixel sits within
        that rounding of the threshold.
        """
        return self.paint(self.plan(seeds, num_frames, size), meta)
