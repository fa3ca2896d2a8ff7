"""Simulate annotated label videos with the shipped HeLa mask model and write them as CTC folders.

    python examples/simulate_masks.py --out synth_masks/ --clips 2 --frames 30 --size 256 256

Each clip becomes a CTC sequence (NN/tTTT.tif, NN_GT/TRA, NN_GT/SEG). Only the mask
model runs (seconds, no network): the frames are a flat rendering (cells at mid grey
on black), for looking at the shape, lineage and motion laws in any CTC viewer or
checking them with `bvdm-data validate`; `bvdm-data generate` paints real textures.
"""

from __future__ import annotations

import argparse

from bvdm_data import check_clip
from bvdm_data.ctc import write_ctc_sequence
from bvdm_data.masks import MaskModel, simulate_masks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--bundle", default="hela")
    parser.add_argument("--clips", type=int, default=2)
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--size", type=int, nargs=2, default=(256, 256))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    model = MaskModel.load(args.bundle)
    for k in range(args.clips):
        sim = simulate_masks(model, args.frames, tuple(args.size), seed=[args.seed, k], progress=True)
        clip = {**sim, "video": (sim["masks"] > 0).float()[:, None] * 0.5}
        check_clip(clip)
        path = write_ctc_sequence(clip, args.out, f"{k + 1:02d}")
        divisions = int((sim["tracks"][:, 3] > 0).sum())
        print(f"{path}: {len(sim['tracks'])} tracks, {divisions} with a parent")


if __name__ == "__main__":
    main()
