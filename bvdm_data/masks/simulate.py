"""Simulate annotated label videos from a fitted :class:`MaskModel`.

Cells live on a torus a margin larger than the field of view, so they leave
and enter the view as in a real recording and the density stays that of the
fitting data, which grows by division. Each frame, cells age, move (AR(1)
velocity), turn, and change shape smoothly (an AR(1) walk in the shape
model's latent space whose stationary law is the shape model itself, so
consecutive outlines interpolate between shape samples); cells that reach
their cycle length divide into two daughters along a sampled axis. Cells are
kept apart by a few rounds of pairwise repulsion and drawn all at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from bvdm_data.clip import relabel_tracks
from bvdm_data.errors import BVDMDataError
from bvdm_data.masks.contours import polygon_area, rasterize
from bvdm_data.masks.model import MaskModel

REPULSION_ROUNDS = 3
PLACEMENT_TRIES = 50


@dataclass
class Cells:
    """State of the simulated cells, one row per cell ever born."""

    id: np.ndarray
    parent: np.ndarray
    alive: np.ndarray
    pos: np.ndarray       # [N, 2] (y, x) on the torus
    vel: np.ndarray       # [N, 2]
    angle: np.ndarray     # major-axis angle
    latent: np.ndarray    # [N, C] standardised shape latent
    age: np.ndarray       # frames since birth
    cycle: np.ndarray     # frames from birth to division (inf: never)
    size: np.ndarray      # standard-normal size offset, fixed per cell
    born: np.ndarray      # born by division (can show the newborn phase)

    def extend(self, other: Cells) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, np.concatenate([getattr(self, name), getattr(other, name)]))


def _draw_cycles(model: MaskModel, rng: np.random.Generator, n: int) -> np.ndarray:
    """Cycle lengths from the fitted distribution; its missing mass means 'never divides' (inf)."""
    if not model.divides:
        return np.full(n, np.inf)
    p = np.append(model.cycle_probabilities, max(0.0, 1.0 - model.cycle_probabilities.sum()))
    choice = rng.choice(p.size, size=n, p=p / p.sum())
    return np.append(model.cycle_lengths.astype(float), np.inf)[choice]


def _new_cells(model: MaskModel, rng: np.random.Generator, pos: np.ndarray, angle: np.ndarray,
               parent: np.ndarray, first_id: int, initial: bool) -> Cells:
    n = len(pos)
    cycle = _draw_cycles(model, rng, n)
    age = np.zeros(n)
    if initial and model.divides:
        # Cells already there are caught at a random point of their cycle (of the
        # longest observed one for cells that never divide).
        span = np.where(np.isfinite(cycle), cycle, model.cycle_lengths.max())
        age = np.floor(rng.random(n) * span)
    return Cells(
        id=np.arange(first_id, first_id + n, dtype=np.int64),
        parent=parent.astype(np.int64),
        alive=np.ones(n, dtype=bool),
        pos=pos.astype(float),
        vel=rng.normal(0.0, model.velocity_noise, (n, 2)) if initial else np.zeros((n, 2)),
        angle=angle.astype(float),
        latent=rng.standard_normal((n, model.shape_components.shape[1])),
        age=age,
        cycle=cycle,
        size=rng.standard_normal(n),
        born=np.ones(n, dtype=bool),
    )


def _phase(model: MaskModel, cells: Cells) -> np.ndarray:
    phase = np.zeros(len(cells.id), dtype=np.int64)
    phase[cells.born & (cells.age < model.newborn_frames)] = 2
    phase[cells.age >= cells.cycle - model.mitosis_frames] = 1
    return phase


def _areas(model: MaskModel, cells: Cells, phase: np.ndarray) -> np.ndarray:
    frac = np.where(np.isfinite(cells.cycle), np.clip(cells.age / np.maximum(cells.cycle, 1), 0, 1), 0.5)
    log_area = (model.log_area_mean[phase] + cells.size * model.log_area_std[phase]
                + np.where(phase == 0, model.area_slope * (frac - 0.5), 0.0))
    return np.exp(log_area)


def _radii(model: MaskModel, cells: Cells, phase: np.ndarray, area: np.ndarray) -> np.ndarray:
    """Outlines in px: the phase's mean shape plus its modes weighted by the latent, scaled to ``area``."""
    comps = model.shape_components[phase]                     # [N, C, K]
    scaled = cells.latent * model.shape_std[phase]            # [N, C]
    unit = model.shape_mean[phase] + np.einsum("nc,nck->nk", scaled, comps)
    unit = np.maximum(unit, 0.3)
    unit *= np.sqrt(np.pi / polygon_area(unit))[:, None]
    return unit * np.sqrt(area / np.pi)[:, None]


