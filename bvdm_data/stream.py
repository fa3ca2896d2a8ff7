"""``BVDMStream``: unlimited fresh annotated clips as a PyTorch ``IterableDataset``.

Clip ``k`` of epoch ``e`` is a pure function of ``(seed, e, k)``. The index
stream is dealt out round-robin over distributed ranks and DataLoader
workers (rank ``r`` of ``R``, worker ``w`` of ``W`` takes
``k = r * W + w (mod R * W)``), so no two workers or ranks yield the same
clip and the set of clips does not depend on the number of workers.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import IterableDataset, get_worker_info

from bvdm_data.arguments import as_density, as_int, as_size
from bvdm_data.bundle import Bundle
from bvdm_data.clip import Clip
from bvdm_data.diffusion.sample import DEFAULT_SAMPLER
from bvdm_data.errors import ArgumentError
from bvdm_data.photometric import Photometric
from bvdm_data.synth.pipeline import SynthesisSettings, Synthesizer, default_gen_batch


def shard() -> tuple[int, int]:
    """``(position, count)`` of this process among all ranks x DataLoader workers."""
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_available() and dist.is_initialized() else (0, 1)
    info = get_worker_info()
    worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
    return rank * workers + worker, world * workers


def clip_seed(seed: int, epoch: int, index: int) -> np.random.SeedSequence:
    """The seed of clip ``index`` of ``epoch``."""
    return np.random.SeedSequence([seed, epoch, index])


def paint_indices(synth: Synthesizer, indices: Iterable[int], seed: int, epoch: int, clip_len: int,
                  size: tuple[int, int], gen_batch: int) -> Iterator[Clip]:
    """Clips ``indices`` of ``(seed, epoch)``, painted ``gen_batch`` at a time: what every consumer generates.

    The next batch is planned (masks, on the CPU) in a thread while this one
    is painted; on an accelerator that thread hands the clips to the
    synthesizer's worker processes, which also redraw this batch's labels
    while the device paints the next one, as the CPU work then sets the
    pace. :class:`BVDMStream` and ``bvdm-data cache`` both use it, so a clip
    is the same from either.
    """
    indices = iter(indices)

    def plan(chunk: list[int]) -> Any:
        if not chunk:
            return None
        return synth.plan([clip_seed(seed, epoch, k) for k in chunk], clip_len, size)

    with ThreadPoolExecutor(1) as ahead:
        chunk = list(itertools.islice(indices, gen_batch))
        planned = plan(chunk)
        finish = None  # the batch painted last, its labels still being redrawn in worker processes
        while planned is not None:
            following = list(itertools.islice(indices, gen_batch))
            pending = ahead.submit(plan, following)
            started = synth.paint_started(planned, [{"index": k, "epoch": epoch, "seed": seed} for k in chunk])
            if finish is not None:
                yield from finish()
                finish = None
            if synth.uses_worker_processes:
                finish = started
            else:  # the work was done inline: nothing to overlap, so the batch need not wait for the next
                yield from started()
            planned, chunk = pending.result(), following
        if finish is not None:
            yield from finish()


class BVDMStream(IterableDataset):
    """Synthetic annotated clips from a fitted bundle.

    Args:
        bundle: a shipped bundle name (``"hela"``) or a bundle folder.
        clip_len: frames per clip.
        size: ``(H, W)`` of the frames.
        seed: clip ``k`` of epoch ``e`` depends on ``(seed, e, k)`` only.
        num_clips: clips per epoch over all workers and ranks; ``None`` is endless.
        t_s, t_f, sampler, stride: how textures are painted: by default 200, 10 (the paper's) and DDIM every
            4th step (``stride=None``: 4 for DDIM, 1 for DDPM). The paper's full DDPM is ``sampler="ddpm"``:
            4x the network calls, and its clips mixed worse with real frames (benchmarks/RESULTS.md §1).
        density: cells per px^2 in the first frame (default: the fitted density).
        device: where the networks run; with ``"cuda"`` generate in the main
            process (``num_workers=0``) or use ``multiprocessing_context="spawn"``.
        bf16: run the DDPM in bf16 (weights and activations; 1.26x its fp32 speed alone on an H200, pixels
            change by float rounding).
        compile: ``torch.compile`` the DDPM (CUDA graphs and channels-last on a GPU); 10-25 s to compile per
            process on an H200, then 2.3x faster painting there (DDIM /4, 64 clips; benchmarks/RESULTS.md §4);
            changes outputs slightly (float rounding).
        gen_batch: clips generated together (one network call per denoising step for all their cells);
            ``None``: 1 on the CPU, ``DEVICE_GEN_BATCH`` (64) on an accelerator, where the next batch's
            masks are planned on the CPU while this one is painted (peak memory and rates:
            benchmarks/results/gpu_generation_cuda.json).
        tv_tensors: wrap ``video``/``masks`` as ``torchvision.tv_tensors.Video``/``Mask`` so
            ``torchvision.transforms.v2`` transforms both consistently.
        independent_frames: paint every frame from scratch, without flow (an ablation: it flickers).
        texture: ``"ddpm"``, ``"flat"`` for CellCycleGAN-style flat cells (the baseline of ablations), or
            ``"detail"``: only the DDPM's fine texture, on the flat cell's measured envelope (an experiment).
        cell_batch: at most this many cells per network call (caps memory; pixels do not depend
            on it); ``None``: 256 on the CPU, 4096 on an accelerator.
        edge: how a new cell's start image meets the background: ``"by_brightness"`` (default: the edge
            profile measured on the real annotation, per cell brightness), ``"mean"`` (one profile) or
            ``"blur"`` (a flat mask blurred 1 px; an ablation).
        edge_shift: px the painted edge sits outside its mask beyond the measured profile (negative:
            inside), where the annotation convention sits on a cell's soft edge.
        unlabelled: also paint the nuclei the real annotation leaves out, at its measured rate and
            contrast, without labelling them (off by default: on HeLa it lowered SEG downstream).
        glow: add the cells' out-of-focus light at the share and spread the scene measured on the real
            frames (off by default: on HeLa it left SEG unchanged downstream; needs a scene fitted with its
            glow law).
        labels: ``"painted"``: each label redrawn from its painted cell at the threshold the real annotation
            uses (the bundle's label law); ``"profile"``: redrawn at the edge profile's midpoint (the rule
            before the label law; +0.029 SEG over the masks downstream on HeLa, RESULTS.md §1); ``"masks"``: the
            simulated masks (an ablation); ``"auto"`` (default): painted where the bundle has a label law, else
            profile where it has an edge profile and ``edge`` is not ``"blur"``, else masks.
        overlap: where cells' soft footprints meet, ``"add"`` (default) sums their light, as fluorescence
            does, or ``"average"`` averages their paintings (a dark seam between touching cells; the rule
            before 2026-11-27).
        pressed: the share of touching cell pairs painted pressed against each other (no dark seam where
            they meet, their light giving way across the contact line, as real nuclei pushing on each other
            show); 1 (default) presses every touching pair, 0 paints them as free cells whose light adds
            (the rule until 2026-11-27).
        brightness: ``"marginal"`` (default) draws each new cell's brightness from the real cells' law,
            ``"by_area"`` from the law of real cells of its size (an ablation; needs a bundle whose
            ``fit-statistics`` ran since 2026-11-28).
        contrast: ``None`` (default) or a range ``(lo, hi)``: each clip's light above the background is scaled
            by one gain drawn log-uniformly from it (recorded as ``meta["synth_gain"]``), as another recording
            normalised by its own percentiles shows its nuclei brighter or dimmer; labels are unchanged.
            Domain randomisation, an ablation: gains of 0.5..2 cost SEG downstream on HeLa and GOWT1
            (benchmarks/RESULTS.md §1).
        formation: a :class:`~bvdm_data.Photometric` (default: ``Photometric()``, contrast x0.5..2, blur
            0.3..2 px and noise x1..4, each drawn with probability 0.5) or ``None``: each clip's contrast, focus
            and noise drawn anew (one draw per clip from its key; labels unchanged), as another microscope would
            record the same cells (meta ``synth_formation_*``; ``Photometric().only(["blur", "noise"])`` draws
            those alone). Mixed with unchanged real frames on HeLa it made the segmenter far steadier under blur
            and contrast (SEG 0.899 against 0.844 under a 2-px blur) at 0.001 SEG on the recording the real
            frames come from; on GOWT1's other recording it raised SEG by 0.011 and, with the segmenter's size
            filter at GOWT1's scale, kept its DET (benchmarks/RESULTS.md §1, "Image formation varied"). ``None``
            shows every clip as the fitted recording would.
        magnification: ``None`` (default) or a range ``(lo, hi)``: each clip shows its cells at a magnification
            drawn log-uniformly from it (meta ``synth_magnification``), as another objective or camera binning
            would: cells and labels larger or smaller, the frame the same size. A range below 1 paints a larger
            field (0.8 on 256^2 views: 1.44x the cells).
        transform: called on each clip before it is yielded (after ``tv_tensors`` wrapping), like
            ``CTCClips`` and ``LMDBClips``; after a crop, :func:`~bvdm_data.clip.restore_contract`
            makes the clip meet the contract again.

    Example:
        >>> from torch.utils.data import DataLoader
        >>> from bvdm_data import collate_clips
        >>> stream = BVDMStream("hela", clip_len=8, size=(256, 256), seed=0)  # doctest: +SKIP
        >>> batch = next(iter(DataLoader(stream, batch_size=2, collate_fn=collate_clips)))  # doctest: +SKIP
    """

    def __init__(self, bundle: str = "hela", *, clip_len: int = 8, size: tuple[int, int] = (256, 256), seed: int = 0,
                 num_clips: int | None = None, t_s: int = 200, t_f: int = 10, sampler: str = DEFAULT_SAMPLER,
                 stride: int | None = None, density: float | None = None, device: str | torch.device = "cpu",
                 bf16: bool = False, compile: bool = False, gen_batch: int | None = None, tv_tensors: bool = False,
                 independent_frames: bool = False,
                 texture: str = "ddpm", cell_batch: int | None = None, edge: str = "by_brightness",
                 edge_shift: float = 0.0, unlabelled: bool = False, glow: bool = False, labels: str = "auto",
                 overlap: str = "add", pressed: float = 1.0, brightness: str = "marginal",
                 contrast: tuple[float, float] | None = None, formation: Photometric | None = Photometric(),
                 magnification: tuple[float, float] | None = None,
                 transform: Callable[[Clip], Any] | None = None) -> None:
        super().__init__()
        clip_len, seed = as_int("clip_len", clip_len, 1), as_int("seed", seed, 0)
        num_clips = None if num_clips is None else as_int("num_clips", num_clips, 0)
        gen_batch = default_gen_batch(device) if gen_batch is None else as_int("gen_batch", gen_batch, 1)
        size = as_size(size)
        self.bundle = str(Bundle.load(bundle).root)  # fails now, naming the problem, if the bundle is bad
        self.settings = SynthesisSettings(t_s=t_s, t_f=t_f, sampler=sampler, stride=stride,
                                          density=as_density(density), bf16=bf16, compile=bool(compile),
                                          independent_frames=independent_frames, texture=texture,
                                          cell_batch=cell_batch, edge=edge, edge_shift=float(edge_shift),
                                          unlabelled=unlabelled, glow=bool(glow), labels=labels,
                                          overlap=overlap, pressed=float(pressed), brightness=brightness,
                                          contrast=contrast, formation=formation, magnification=magnification)
        self.clip_len, self.size, self.seed = clip_len, size, seed
        self.num_clips, self.device, self.gen_batch, self.tv_tensors = num_clips, device, gen_batch, tv_tensors
        self.transform = transform
        # In shared memory, so that set_epoch reaches DataLoader workers that persist across epochs.
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()
        self._skip = 0
        self._yielded = 0
        self._synth: Synthesizer | None = None
        # Device, settings and sizes are checked against the models before any clip is made.
        self._synthesizer().check_size(self.size)

    def __repr__(self) -> str:
        s = self.settings
        return (f"BVDMStream(bundle={self.bundle!r}, clip_len={self.clip_len}, size={self.size}, seed={self.seed}, "
                f"num_clips={self.num_clips}, epoch={self.epoch}, texture={s.texture!r}, t_s={s.t_s}, t_f={s.t_f}, "
                f"sampler={s.sampler!r}, stride={s.stride}, density={s.density}, formation={s.formation}, "
                f"{'' if s.magnification is None else f'magnification={s.magnification}, '}"
                f"device={str(self.device)!r})")

    def _synthesizer(self) -> Synthesizer:
        if self._synth is None:
            self._synth = Synthesizer(self.bundle, self.device, self.settings)
        return self._synth

    def __getstate__(self) -> dict[str, Any]:
        # Workers rebuild the models themselves (cheap), instead of receiving pickled copies.
        return {**self.__dict__, "_synth": None}

    @property
    def epoch(self) -> int:
        return int(self._epoch)

    @epoch.setter
    def epoch(self, value: int) -> None:
        self._epoch.fill_(as_int("epoch", value, 0))

    def set_epoch(self, epoch: int) -> None:
        """Draw a new set of clips; call at the start of every epoch (as with ``DistributedSampler``).

        Reaches workers of a ``DataLoader(..., persistent_workers=True)`` too (the epoch lives in shared memory).
        """
        self.epoch = epoch

    def __len__(self) -> int:
        if self.num_clips is None:
            raise TypeError("an endless BVDMStream has no length; pass num_clips")
        position, count = shard()
        return len(range(position, self.num_clips, count))

    def state_dict(self) -> dict[str, int]:
        """Where this worker's iteration stands (for ``torchdata``'s ``StatefulDataLoader``)."""
        return {"epoch": self.epoch, "yielded": self._yielded}

    def load_state_dict(self, state: dict[str, int]) -> None:
        missing = [k for k in ("epoch", "yielded") if k not in state]
        if missing:
            raise ArgumentError(f"BVDMStream state lacks {missing}; it holds 'epoch' and 'yielded' "
                                f"(from state_dict()), got keys {sorted(state)}")
        self.epoch = state["epoch"]
        self._skip = as_int("yielded", state["yielded"], 0)

    def indices(self) -> Iterator[int]:
        """The clip indices this worker/rank yields, in order."""
        position, count = shard()
        stop = self.num_clips
        return iter(range(position, stop, count)) if stop is not None else itertools.count(position, count)

    def __iter__(self) -> Iterator[Clip]:
        synth = self._synthesizer()
        epoch = self.epoch
        indices = self.indices()
        self._yielded = self._skip
        for _ in range(self._skip):
            next(indices, None)
        self._skip = 0
        for clip in paint_indices(synth, indices, self.seed, epoch, self.clip_len, self.size, self.gen_batch):
            self._yielded += 1
            yield self._wrap(clip)

    def _wrap(self, clip: Clip) -> Any:
        if self.tv_tensors:
            from torchvision import tv_tensors

            clip = {**clip, "video": tv_tensors.Video(clip["video"]), "masks": tv_tensors.Mask(clip["masks"])}
        return self.transform(clip) if self.transform is not None else clip
