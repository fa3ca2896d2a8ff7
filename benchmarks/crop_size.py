"""Texture DDPM crop size: does a 64 px model paint HeLa cells as well as the paper's 96 px?

    .venv/bin/python benchmarks/crop_size.py [--iterations 2000] [--sizes 64 96] [--cells 400]

Trains one texture DDPM per crop size with the same budget (iterations,
batch 32, seed, learning rate; the shipped architecture) on sequence 02
frames 0-10 with ERR_SEG, then paints the same held-out cells (frames 11-13)
with each and scores them as `benchmarks/texture.py` does. Every score is
taken on the central 64 px window of the largest crop, so all rows see the
same pixels: a cell (20-35 px across) and its 3 px margin fit in it. Rows:
real vs real (the floor), flat baseline, each model at t_s = 200 (DDIM
stride 4 by default, as good as full DDPM for the shipped model and 4-5x
faster), and the shipped bundle's model (10 000 steps) for scale. Seconds
per training step and cells/s are measured in the same run. Checkpoints go
to runs/crop_size/ (a stopped run resumes).
Writes benchmarks/results/crop_size.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from bvdm_data.ctc import open_sequence
from bvdm_data.diffusion import TextureModel, export_texture, train_texture
from bvdm_data.diffusion.crops import CellCrops, extract_cell_crops
from bvdm_data.evaluate.quality import ENCODER_NAME, texture_distances
from bvdm_data.evaluate.realism import cell_region, markdown, paint_masks
from bvdm_data.training import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
TRAIN, HELD_OUT = list(range(0, 11)), [11, 12, 13]


def centre(x: torch.Tensor, size: int) -> torch.Tensor:
    """The central ``size`` x ``size`` window of ``[N, S, S]`` or ``[N, 1, S, S]`` crops."""
    off = (x.shape[-1] - size) // 2
    return x[..., off:off + size, off:off + size]


def held_out_cells(seq, size: int, window: int, cells: int, seed: int = 0) -> tuple[CellCrops, CellCrops]:
    """Held-out cells and as many training-frame cells (the floor), cut at the largest crop size.

    Only cells whose mask and 3 px margin lie inside the central ``window`` are kept.
    """
    def inside(crops: CellCrops) -> CellCrops:
        core = centre(crops.masks, window - 6).flatten(1).count_nonzero(1)
        return crops.select(np.flatnonzero((core == crops.masks.flatten(1).count_nonzero(1)).numpy()))

    held = inside(extract_cell_crops(seq, size, frames=HELD_OUT))
    rest = inside(extract_cell_crops(seq, size, frames=TRAIN))
    rng = np.random.default_rng(seed)
    n = min(cells, len(held), len(rest))
    return held.select(rng.choice(len(held), n, replace=False)), rest.select(rng.choice(len(rest), n, replace=False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "Fluo-N2DL-HeLa"))
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 96])
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--cells", type=int, default=400)
    parser.add_argument("--sampler", default="ddim", choices=["ddpm", "ddim"])
    parser.add_argument("--stride", type=int, default=4)
    parser.add_argument("--bundle", default="hela", help="also score this bundle's texture model ('' to skip)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--work", default=str(ROOT / "runs" / "crop_size"))
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "crop_size.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sizes, window = sorted(args.sizes), min(args.sizes)

    seq = open_sequence(args.data, "02", labels="ERR_SEG")
    held, reference = held_out_cells(seq, max(sizes), window, args.cells)
    models: dict[int, tuple[TextureModel, float]] = {}
    for size in sizes:
        crops = extract_cell_crops(seq, size, frames=TRAIN)
        work = Path(args.work) / f"{size}px"
        t0 = time.perf_counter()
        result = train_texture(crops, work / "checkpoints", TrainConfig(iterations=args.iterations),
                               device=args.device)
        # Seconds per step of this run when it trained here; from the checkpoint's record when resumed.
        per_step = result.seconds / max(1, result.step)
        export_texture(result.checkpoint, work / "bundle", crops.statistics())
        models[size] = (TextureModel.load(work / "bundle", args.device), per_step)
        print(f"{size} px: {len(crops)} crops, {result.step} steps, {per_step:.3f} s/step "
              f"({time.perf_counter() - t0:.0f} s in this run), last-100 loss "
              f"{np.mean(result.losses[-100:]):.4f}", flush=True)

    first = models[sizes[0]][0]
    bg = first.statistics["background_mean"]
    target = cell_region(centre(held.images, window), centre(held.masks, window), bg)

    def row(name: str, crops: torch.Tensor, masks: torch.Tensor = held.masks, **extra) -> dict:
        region = cell_region(centre(crops, window), centre(masks, window), bg)
        return {"setting": name, **texture_distances(region, target), **extra}

    rows = [row("real vs real (floor)", reference.images, reference.masks),
            row("flat baseline", paint_masks(first, centre(held.masks, sizes[0]), flat=True)[0])]
    for size, (model, per_step) in models.items():
        crops, seconds = paint_masks(model, centre(held.masks, size), 200, args.sampler, args.stride)
        rows.append(row(f"{size} px model", crops, cells_per_s=len(crops) / seconds, s_per_train_step=per_step))
    if args.bundle:
        shipped = TextureModel.load(args.bundle, args.device)
        crops, seconds = paint_masks(shipped, centre(held.masks, shipped.crop_size), 200, args.sampler, args.stride)
        rows.append(row(f"bundle {args.bundle} ({shipped.crop_size} px, its full training)", crops,
                        cells_per_s=len(crops) / seconds))
    columns = ["setting", "intensity", "spectrum", "frechet", "cells_per_s", "s_per_train_step"]
    print(f"\n{len(held)} held-out cells, scored on the central {window} px, {args.iterations} iterations each, "
          f"t_s=200 {args.sampler} stride {args.stride}, encoder {ENCODER_NAME}, {args.device}, "
          f"{args.threads} threads\n\n{markdown(rows, columns)}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"iterations": args.iterations, "cells": len(held), "window": window,
                               "sampler": args.sampler, "stride": args.stride, "encoder": ENCODER_NAME,
                               "device": args.device, "threads": args.threads, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
