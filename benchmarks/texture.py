"""Texture DDPM: realism vs t_s and DDIM stride, and batched vs one-cell-at-a-time speed.

    .venv/bin/python benchmarks/texture.py [--bundle hela] [--data ../shared/data/Fluo-N2DL-HeLa]

Real crops come from sequence 02 with its ERR_SEG masks: frames 0-10 trained
the shipped model, frames 11-13 are held out. Generated crops are SDEdit
outputs from the held-out masks, compared with the held-out real crops, next
to real-vs-real (training-frame crops: the floor) and the flat baseline
(bvdm_data.evaluate.realism). Speed in the same run: SDEdit at t_s=200, one
cell at a time vs batches. Writes benchmarks/results/texture.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from bvdm_data.ctc import open_sequence
from bvdm_data.diffusion import TextureModel
from bvdm_data.evaluate.realism import ENCODER_NAME, markdown, paint_masks, split_crops, texture_rows

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", default="hela")
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "Fluo-N2DL-HeLa"))
    parser.add_argument("--cells", type=int, default=64, help="held-out cells per setting")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--t-s", type=int, nargs="+", default=[100, 200, 400, 600])
    parser.add_argument("--device", default="cpu", help="quality numbers do not depend on it; speed numbers do")
    parser.add_argument("--skip-speed", action="store_true", help="only the realism table")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "texture.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    texture = TextureModel.load(args.bundle, args.device)
    seq = open_sequence(args.data, "02", labels="ERR_SEG")
    held, reference = split_crops(seq, texture.crop_size, [11, 12, 13], args.cells)
    settings = [(f"DDPM t_s={t}", {"t_s": t}) for t in args.t_s]
    settings += [(f"DDIM t_s=200 stride {k} ({len(range(199, -1, -k))} steps)", {"t_s": 200, "sampler": "ddim",
                                                                                 "stride": k}) for k in (4, 10)]
    rows = texture_rows(texture, held, reference, settings)
    print(f"{len(held)} held-out cells, {texture.crop_size} px, encoder {ENCODER_NAME}, {args.device}, "
          f"{args.threads} threads\n")
    print(markdown(rows, ["setting", "intensity", "spectrum", "frechet", "cells_per_s"]))
    results = {"encoder": ENCODER_NAME, "cells": len(held), "device": args.device, "threads": args.threads, "rows": rows}
    if args.skip_speed:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
        return

    few = held.masks[:8]
    _, one = paint_masks(texture, few, 200, batch=1)
    _, eight = paint_masks(texture, few, 200, batch=8)
    _, many = paint_masks(texture, held.masks, 200, batch=len(held))
    speed = {"one_at_a_time": 8 / one, "batch_8": 8 / eight, f"batch_{len(held)}": len(held) / many}
    print(f"\nSDEdit t_s=200 cells/s: one at a time {speed['one_at_a_time']:.2f}, batch 8 {speed['batch_8']:.2f} "
          f"({one / eight:.2f}x), batch {len(held)} {len(held) / many:.2f} ({(len(held) / many) / (8 / one):.2f}x)")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({**results, "speed_cells_per_s": speed}, indent=2) + "\n")


if __name__ == "__main__":
    main()
