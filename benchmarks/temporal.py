"""Temporal flicker of generated videos vs real HeLa frames, for several t_f (paper, Table 2b).

    .venv/bin/python benchmarks/temporal.py [--bundle hela] [--data ../shared/data/Fluo-N2DL-HeLa]

Flicker = mean absolute intensity change inside a cell between consecutive
frames after centring each cell on its centroid (bvdm_data.evaluate.flicker),
on the 0..1 scale of the texture model. Real: the 14 frames of sequence 02,
cells matched by overlap of the ERR_SEG masks. Synthetic: the same seeds for
every setting, painted with each sampler of --samplers (default: the
library's DDIM /4, then the paper's full DDPM). Writes
benchmarks/results/temporal.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from bvdm_data.ctc import open_sequence
from bvdm_data.diffusion import TextureModel
from bvdm_data.diffusion.sample import resolve_stride, sampler_label
from bvdm_data.evaluate.realism import markdown, temporal_rows
from bvdm_data.synth import SynthesisSettings

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", default="hela")
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "Fluo-N2DL-HeLa"))
    parser.add_argument("--clips", type=int, default=2)
    parser.add_argument("--frames", type=int, default=6)
    parser.add_argument("--size", type=int, default=192)
    parser.add_argument("--density", type=float, default=3e-4, help="cells per px^2 (more cells, tighter numbers)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--samplers", nargs="+", default=["ddim", "ddpm"], choices=["ddim", "ddpm"],
                        help="samplers to compare; DDIM takes its default stride (4)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "temporal.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    seq = open_sequence(args.data, "02", labels="ERR_SEG")
    # formation=None: the painter's own flicker, without the per-frame noise a drawn image formation adds
    variants = [("t_f=0 (warp only)", {"t_f": 0}), ("t_f=10", {"t_f": 10}), ("t_f=30", {"t_f": 30}),
                ("t_f=100", {"t_f": 100}), ("independent frames (t_s=200 each)", {"independent_frames": True})]
    settings = [(f"{sampler_label(sampler, resolve_stride(sampler))}, {row}",
                 SynthesisSettings(sampler=sampler, density=args.density, formation=None, **change))
                for sampler in args.samplers for row, change in variants]
    rows = temporal_rows(args.bundle, seq, TextureModel.load(args.bundle).intensity_range, args.clips, args.frames,
                         (args.size, args.size), settings, args.device)
    print(markdown(rows, ["setting", "flicker", "seconds_per_clip"]))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({**vars(args), "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