def _torus_delta(a: np.ndarray, b: np.ndarray, extent: np.ndarray) -> np.ndarray:
    d = a - b
    return d - extent * np.round(d / extent)


def _repel(pos: np.ndarray, radius: np.ndarray, min_sep: float, extent: np.ndarray) -> np.ndarray:
    for _ in range(REPULSION_ROUNDS):
        d = _torus_delta(pos[:, None], pos[None], extent)          # [N, N, 2]
        dist = np.hypot(d[..., 0], d[..., 1])
        need = min_sep * (radius[:, None] + radius[None])
        overlap = np.where(dist < need, need - dist, 0.0)
        np.fill_diagonal(overlap, 0.0)
        if not overlap.any():
            break
        direction = d / np.maximum(dist, 1e-6)[..., None]
        pos = (pos + 0.5 * (overlap[..., None] * direction).sum(1)) % extent
    return pos


def _place(model: MaskModel, rng: np.random.Generator, count: int, extent: np.ndarray) -> np.ndarray:
    """Rejection sampling: positions at least ``min_separation * (r_i + r_j)`` apart."""
    r = model.median_radius()
    placed: list[np.ndarray] = []
    for _ in range(count):
        for _ in range(PLACEMENT_TRIES):
            p = rng.random(2) * extent
            if not placed or np.hypot(*_torus_delta(np.asarray(placed), p, extent).T).min() >= 2 * r * model.min_separation:
                placed.append(p)
                break
    return np.asarray(placed).reshape(-1, 2)


