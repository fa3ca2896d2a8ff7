"""Temporal flicker of generated videos vs real HeLa frames, for several t_f (paper, Table 2b).

    .venv/bin/python benchmarks/temporal.py [--bundle hela] [--data ../shared/data/Fluo-N2DL-HeLa]

Flicker = mean absolute intensity change inside a cell between consecutive
frames, after centring each cell on its centroid (bvdm_data.evaluate.flicker),
on the 0..1 scale of the texture model (real frames are normalised with the
bundle's intensity range). Real: the 14 frames of sequence 02, cells matched
by overlap of the ERR_SEG masks. Synthetic: --clips clips of --frames frames
per setting, the same seeds for every setting. Writes benchmarks/results/temporal.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from bvdm_data.ctc import open_sequence
from bvdm_data.diffusion import TextureModel
from bvdm_data.evaluate import flicker
from bvdm_data.synth import SynthesisSettings, Synthesizer

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
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "temporal.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    lo, hi = TextureModel.load(args.bundle).intensity_range
    seq = open_sequence(args.data, "02", labels="ERR_SEG")
    real_video = np.stack([np.clip((seq.images.read(f) - lo) / (hi - lo), 0, 1) for f in seq.images.frames])
    real_masks = np.stack([seq.labels.read(f) for f in seq.images.frames])
    rows = [{"setting": "real HeLa 02 (14 frames)", "flicker": flicker(real_video, real_masks, same_ids=False)}]
    print("| setting | flicker (mean abs change in cells, 0..1) | s per clip |\n|---|---|---|")
    print(f"| {rows[0]['setting']} | {rows[0]['flicker']:.4f} | - |", flush=True)
    settings = [("t_f=0 (warp only)", dict(t_f=0)), ("t_f=10", dict(t_f=10)), ("t_f=30", dict(t_f=30)),
                ("independent frames (t_s=200 each)", dict(independent_frames=True))]
    for name, kw in settings:
        synth = Synthesizer(args.bundle, settings=SynthesisSettings(density=args.density, **kw))
        start = time.perf_counter()
        clips = synth.generate([np.random.SeedSequence([7, k]) for k in range(args.clips)], args.frames,
                               (args.size, args.size))
        seconds = (time.perf_counter() - start) / args.clips
        value = float(np.mean([flicker(c["video"], c["masks"]) for c in clips]))
        rows.append({"setting": name, "flicker": value, "seconds_per_clip": seconds})
        print(f"| {name} | {value:.4f} | {seconds:.1f} |", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"frames": args.frames, "size": args.size, "clips": args.clips,
                                          "density": args.density, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
