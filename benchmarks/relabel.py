"""CPU cost of redrawing labels from the painting (the default ``labels="painted"``), per padded frame.

    .venv/bin/python benchmarks/relabel.py [--clips 4] [--frames 8] [--size 256]

Paints clips of the shipped bundle (DDIM stride 4, short t_s, one scene
background for all: the cost measured here does not depend on them), then times
``synth.annotation.relabel_clip`` on their padded frames, one thread, and
prints milliseconds per frame and the seconds it adds per 64 clips.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from bvdm_data.synth import SynthesisSettings, Synthesizer
from bvdm_data.synth.annotation import relabel_clip
from bvdm_data.synth.pipeline import edge_statistics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", default="hela")
    parser.add_argument("--clips", type=int, default=4)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args()
    torch.set_num_threads(1)
    synth = Synthesizer(args.bundle, settings=SynthesisSettings(t_s=8, t_f=2, sampler="ddim", stride=4,
                                                                labels="masks"))
    plan = synth.plan([np.random.SeedSequence(k) for k in range(args.clips)], args.frames, (args.size, args.size))
    captured = []
    views = synth._views

    def keep(plan_, painted, gains):  # the padded painting, before the view is cropped from it
        captured.extend((video[:, 0].float().cpu().numpy(), sim["masks"].numpy())
                        for video, sim in zip(painted, plan_.sims))
        return views(plan_, painted, gains)

    synth._views = keep
    synth.paint(plan)
    backgrounds = [synth.scene.background(args.frames, plan.padded, 0, torch.device("cpu"))[:, 0].numpy()
                   for _ in captured]
    profile = edge_statistics(synth.texture.statistics, "by_brightness")["edge_profile"]
    start = time.perf_counter()
    for (video, labels), background in zip(captured, backgrounds):
        relabel_clip(video, background, labels, profile, synth.label_law)  # the default rule: the bundle's law
    per_frame = (time.perf_counter() - start) / (args.clips * args.frames)
    cells = np.mean([len(np.unique(f)) - 1 for _, labels in captured for f in labels])
    print(f"{args.clips} clips x {args.frames} frames, padded {plan.padded[0]}x{plan.padded[1]}, {cells:.1f} cells "
          f"per frame: {per_frame * 1e3:.1f} ms per frame on one thread, {per_frame * 64 * args.frames:.1f} s per "
          f"64 clips")


if __name__ == "__main__":
    main()
