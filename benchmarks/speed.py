"""Annotated cell-frames per second: our batched pipeline vs a reference-style loop, in one process.

    .venv/bin/python benchmarks/speed.py [--device cuda] [--clips 8] [--frames 8] [--size 256]

Reference-style: one clip at a time and one cell per network call
(``cell_batch=1``, ``gen_batch=1``), full DDPM at the same t_s/t_f: how the
paper's released code paints. Ours: every cell of every clip in flight in
one call per denoising step. Both run the same seeds (same masks) in this
process. Then: DDIM strides (with their realism numbers from
benchmarks/results/texture_cuda_quality.json when present), scaling with
cells per clip (density) and frame size, and peak memory per setting.
Writes benchmarks/results/speed_<device>.json and prints markdown.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from bvdm_data.evaluate.realism import markdown
from bvdm_data.stream import clip_seed
from bvdm_data.synth import SynthesisSettings, Synthesizer

ROOT = Path(__file__).resolve().parents[1]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # process peak RSS (never goes down)


def run(bundle: str, device: torch.device, settings: SynthesisSettings, clips: int, frames: int, size: int,
        gen_batch: int) -> dict:
    synth = Synthesizer(bundle, device, settings)
    seeds = [clip_seed(0, 0, k) for k in range(clips)]
    synth.generate(seeds[:1], 2, (min(size, 128), min(size, 128)))  # warm-up: kernels, allocator
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    sync(device)
    t0 = time.perf_counter()
    out = []
    for i in range(0, clips, gen_batch):
        out += synth.generate(seeds[i:i + gen_batch], frames, (size, size))
    sync(device)
    seconds = time.perf_counter() - t0
    cell_frames = sum(int((np.unique(m.numpy()) > 0).sum()) for c in out for m in c["masks"])
    return {"cell_frames": cell_frames, "seconds": seconds, "cell_frames_per_s": cell_frames / seconds,
            "clips_per_s": clips / seconds, "peak_mib": peak_mib(device)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", default="hela")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--clips", type=int, default=2)
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--reference-clips", type=int, help="clips for the slow reference loop (default --clips)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-scaling", action="store_true")
    parser.add_argument("--out", help="default benchmarks/results/speed_<device>.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    base = dict(clips=args.clips, frames=args.frames, size=args.size)

    rows = []

    def add(name: str, settings: SynthesisSettings, gen_batch: int, **overrides) -> dict:
        work = {**base, **overrides}
        row = {"setting": name, **work, **run(args.bundle, device, settings, gen_batch=gen_batch, **work)}
        rows.append(row)
        print(f"{name}: {row['cell_frames_per_s']:.2f} cell-frames/s", flush=True)
        return row

    ref_clips = args.reference_clips or args.clips
    paper = SynthesisSettings(sampler="ddpm")  # the paper's sampler: rows comparable with the reference loop
    reference = add("reference loop (1 cell/call, DDPM)", replace(paper, cell_batch=1), 1, clips=ref_clips)
    ours = add("ours (all cells/call, DDPM)", paper, args.clips)
    ratio = ours["cell_frames_per_s"] / reference["cell_frames_per_s"]
    quality = {}
    quality_file = ROOT / "benchmarks" / "results" / "texture_cuda_quality.json"
    if quality_file.exists():
        quality = {r["setting"]: r for r in json.loads(quality_file.read_text())["rows"]}
    for stride, steps in ((4, 50), (10, 20)):
        row = add(f"ours, DDIM stride {stride}", SynthesisSettings(sampler="ddim", stride=stride), args.clips)
        q = quality.get(f"DDIM t_s=200 stride {stride} ({steps} steps)", {})
        row.update({k: q.get(k) for k in ("intensity", "spectrum", "frechet")})
    ddpm_quality = quality.get("DDPM t_s=200", {})
    ours.update({k: ddpm_quality.get(k) for k in ("intensity", "spectrum", "frechet")})
    if not args.skip_scaling:
        fitted = Synthesizer(args.bundle, "cpu").masks.density
        for factor in (0.5, 2.0):
            add(f"ours, density x{factor}", replace(paper, density=fitted * factor), args.clips)
        for size in (args.size // 2, args.size * 2):
            add(f"ours, {size} px", paper, args.clips, size=size)

    print(f"\n{args.device}, {args.threads} CPU threads; {args.clips} clips x {args.frames} frames x {args.size} px "
          f"(reference: {ref_clips} clips); t_s=200, t_f=10\n")
    print(markdown(rows, ["setting", "clips", "size", "cell_frames", "cell_frames_per_s", "peak_mib", "intensity",
                          "spectrum", "frechet"]))
    print(f"\nours / reference-style: {ratio:.1f}x cell-frames/s")
    out = Path(args.out or ROOT / "benchmarks" / "results" / f"speed_{device.type}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"device": str(device), "threads": args.threads, "ratio_vs_reference": ratio,
                               "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