def _as_rng(seed: int | np.random.SeedSequence | np.random.Generator) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def simulate_masks(model: MaskModel, num_frames: int, size: tuple[int, int],
                   seed: int | np.random.SeedSequence | np.random.Generator = 0, density: float | None = None,
                   margin: int | None = None, min_visible_area: int = 10,
                   device: str | torch.device = "cpu", progress: bool = False) -> dict[str, Any]:
    """Simulate a ``num_frames`` x ``size`` label video with lineage.

    Returns ``{"masks": int32 [T, H, W], "tracks": int64 [N, 4], "meta": {...}}``:
    a clip without ``video``, meeting the contract (cells cut by the border
    or re-entering the view are relabelled by :func:`relabel_tracks`). Visible
    fragments under ``min_visible_area`` px are dropped. ``density`` (cells
    per px^2 in the first frame) defaults to the fitted one. The result is a
    pure function of ``seed``.

    Example:
        >>> model = MaskModel.load("hela")
        >>> sim = simulate_masks(model, num_frames=8, size=(128, 128), seed=1)
        >>> sim["masks"].shape, sim["tracks"].shape[1]
        (torch.Size([8, 128, 128]), 4)
    """
    h, w = (int(v) for v in size)
    if num_frames < 1:
        raise BVDMDataError(f"num_frames must be at least 1, got {num_frames}")
    radius = model.median_radius()
    if min(h, w) < 2 * radius:
        raise BVDMDataError(f"size {h}x{w} is smaller than one cell (median diameter {2 * radius:.0f} px)")
    density = model.density if density is None else float(density)
    if density < 0:
        raise BVDMDataError(f"density must be non-negative, got {density}")
    rng = _as_rng(seed)
    margin = int(math.ceil(3 * radius)) if margin is None else int(margin)
    extent = np.array([h + 2 * margin, w + 2 * margin], dtype=float)

    count = int(rng.poisson(density * extent.prod()))
    pos = _place(model, rng, count, extent)
    cells = _new_cells(model, rng, pos, rng.random(len(pos)) * np.pi, np.zeros(len(pos)), 1, initial=True)
    frames = []
    for t in tqdm(range(num_frames), desc="simulate masks", disable=not progress, leave=False):
        if t > 0:
            cells = _step(model, cells, rng, extent)
        phase = _phase(model, cells)
        area = _areas(model, cells, phase)
        live = np.flatnonzero(cells.alive)
        r_px = np.sqrt(area / np.pi)
        cells.pos[live] = _repel(cells.pos[live], r_px[live], model.min_separation, extent)
        radii = _radii(model, cells, phase, area)
        view = cells.pos - margin
        reach = radii.max(1)
        shown = live[((view[live] > -reach[live, None]) & (view[live] < np.array([h, w]) + reach[live, None])).all(1)]
        frame = rasterize(
            torch.as_tensor(view[shown], dtype=torch.float32, device=device),
            torch.as_tensor(radii[shown], dtype=torch.float32, device=device),
            torch.as_tensor(cells.angle[shown], dtype=torch.float32, device=device),
            torch.as_tensor(cells.id[shown], dtype=torch.int32, device=device), (h, w))
        counts = torch.bincount(frame.view(-1).long(), minlength=int(cells.id.max(initial=0)) + 1)
        frame = torch.where(counts[frame.long()] < min_visible_area, torch.zeros_like(frame), frame)
        frames.append(frame)
    labels = torch.stack(frames).cpu().numpy()
    masks, tracks = relabel_tracks(labels, dict(zip(cells.id.tolist(), cells.parent.tolist())))
    return {
        "masks": torch.from_numpy(masks),
        "tracks": torch.from_numpy(tracks),
        "meta": {"source": "bvdm-masks", "num_frames": num_frames, "height": h, "width": w,
                 "density": density, "cells_simulated": int(len(cells.id))},
    }


def _step(model: MaskModel, cells: Cells, rng: np.random.Generator, extent: np.ndarray) -> Cells:
    """Advance the live cells by one frame; mothers that reach their cycle length divide."""
    live = np.flatnonzero(cells.alive)
    n = live.size
    cells.age[live] += 1
    cells.vel[live] = model.velocity_persistence * cells.vel[live] + rng.normal(0, model.velocity_noise, (n, 2))
    cells.pos[live] = (cells.pos[live] + cells.vel[live]) % extent
    cells.angle[live] += rng.normal(0, model.rotation_std, n)
    rho = model.shape_persistence
    cells.latent[live] = rho * cells.latent[live] + math.sqrt(1 - rho * rho) * rng.standard_normal(
        (n, cells.latent.shape[1]))
    mothers = live[cells.age[live] >= cells.cycle[live]]
    if mothers.size == 0:
        return cells
    cells.alive[mothers] = False
    m = mothers.size
    sep = rng.choice(model.division_separation, size=m)
    axis = cells.angle[mothers] + rng.choice(model.division_angle, size=m)
    offset = 0.5 * sep[:, None] * np.stack([np.sin(axis), np.cos(axis)], 1)
    pos = np.concatenate([cells.pos[mothers] + offset, cells.pos[mothers] - offset]) % extent
    angle = np.concatenate([axis, axis]) + np.pi / 2
    parent = np.concatenate([cells.id[mothers], cells.id[mothers]])
    daughters = _new_cells(model, rng, pos, angle, parent, int(cells.id.max()) + 1, initial=False)
    cells.extend(daughters)
    return cells
