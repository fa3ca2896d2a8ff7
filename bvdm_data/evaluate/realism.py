"""Realism of a bundle against real data: texture distances and temporal flicker, next to references.

Texture: SDEdit paints held-out real masks; each cell and a 3-px margin are
compared with the same region of the real crops of those cells (intensity
W1, log-spectrum RMS, random-feature Fréchet: :mod:`bvdm_data.evaluate.quality`),
next to real-vs-real (cells of other frames: the floor) and the flat baseline. Temporal: flicker
(:mod:`bvdm_data.evaluate.temporal`) of the real sequence and of synthetic
clips with flow + ``t_f`` refinement and with independently painted frames.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from bvdm_data.ctc.clips import to_unit
from bvdm_data.ctc.sequence import CTCSequence
from bvdm_data.diffusion.crops import CellCrops, extract_cell_crops
from bvdm_data.diffusion.edges import mean_inside
from bvdm_data.diffusion.noise import derive_key
from bvdm_data.diffusion.sample import DEFAULT_SAMPLER, resolve_stride
from bvdm_data.diffusion.texture import TextureModel
from bvdm_data.errors import BVDMDataError
from bvdm_data.evaluate.quality import ENCODER_NAME, METRICS, CropSummary, RandomFeatureEncoder, summary_distances
from bvdm_data.evaluate.temporal import flicker
from bvdm_data.synth.pipeline import SynthesisSettings, Synthesizer
from bvdm_data.synth.propagation import draw_brightness, paint_first_frame, paint_flat


def drawn_brightness(statistics: dict, count: int, seed: int = 0) -> torch.Tensor:
    """The brightness :func:`paint_masks` draws for ``count`` cells: cell ``j`` from its own generator.

    Example:
        >>> law = {"cell_mean_quantiles": [-0.5 + 0.01 * q for q in range(101)]}
        >>> v = drawn_brightness(law, 3)
        >>> v.shape, bool(((v >= -0.5) & (v <= 0.5)).all()), bool((v == drawn_brightness(law, 3)).all())
        (torch.Size([3]), True, True)
    """
    ids = range(seed * 100_000, seed * 100_000 + count)
    return draw_brightness(statistics, [1] * count, [torch.Generator().manual_seed(j) for j in ids])


def paint_masks(texture: TextureModel, masks: torch.Tensor, t_s: int = 200, sampler: str = DEFAULT_SAMPLER,
                stride: int | None = None, batch: int = 64, seed: int = 0, flat: bool = False,
                brightness: torch.Tensor | None = None) -> tuple[torch.Tensor, float]:
    """Paint every mask ``[N, S, S]`` as the stream paints a new cell (:func:`paint_first_frame`).

    One generator per cell for its brightness and one noise key: the DDPM and
    the flat baseline (``flat=True``, :func:`paint_flat`) paint each cell at the
    same brightness, so their distances differ by texture alone. ``brightness``
    (``[N]``, mean inside each mask in -1..1) replaces the draws from the
    fitted law. ``sampler`` and ``stride`` as in :class:`SynthesisSettings`
    (``stride=None``: the sampler's default). ``batch`` does not change the
    result. Returns the crops and the seconds spent painting.
    """
    if brightness is not None and len(brightness) != len(masks):
        raise BVDMDataError(f"brightness has {len(brightness)} values for {len(masks)} masks")
    stride = resolve_stride(sampler, stride)
    out, t0 = [], time.perf_counter()
    if brightness is None:
        brightness = drawn_brightness(texture.statistics, len(masks), seed)
    for i in range(0, len(masks), batch):
        chunk = masks[i:i + batch].to(texture.denoiser.device)
        values = brightness[i:i + batch].float()
        keys = [derive_key(seed, j) for j in range(seed * 100_000 + i, seed * 100_000 + i + len(chunk))]
        if flat:
            out.append(paint_flat(texture.statistics, chunk, values, keys).cpu())
        else:
            out.append(paint_first_frame(texture.denoiser, texture.statistics, chunk, values, keys, t_s,
                                         sampler, stride).cpu())
    return torch.cat(out), time.perf_counter() - t0


def split_crops(seq: CTCSequence, crop_size: int, held_out: list[int], cells: int, seed: int = 0
                ) -> tuple[CellCrops, CellCrops]:
    """``cells`` held-out crops and as many crops from the other frames (the real-vs-real reference)."""
    others = [f for f in seq.images.frames if f not in held_out]
    if not others:
        raise BVDMDataError("keep some frames out of --held-out for the real-vs-real reference")
    held = extract_cell_crops(seq, crop_size, frames=held_out)
    rest = extract_cell_crops(seq, crop_size, frames=others)
    rng = np.random.default_rng(seed)
    n = min(cells, len(held), len(rest))
    return held.select(rng.choice(len(held), n, replace=False)), rest.select(rng.choice(len(rest), n, replace=False))


def cell_region(images: torch.Tensor, masks: torch.Tensor, background: float, margin: int = 3) -> torch.Tensor:
    """Keep the centre cell and ``margin`` px around it; the rest becomes the background level.

    A real crop also shows the cell's neighbours, which a single-cell mask does
    not describe; comparing whole crops would measure the neighbours, not the
    painted cell. Every row of the realism table is compared this way.
    """
    keep = torch.nn.functional.max_pool2d(masks[:, None].float(), 2 * margin + 1, stride=1, padding=margin) > 0
    return torch.where(keep, images, torch.full_like(images, background))


def texture_columns(resamples: int = 0) -> list[str]:
    """The columns of :func:`texture_rows`' table: the distances, and their spread when resampled."""
    spread = [f"{m}_{k}" for m in METRICS for k in ("95", "beats_flat")] if resamples else []
    return ["setting", *METRICS, *spread]


BRIGHTNESS = ("drawn", "real")


def texture_rows(texture: TextureModel, held: CellCrops, reference: CellCrops,
                 settings: list[tuple[str, dict[str, Any]]], resamples: int = 0, seed: int = 0,
                 brightness: str = "drawn") -> list[dict[str, Any]]:
    """Distances to the held-out cells for the references and each SDEdit setting (name, kwargs).

    ``brightness="drawn"`` paints each held-out mask at a brightness drawn from
    the fitted law (the flat baseline and every setting at the same draws);
    ``"real"`` at the mean of the real cell it was cut from, so that every
    painted cell pairs with its real one in outline and brightness and the
    distances measure the texture alone. With a skewed law and a hundred cells
    the drawn mix of dim and bright cells moves every painted row alike, and
    more for a textured painting than for a flat one (GOWT1: a draw whose
    median cell is 0.16 brighter than the held-out cells'). The floor
    (unpaired real cells) is not comparable with ``"real"`` rows.

    With ``resamples`` > 0 the held-out cells are drawn again with replacement
    that many times, the same draws for every row (a painted cell stays paired
    with the real cell whose mask it was painted from; the floor's reference
    cells are drawn independently): each row gains ``<metric>_95``, the 2.5-97.5 %
    range of its distance, and each SDEdit row ``<metric>_beats_flat``, the share
    of draws in which it is closer to the real cells than the flat baseline.
    With a few dozen cells the ranges are wide; the paired share says more about one row against another.
    """
    if brightness not in BRIGHTNESS:
        raise BVDMDataError(f"brightness must be one of {BRIGHTNESS}, got {brightness!r}")
    values = mean_inside(held.images, held.masks) if brightness == "real" else None
    bg = texture.statistics["background_mean"]
    encoder = RandomFeatureEncoder()
    target = CropSummary(cell_region(held.images, held.masks, bg), encoder)
    rng = np.random.default_rng(seed)
    draws = [rng.integers(0, len(held), len(held)) for _ in range(resamples)]
    reference_draws = [rng.integers(0, len(reference), len(reference)) for _ in range(resamples)]

    def row(name: str, crops: torch.Tensor, masks: torch.Tensor, paired: bool = True, **extra: Any
            ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """The row, and each metric's distance on every draw."""
        summary = CropSummary(cell_region(crops, masks, bg), encoder)
        picks = zip(draws if paired else reference_draws, draws)
        scored = [summary_distances(summary, target, g, r) for g, r in picks]
        spread = {m: np.array([d[m] for d in scored]) for m in METRICS}
        out = {"setting": name, **summary_distances(summary, target)}
        if resamples:
            out.update({f"{m}_95": [float(v) for v in np.percentile(spread[m], [2.5, 97.5])] for m in METRICS})
        return {**out, **extra}, spread

    floor, _ = row("real vs real (floor)", reference.images, reference.masks, paired=False)
    flat, flat_spread = row("flat baseline", paint_masks(texture, held.masks, flat=True, brightness=values)[0],
                            held.masks)
    rows = [floor, flat]
    for name, kwargs in settings:
        crops, seconds = paint_masks(texture, held.masks, brightness=values, **kwargs)
        out, spread = row(name, crops, held.masks, cells_per_s=len(crops) / seconds)
        if resamples:  # paired with flat's draws: the same held-out cells in each
            out.update({f"{m}_beats_flat": float((spread[m] < flat_spread[m]).mean()) for m in METRICS})
        rows.append(out)
    return rows


def temporal_rows(bundle: str, seq: CTCSequence, intensity_range: tuple[float, float], clips: int, frames: int,
                  size: tuple[int, int], settings: list[tuple[str, SynthesisSettings]], device: str = "cpu"
                  ) -> list[dict[str, Any]]:
    """Flicker of the real sequence (cells matched by overlap) and of synthetic clips per setting."""
    video = np.stack([to_unit(seq.images.read(f), intensity_range, np.float64) for f in seq.images.frames])
    masks = np.stack([seq.labels.read(f) for f in seq.images.frames])
    rows = [{"setting": f"real ({len(video)} frames)", "flicker": flicker(video, masks, same_ids=False)}]
    for name, setting in settings:
        synth = Synthesizer(bundle, device, setting)
        t0 = time.perf_counter()
        out = synth.generate([np.random.SeedSequence([7, k]) for k in range(clips)], frames, size)
        rows.append({"setting": name, "flicker": float(np.mean([flicker(c["video"], c["masks"]) for c in out])),
                     "seconds_per_clip": (time.perf_counter() - t0) / clips})
    return rows


def markdown(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """Rows as a markdown table (floats to 4 significant digits, a range ``[lo, hi]`` as ``lo-hi``)."""
    def fmt(v: Any) -> str:
        if isinstance(v, (list, tuple)):
            return "–".join(fmt(x) for x in v)
        return "-" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v))

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


__all__ = ["BRIGHTNESS", "ENCODER_NAME", "drawn_brightness", "markdown", "paint_masks", "split_crops",
           "temporal_rows", "texture_columns", "texture_rows"]
