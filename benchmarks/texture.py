"""Texture DDPM: realism vs t_s and DDIM stride, and batched vs one-cell-at-a-time speed.

    .venv/bin/python benchmarks/texture.py [--bundle hela] [--data ../shared/data/Fluo-N2DL-HeLa]

Real crops come from sequence 02 with its ERR_SEG masks: frames 0-10 are the
model's training frames, frames 11-13 are held out. Generated crops are
SDEdit outputs from the held-out masks (flat start at intensities drawn from
the fitted cell statistics), compared with the held-out real crops; the two
references are real-vs-real (training-frame crops vs held-out crops: the
floor) and the flat baseline. Speed is measured in the same run: cells/s of
SDEdit at t_s=200 one cell at a time vs batched. Prints markdown tables and
writes benchmarks/results/texture.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from bvdm_data.ctc import open_sequence
from bvdm_data.diffusion import TextureModel, extract_cell_crops, flat_cells, sdedit
from bvdm_data.diffusion.crops import sample_brightness
from bvdm_data.diffusion.quality import ENCODER_NAME, flat_baseline, texture_distances

ROOT = Path(__file__).resolve().parents[1]


def generators(n: int, seed: int) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(seed * 100_000 + i) for i in range(n)]


def generate(texture: TextureModel, masks: torch.Tensor, t_s: int, sampler: str = "ddpm", stride: int = 1,
             batch: int = 64, seed: int = 0) -> tuple[torch.Tensor, float]:
    """SDEdit every mask (one group per cell, so the result does not depend on ``batch``); returns (crops, seconds)."""
    stats = texture.statistics
    values = sample_brightness(stats, masks.shape[0], torch.Generator().manual_seed(seed))
    start = flat_cells(masks, values, stats["background_mean"])
    out, t0 = [], time.perf_counter()
    for i in range(0, len(start), batch):
        chunk = start[i:i + batch]
        out.append(sdedit(texture.denoiser, chunk, t_s, [1] * len(chunk), generators(len(chunk), seed + i),
                          sampler, stride).cpu())
    return torch.cat(out), time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", default="hela")
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "Fluo-N2DL-HeLa"))
    parser.add_argument("--cells", type=int, default=64, help="held-out cells to generate per setting")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--t-s", type=int, nargs="+", default=[100, 200, 400, 600])
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "texture.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    texture = TextureModel.load(args.bundle)
    seq = open_sequence(args.data, "02", labels="ERR_SEG")
    train = extract_cell_crops(seq, texture.crop_size, frames=list(range(0, 11)))
    held = extract_cell_crops(seq, texture.crop_size, frames=list(range(11, 14)))
    rng = np.random.default_rng(0)
    held = held.select(rng.choice(len(held), min(args.cells, len(held)), replace=False))
    ref_train = train.select(rng.choice(len(train), len(held), replace=False))
    results: dict = {"encoder": ENCODER_NAME, "cells": len(held), "crop_size": texture.crop_size,
                     "threads": args.threads, "rows": []}

    def add(name: str, crops: torch.Tensor, seconds: float | None = None, steps: int | None = None) -> None:
        row = {"setting": name, **texture_distances(crops, held.images), "steps": steps,
               "cells_per_s": None if seconds is None else len(crops) / seconds}
        results["rows"].append(row)
        speed = "-" if seconds is None else f"{row['cells_per_s']:.2f}"
        print(f"| {name} | {row['intensity']:.4f} | {row['spectrum']:.3f} | {row['frechet']:.2f} | "
              f"{steps if steps is not None else '-'} | {speed} |", flush=True)

    print(f"{len(held)} held-out cells, {texture.crop_size} px, encoder {ENCODER_NAME}, {args.threads} threads\n")
    print("| setting | intensity W1 | log-spectrum RMS | Fréchet | denoising steps | cells/s (batch 64) |")
    print("|---|---|---|---|---|---|")
    add("real vs real (floor)", ref_train.images)
    add("flat baseline", flat_baseline(held.masks, texture.statistics))
    for t_s in args.t_s:
        crops, seconds = generate(texture, held.masks, t_s)
        add(f"DDPM t_s={t_s}", crops, seconds, t_s)
    for stride in (4, 10):
        crops, seconds = generate(texture, held.masks, 200, "ddim", stride)
        add(f"DDIM t_s=200 stride {stride}", crops, seconds, len(range(199, -1, -stride)))

    # Speed in one run: the same cells one at a time vs in one batch.
    few = held.masks[:8]
    _, one_s = generate(texture, few, 200, batch=1)
    _, batch_s = generate(texture, few, 200, batch=8)
    _, big_s = generate(texture, held.masks[:64], 200, batch=64)
    results["speed"] = {"t_s": 200, "one_at_a_time_cells_per_s": 8 / one_s, "batch8_cells_per_s": 8 / batch_s,
                        "batch64_cells_per_s": 64 / big_s}
    print(f"\nSDEdit t_s=200: one cell at a time {8 / one_s:.2f} cells/s, batch 8 {8 / batch_s:.2f} cells/s "
          f"({one_s / batch_s:.2f}x), batch 64 {64 / big_s:.2f} cells/s ({(64 / big_s) / (8 / one_s):.2f}x)")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
