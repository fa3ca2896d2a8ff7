"""The BVDM pipeline: simulated masks -> cell textures -> scene, for several clips at once.

Per frame, every cell of every clip in flight is painted in at most two
network passes (paper, section 2):

* a cell seen for the first time (present in frame 0, entering the view, or
  with no parent texture) is painted by SDEdit from a flat image of its mask,
  noised to ``t_s``;
* a cell seen before is carried over: the flow model maps its previous mask
  onto its new one, its previous texture is warped along that flow (Kornia)
  and refined by ``t_f`` denoising steps; a daughter starts from its mother's
  last texture warped onto her own mask.

Clips are simulated on a view padded by half a crop, so that cells at the
border are textured whole, then cropped and relabelled. Each clip draws all
its randomness from its own seed, in a fixed order, so a clip is the same
whatever other clips share its batch.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from scipy import ndimage

from bvdm_data.arguments import as_density, as_device, as_size, check_density_fits
from bvdm_data.bundle import Bundle
from bvdm_data.clip import Clip, relabel_tracks
from bvdm_data.diffusion.sample import SAMPLERS
from bvdm_data.diffusion.texture import TextureModel
from bvdm_data.errors import BVDMDataError
from bvdm_data.flow.model import load_flow
from bvdm_data.masks.model import MaskModel
from bvdm_data.masks.simulate import simulate_masks
from bvdm_data.synth.propagation import carry_over, draw_brightness, paint_first_frame, paint_flat
from bvdm_data.synth.scene import SceneModel, compose


TEXTURES = ("ddpm", "flat", "detail")
EDGES = ("by_brightness", "mean", "blur")
MOSTLY_EMPTY_CELLS = 1.0  # expected cells per frame under which a request warns (over a third start empty)


@dataclass(frozen=True)
class SynthesisSettings:
    """How clips are painted. Paper optimum: ``t_s=200``, ``t_f=10``, full DDPM.

    ``texture="detail"`` keeps only the DDPM's fine texture on the flat start
    image (measured edge and brightness), an experiment (RESULTS.md §1).
    ``texture="flat"`` paints new cells as the flat baseline (drawn brightness,
    blur, noise; no network) and carries them along the flow without
    refinement: the same masks and scene with CellCycleGAN-style textures, for ablations.
    """

    t_s: int = 200
    t_f: int = 10
    sampler: str = "ddpm"
    stride: int = 1
    density: float | None = None  # cells per px^2 in the first frame; None: the fitted density
    bf16: bool = False
    independent_frames: bool = False  # paint every frame from scratch (the paper's flickering ablation)
    texture: str = "ddpm"
    # At most this many cells of one clip per network call: caps memory, and 1 is the reference-style
    # one-cell-at-a-time loop. None: every cell of every clip in flight in one call. Clips depend on
    # cell_batch (the noise is drawn in another order), never on what else is in flight.
    cell_batch: int | None = None
    # Image formation and annotation convention measured from the real data (benchmarks/RESULTS.md, ablation).
    # edge: how a new cell's start image meets the background: "by_brightness" (the edge profile measured on the
    # real annotation, per brightness: bright cells are drawn more generously), "mean" (one measured profile;
    # +0.012 SEG over "blur" on HeLa), "blur" (a flat mask blurred 1 px, before 2026-11-26). unlabelled: paint the
    # nuclei the real labels leave out, at the measured rate and contrast, without labels (off: it cost 0.044
    # SEG). Bundles without these laws fall back to "blur" and no unlabelled nuclei.
    edge: str = "by_brightness"
    unlabelled: bool = False

    def check(self, num_steps: int) -> None:
        if self.edge not in EDGES:
            raise BVDMDataError(f"edge must be one of {EDGES}, got {self.edge!r}")
        if self.texture not in TEXTURES:
            raise BVDMDataError(f"texture must be one of {TEXTURES}, got {self.texture!r}")
        if not 1 <= self.t_s <= num_steps:
            raise BVDMDataError(f"t_s must lie in 1..{num_steps}, got {self.t_s}")
        if not 0 <= self.t_f <= self.t_s:
            raise BVDMDataError(f"t_f must lie in 0..t_s={self.t_s}, got {self.t_f}")
        if self.sampler not in SAMPLERS:
            raise BVDMDataError(f"sampler must be one of {SAMPLERS}, got {self.sampler!r}")
        if self.stride < 1:
            raise BVDMDataError(f"stride must be at least 1, got {self.stride}")
        if self.cell_batch is not None and self.cell_batch < 1:
            raise BVDMDataError(f"cell_batch must be at least 1 or None, got {self.cell_batch}")
        as_density(self.density)


@dataclass
class _Cell:
    """Where one cell's mask sits in one frame: its crop and the crop's top-left corner."""

    mask: torch.Tensor
    corner: tuple[int, int]


def _cell_crops(frame: np.ndarray, size: int) -> dict[int, _Cell]:
    """Mask crops centred on each cell's centroid (the frame is padded, so every cell fits)."""
    half = size // 2
    padded = np.pad(frame, half)
    out = {}
    for label_minus_1, box in enumerate(ndimage.find_objects(frame)):
        if box is None:
            continue
        label = label_minus_1 + 1
        cy, cx = ndimage.center_of_mass(frame[box] == label)
        y0, x0 = int(round(cy)) + box[0].start - half, int(round(cx)) + box[1].start - half
        crop = padded[y0 + half:y0 + half + size, x0 + half:x0 + half + size] == label
        out[label] = _Cell(torch.from_numpy(crop), (y0, x0))
    return out


