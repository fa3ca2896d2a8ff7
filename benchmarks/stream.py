"""BVDMStream throughput vs generation batch, and memory over a long stream.

    .venv/bin/python benchmarks/stream.py [--bundle hela] [--rss-clips 2000]

1. Clips/s and annotated cell-frames/s at the paper's settings (t_s=200, t_f=10,
   full DDPM, as results/stream_1thread.txt was measured) with gen_batch 1 vs 8,
   same seeds, one run. (The one-cell-at-a-time vs batched denoiser ratio itself
   is in benchmarks/texture.py.)
2. RSS while streaming --rss-clips clips at cheap settings (t_s=4, t_f=1): growth
   after a warm-up of 10 % of the clips must stay under 5 %.
3. Wall time of `bvdm-data preview` on the bundle (8 frames, 256x256).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from bvdm_data import BVDMStream
from bvdm_data.clip import cell_frames


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", default="hela")
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--density", type=float, default=2e-4)
    parser.add_argument("--rss-clips", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    print("| gen_batch | clips/s | cell-frames/s | ratio |\n|---|---|---|---|")
    base = None
    for gen_batch in (1, 8):
        stream = BVDMStream(args.bundle, clip_len=args.frames, size=(args.size, args.size), density=args.density,
                            num_clips=args.clips, gen_batch=gen_batch, seed=1, sampler="ddpm")
        start = time.perf_counter()
        cells = sum(cell_frames(c["tracks"]) for c in stream)
        seconds = time.perf_counter() - start
        base = base or args.clips / seconds
        print(f"| {gen_batch} | {args.clips / seconds:.3f} | {cells / seconds:.2f} | {args.clips / seconds / base:.2f}x |",
              flush=True)

    stream = BVDMStream(args.bundle, clip_len=2, size=(64, 64), t_s=4, t_f=1, num_clips=args.rss_clips, gen_batch=8)
    warm = max(1, args.rss_clips // 10)
    samples = []
    for i, _ in enumerate(stream):
        if i + 1 == warm or (i + 1) % 200 == 0:
            samples.append((i + 1, rss_mb()))
    start_mb, end_mb = samples[0][1], samples[-1][1]
    print(f"\nRSS over {args.rss_clips} streamed clips: {start_mb:.0f} MB after {warm} (warm-up), "
          f"{end_mb:.0f} MB at the end: {100 * (end_mb / start_mb - 1):+.1f} %")

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "bvdm_data", "preview", "--bundle", args.bundle,
                        "--out", f"{tmp}/p.gif"], check=True, capture_output=True)
        print(f"bvdm-data preview (8 frames, 256x256, its defaults: DDIM /4, t_s=200, t_f=10): "
              f"{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
