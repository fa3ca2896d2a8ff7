"""Texture DDPM: realism vs t_s and DDIM stride, and batched vs one-cell-at-a-time speed.

    .venv/bin/python benchmarks/texture.py [--dataset hela|gowt1] [--bundle NAME] [--data CTC_FOLDER]

hela: real crops come from sequence 02 with its ERR_SEG masks: frames 0-10
trained the shipped model, frames 11-13 are held out. gowt1: the model
trained on sequence 01; the held-out crops are the gold-outlined nuclei of
sequence 02 (other video), the real-vs-real reference those of 01 (its
training data), both in the texture's intensity units. Generated crops are
SDEdit outputs from the held-out masks, compared with the held-out real
crops, next to real-vs-real (the floor) and the flat baseline
(bvdm_data.evaluate.realism), with bootstrap ranges over the held-out cells and the
share of paired draws in which each setting is closer to real than flat. Speed in the same run: SDEdit at t_s=200, one
cell at a time vs batches. Writes benchmarks/results/texture.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from bvdm_data.ctc import open_sequence
from bvdm_data.ctc.outlines import with_outlines
from bvdm_data.diffusion import TextureModel
from bvdm_data.diffusion.crops import CellCrops, extract_cell_crops
from bvdm_data.evaluate.realism import (BRIGHTNESS, ENCODER_NAME, markdown, paint_masks, split_crops, texture_columns,
                                        texture_rows)

ROOT = Path(__file__).resolve().parents[1]
DATA = {"hela": "Fluo-N2DL-HeLa", "gowt1": "Fluo-N2DH-GOWT1"}


def other_video_crops(data: str, texture: TextureModel, cells: int, seed: int = 0) -> tuple[CellCrops, CellCrops]:
    """``cells`` gold-outlined nuclei of 02 (held out) and of 01 (the training video), in the texture's units."""
    rng = np.random.default_rng(seed)
    crops = [extract_cell_crops(with_outlines(open_sequence(data, seq, labels="GT"), Path(data) / f"{seq}_GT" / "SEG"),
                                texture.crop_size, intensity=texture.intensity_range) for seq in ("02", "01")]
    n = min(cells, *(len(c) for c in crops))
    held, reference = (c.select(rng.choice(len(c), n, replace=False)) for c in crops)
    return held, reference


def add_dataset_arguments(parser: argparse.ArgumentParser, default: str) -> None:
    """--dataset, --bundle and --data, shared with brightness.py."""
    parser.add_argument("--dataset", default=default, choices=sorted(DATA))
    parser.add_argument("--bundle", help="default: the dataset's name")
    parser.add_argument("--data", help="the dataset's CTC folder (default ../shared/data/...)")


def load_dataset(args: argparse.Namespace, device: str = "cpu") -> tuple[TextureModel, CellCrops, CellCrops]:
    """The texture, held-out cells and real-vs-real reference of ``args.dataset`` (module docstring); fills in
    ``args.bundle`` and ``args.data`` where they were left out."""
    args.bundle = args.bundle or args.dataset
    args.data = args.data or str(ROOT.parent / "shared" / "data" / DATA[args.dataset])
    texture = TextureModel.load(args.bundle, device)
    if args.dataset == "gowt1":
        return texture, *other_video_crops(args.data, texture, args.cells)
    return texture, *split_crops(open_sequence(args.data, "02", labels="ERR_SEG"), texture.crop_size, [11, 12, 13],
                                 args.cells)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_dataset_arguments(parser, "hela")
    parser.add_argument("--cells", type=int, default=64, help="held-out cells per setting")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--t-s", type=int, nargs="+", default=[100, 200, 400, 600])
    parser.add_argument("--device", default="cpu", help="quality numbers do not depend on it; speed numbers do")
    parser.add_argument("--resamples", type=int, default=100,
                        help="bootstrap draws of the held-out cells: 95 %% ranges and paired shares that beat flat")
    parser.add_argument("--brightness", default="drawn", choices=BRIGHTNESS,
                        help="paint each held-out mask at a brightness drawn from the fitted law, or at its real "
                        "cell's mean (the distances then measure texture alone)")
    parser.add_argument("--skip-speed", action="store_true", help="only the realism table")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "texture.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    texture, held, reference = load_dataset(args, args.device)
    settings = [(f"DDPM t_s={t}", {"t_s": t, "sampler": "ddpm"}) for t in args.t_s]
    settings += [(f"DDIM t_s=200 stride {k} ({len(range(199, -1, -k))} steps)", {"t_s": 200, "sampler": "ddim",
                                                                                 "stride": k}) for k in (4, 10)]
    rows = texture_rows(texture, held, reference, settings, args.resamples, brightness=args.brightness)
    print(f"{len(held)} held-out cells, {texture.crop_size} px, encoder {ENCODER_NAME}, {args.device}, "
          f"{args.threads} threads; {args.resamples} resamples of the held-out cells; "
          f"brightness {args.brightness}\n")
    print(markdown(rows, [*texture_columns(args.resamples), "cells_per_s"]))
    results = {"dataset": args.dataset, "bundle": args.bundle, "encoder": ENCODER_NAME, "cells": len(held),
               "resamples": args.resamples, "brightness": args.brightness, "device": args.device,
               "threads": args.threads, "rows": rows}
    if args.skip_speed:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
        return

    few = held.masks[:8]
    _, one = paint_masks(texture, few, 200, "ddpm", batch=1)
    _, eight = paint_masks(texture, few, 200, "ddpm", batch=8)
    _, many = paint_masks(texture, held.masks, 200, "ddpm", batch=len(held))
    speed = {"one_at_a_time": 8 / one, "batch_8": 8 / eight, f"batch_{len(held)}": len(held) / many}
    print(f"\nSDEdit t_s=200 cells/s: one at a time {speed['one_at_a_time']:.2f}, batch 8 {speed['batch_8']:.2f} "
          f"({one / eight:.2f}x), batch {len(held)} {len(held) / many:.2f} ({(len(held) / many) / (8 / one):.2f}x)")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({**results, "speed_cells_per_s": speed}, indent=2) + "\n")


if __name__ == "__main__":
    main()