def _calls(cells: list[tuple], cell_batch: int | None) -> list[list[tuple]]:
    """The network calls for ``cells`` (``(clip, ...)`` tuples, grouped by clip): one for all, or pieces of
    at most ``cell_batch`` cells of a single clip, so that a clip never depends on what else is in flight."""
    if not cells:
        return []
    if cell_batch is None:
        return [cells]
    calls = []
    for k in dict.fromkeys(c[0] for c in cells):
        mine = [c for c in cells if c[0] == k]
        calls += [mine[i:i + cell_batch] for i in range(0, len(mine), cell_batch)]
    return calls


def child_seed(seed: np.random.SeedSequence, i: int) -> np.random.SeedSequence:
    """The ``i``-th child of ``seed``, the same however often it is asked for (``spawn`` is stateful)."""
    return np.random.SeedSequence(seed.entropy, spawn_key=(*seed.spawn_key, i), pool_size=seed.pool_size)


def edge_statistics(statistics: dict, edge: str) -> dict:
    """The texture statistics with the one ``edge_profile`` that ``edge`` asks for (none for ``"blur"``)."""
    out = {k: v for k, v in statistics.items() if k not in ("edge_profile", "edge_profiles")}
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


class Synthesizer:
    """Loads a bundle once and turns seeds into annotated clips.

    Example:
        >>> synth = Synthesizer("hela")  # doctest: +SKIP
        >>> clips = synth.generate([np.random.SeedSequence(0)], num_frames=4, size=(128, 128))  # doctest: +SKIP
    """

    def __init__(self, bundle: str | Bundle = "hela", device: str | torch.device = "cpu",
                 settings: SynthesisSettings = SynthesisSettings()) -> None:
        bundle = bundle if isinstance(bundle, Bundle) else Bundle.load(bundle)
        self.bundle = bundle
        self.device = as_device(device)
        self.settings = settings
        self.masks = MaskModel.load(bundle)
        self.texture = TextureModel.load(bundle, self.device, settings.bf16)
        self.flow, flow_crop = load_flow(bundle, self.device)
        self.scene = SceneModel.load(bundle)
        if flow_crop != self.texture.crop_size:
            raise BVDMDataError(f"{bundle.root}: flow crops are {flow_crop} px but texture crops "
                                f"{self.texture.crop_size} px; refit one of them")
        settings.check(self.texture.denoiser.schedule.num_steps)
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


    @torch.no_grad()
    def generate(self, seeds: Sequence[np.random.SeedSequence], num_frames: int, size: tuple[int, int],
                 meta: Sequence[dict[str, Any]] | None = None) -> list[Clip]:
        """One clip per seed, all painted together. ``meta`` entries are merged into each clip's meta."""
        h, w = self.check_size(size)
        if num_frames < 1:
            raise BVDMDataError(f"clips need at least 1 frame, got {num_frames}")
        s = self.settings
        half = self.crop_size // 2
        padded = (h + 2 * half, w + 2 * half)
        # Unlabelled nuclei come on top of the labelled density, so labelled cells keep the fitted density.
        rate = self.scene.unlabelled_rate if s.unlabelled and len(self.scene.unlabelled_contrast) > 1 else 0.0
        density = (self.masks.density if s.density is None else s.density) * (1 + rate)
        sims, gens, crops, hidden, hidden_contrast = [], [], [], [], []
        for seed in seeds:
            mask_seed, texture_seed = child_seed(seed, 0), child_seed(seed, 1)
            sims.append(simulate_masks(self.masks, num_frames, padded, seed=mask_seed, density=density))
            hide_rng = np.random.default_rng(child_seed(seed, 2))
            hidden.append(unlabelled_lineages(sims[-1]["tracks"].numpy(), rate / (1 + rate), hide_rng))
            hidden_contrast.append(self.scene.sample_unlabelled_contrast(len(set(hidden[-1].values())), hide_rng)
                                   if hidden[-1] else np.zeros(0))
            gens.append(torch.Generator().manual_seed(int(texture_seed.generate_state(1, np.uint64)[0] >> 1)))
            labels = sims[-1]["masks"].numpy()
            crops.append([_cell_crops(labels[t], self.crop_size) for t in range(num_frames)])
        parents = [{int(r[0]): int(r[3]) for r in sim["tracks"].tolist()} for sim in sims]
        backgrounds = [self.scene.background(num_frames, padded, g, self.device) for g in gens]
        textures: list[dict[int, torch.Tensor]] = [{} for _ in seeds]
        frames = [[] for _ in seeds]
        for t in range(num_frames):
            new, carried = [], []  # (clip, id), and (clip, id, source id in frame t-1)
            for k, cells in enumerate(crops):
                for cid in sorted(cells[t]):
                    if s.independent_frames:
                        new.append((k, cid))
                    elif t > 0 and cid in crops[k][t - 1]:
                        carried.append((k, cid, cid))
                    elif t > 0 and parents[k].get(cid, 0) in crops[k][t - 1]:
                        carried.append((k, cid, parents[k][cid]))
                    else:
                        new.append((k, cid))
            painted: dict[tuple[int, int], torch.Tensor] = {}
            stats = edge_statistics(self.texture.statistics, s.edge)
            for part in _calls(new, s.cell_batch):
                groups = [sum(1 for k, _ in part if k == j) for j in range(len(seeds))]
                masks = torch.stack([crops[k][t][cid].mask for k, cid in part]).to(self.device)
                values = draw_brightness(stats, groups, gens)
                for i, (k, cid) in enumerate(part):
                    if cid in hidden[k]:
                        values[i] = stats["background_mean"] + float(hidden_contrast[k][hidden[k][cid]])
                if s.texture == "flat":
                    out = paint_flat(stats, masks, groups, gens, values)
                else:
                    out = paint_first_frame(self.texture.denoiser, stats, masks, groups, gens, s.t_s, s.sampler,
                                            s.stride, values, detail_only=s.texture == "detail")
                painted.update({key: out[i] for i, key in enumerate(part)})
            for part in _calls(carried, s.cell_batch):
                groups = [sum(1 for k, _, _ in part if k == j) for j in range(len(seeds))]
                moving = torch.stack([crops[k][t - 1][src].mask for k, _, src in part]).to(self.device)
                fixed = torch.stack([crops[k][t][cid].mask for k, cid, _ in part]).to(self.device)
                previous = torch.stack([textures[k][src] for k, _, src in part])
                out = carry_over(self.texture.denoiser, self.flow, previous, moving, fixed, self.scene.alpha,
                                 stats["background_mean"], groups, gens, 0 if s.texture == "flat" else s.t_f,
                                 s.sampler, s.stride)
                painted.update({(k, cid): out[i] for i, (k, cid, _) in enumerate(part)})
            for k in range(len(seeds)):
                keys = [key for key in painted if key[0] == k]
                textures[k] = {cid: painted[(kk, cid)] for kk, cid in keys}
                if keys:
                    cell_masks = torch.stack([crops[k][t][cid].mask for _, cid in keys]).to(self.device)
                    tex = torch.stack([painted[key] for key in keys])
                    corners = torch.tensor([crops[k][t][cid].corner for _, cid in keys], device=self.device)
                    frame = compose(backgrounds[k][t], tex, self.scene.alpha(cell_masks), corners)
                else:
                    frame = backgrounds[k][t]
                frames[k].append(frame)
        clips = []
        for k, sim in enumerate(sims):
            video = torch.stack(frames[k])[:, :, half:half + h, half:half + w]
            view = sim["masks"][:, half:half + h, half:half + w].numpy()
            if hidden[k]:
                view = np.where(np.isin(view, list(hidden[k])), 0, view)
            masks, tracks = relabel_tracks(view, {i: p for i, p in parents[k].items() if i not in hidden[k]})
            clip_meta = {"source": "bvdm", "bundle": self.bundle.name, **{f"synth_{n}": v for n, v in
                         asdict(s).items() if v is not None}, **(dict(meta[k]) if meta is not None else {})}
            clips.append({"video": ((video.float().cpu() + 1) / 2).clamp(0, 1).contiguous(),
                          "masks": torch.from_numpy(masks), "tracks": torch.from_numpy(tracks), "meta": clip_meta})
        return clips
