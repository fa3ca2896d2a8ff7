"""GPU-resident generation: annotated cell-frames/s and peak memory vs clips in flight, and a starved trainer.

    python benchmarks/gpu_generation.py --device cuda [--clips 8 64 256] [--budget-s 420]

Part 1, throughput (paper settings: t_s = 200, t_f = 10, 8 frames of 256^2):
for full DDPM and DDIM stride 4, fp32 and bf16, and 8, 64, 256 clips in
flight, the new schedule (``wide``: all first appearances in one pass) and,
at 64 clips, the frame-by-frame order (``frame``: new cells painted frame by
frame, the order before 2026-11-26) in the same run. Planning (masks, on the
CPU, in the synthesizer's worker processes) and painting (the device) are timed apart; the
stream overlaps them, so its rate is set by the slower of the two. A cell-frame
is one labelled cell in one output frame (what a trainer gets).

Part 2, starvation: segmentation trainers (``SegNet`` of
``bvdm_data.evaluate.downstream``, one per ``--trainer-widths``, bf16 autocast,
2 clips x 8 frames per step) on the GPU, each fed (a) by clips already in memory, (b) by
``DataLoader(BVDMStream(device=...), num_workers=1)`` (a spawned worker paints
on the same GPU while the trainer trains), (c) by ``DataLoader(FollowedCache)``
reading an LMDB cache that ``bvdm-data cache`` fills on the same GPU meanwhile
(clips drawn at random from those written so far). Steps/s of each and their
ratio to (a); (c) with the first width only. A wider trainer takes longer per
step, so the same stream starves it less.

``--profile`` adds a table of where one 64-clip DDIM bf16 paint spends its
device time (torch.profiler, top kernels), written beside the JSON as
``_profile.txt``. bf16 runs the whole denoiser in bf16 (``Denoiser(bf16=True)``).

With ``--compile``, the 64-clip (or first ``--clips``) bf16 runs are repeated with the DDPM under
``torch.compile`` (CUDA graphs on a GPU), after one untimed pass that
compiles and records the graphs (``compile_s``), so eager and compiled
compare in one run.

Every run stops starting new measurements after ``--budget-s`` seconds and
writes what it has. Writes benchmarks/results/gpu_generation_<device>.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from bvdm_data import BVDMStream, FollowedCache, LMDBClips, collate_clips
from bvdm_data.clip import cell_frames
from bvdm_data.evaluate.downstream import SegNet, seg_targets
from bvdm_data.evaluate.realism import markdown
from bvdm_data.stream import clip_seed
from bvdm_data.synth import SynthesisSettings, Synthesizer
from bvdm_data.synth.pipeline import DEVICE_CPU_WORKERS

ROOT = Path(__file__).resolve().parents[1]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def throughput(bundle: str, device: torch.device, settings: SynthesisSettings, clips: int, frames: int,
               size: int, plans: dict) -> dict:
    """One measurement; plans (masks, CPU) are made once per clip count and reused across settings."""
    synth = Synthesizer(bundle, device, settings)
    seeds = [clip_seed(0, 0, k) for k in range(clips)]
    synth.paint(synth.plan(seeds[:2], 2, (size, size)))  # warm-up: kernels, cuDNN choices, allocator
    if clips not in plans:
        t0 = time.perf_counter()
        plans[clips] = (synth.plan(seeds, frames, (size, size)), time.perf_counter() - t0)
    plan, plan_s = plans[clips]
    compile_s = None
    if settings.compile:  # compile and record every bucket's graph before the clock starts
        t0 = time.perf_counter()
        synth.paint(plan)
        sync(device)
        compile_s = round(time.perf_counter() - t0, 1)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    sync(device)
    t0 = time.perf_counter()
    out = synth.paint(plan)
    sync(device)
    paint_s = time.perf_counter() - t0
    n = sum(cell_frames(c["tracks"]) for c in out)
    return {"clips": clips, "cell_frames": n, "plan_s": round(plan_s, 2), "paint_s": round(paint_s, 2),
            "painted_cells": len(plan.new) + len(plan.carried), **({"compile_s": compile_s} if compile_s else {}),
            "paint_cell_frames_per_s": round(n / paint_s, 1),
            "stream_cell_frames_per_s": round(n / max(plan_s, paint_s), 1),
            "peak_gib": round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if device.type == "cuda" else None}


def profile_paint(bundle: str, device: torch.device, args: argparse.Namespace, plans: dict) -> str:
    """Where one DDIM bf16 paint of 64 clips (or the first ``--clips``; compiled with ``--compile``) spends its
    time: top 25 ops by device time."""
    from torch.profiler import ProfilerActivity, profile

    clips = 64 if 64 in args.clips else args.clips[0]
    settings = SynthesisSettings(t_s=args.t_s, t_f=args.t_f, sampler="ddim", stride=4, bf16=True,
                                 cell_batch=args.cell_batch, compile=args.compile)
    synth = Synthesizer(bundle, device, settings)
    seeds = [clip_seed(0, 0, k) for k in range(clips)]
    if clips not in plans:
        plans[clips] = (synth.plan(seeds, args.frames, (args.size, args.size)), 0.0)
    synth.paint(plans[clips][0])  # warm-up (and compilation)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    sync(device)
    t0 = time.perf_counter()
    with profile(activities=activities) as prof:
        synth.paint(plans[clips][0])
        sync(device)
    wall = time.perf_counter() - t0
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    return (f"one paint of {clips} clips, DDIM /4 bf16{', compiled' if args.compile else ''}, {wall:.2f} s under "
            "the profiler\n"
            + prof.key_averages().table(sort_by=key, row_limit=25, max_name_column_width=60))


def trainer_rate(batches, device: torch.device, steps: int, width: int = 32, warmup: int = 5) -> float:
    """Steps/s of a SegNet trainer of ``width`` on ``batches`` (an iterator of collated clips), after ``warmup``
    steps."""
    torch.manual_seed(0)
    net = SegNet(width=width).to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    t0 = None
    for step in range(warmup + steps):
        if step == warmup:
            sync(device)
            t0 = time.perf_counter()
        batch = next(batches)
        x = batch["video"].flatten(0, 1).to(device, non_blocking=True)
        y = seg_targets(batch["masks"].flatten(0, 1).to(device, non_blocking=True))
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss = torch.nn.functional.cross_entropy(net(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    sync(device)
    return steps / (time.perf_counter() - t0)


def starvation(bundle: str, device: torch.device, args: argparse.Namespace) -> dict:
    """Trainers of each ``--trainer-widths`` fed from memory and from the stream; the followed cache at the first."""
    kw = dict(clip_len=args.frames, size=(args.size, args.size), device=str(device), sampler="ddim", stride=4,
              bf16=True, compile=args.compile, gen_batch=args.stream_batch, seed=1)
    memory = list(BVDMStream(bundle, num_clips=2 * args.stream_batch, **kw))

    def cycle():
        while True:
            for i in range(0, len(memory) - 1, 2):
                yield collate_clips(memory[i:i + 2])

    rows, in_memory_rates = [], {}
    for width in args.trainer_widths:
        in_memory = in_memory_rates[width] = trainer_rate(cycle(), device, args.train_steps, width)
        loader = torch.utils.data.DataLoader(BVDMStream(bundle, **kw), batch_size=2, collate_fn=collate_clips,
                                             num_workers=1, multiprocessing_context="spawn", prefetch_factor=4,
                                             pin_memory=device.type == "cuda", persistent_workers=False)
        try:
            fed = trainer_rate(iter(loader), device, args.train_steps, width)
        except Exception as err:  # a failed stream is a result too; the other widths still run
            rows.append({"trainer_width": width, "error": f"{type(err).__name__}: {str(err)[:300]}"})
            print(json.dumps(rows[-1]), flush=True)
            continue
        rows.append({"trainer_width": width, "trainer_params_m": round(sum(
                         p.numel() for p in SegNet(width=width).parameters()) / 1e6, 2),
                     "in_memory_steps_per_s": round(in_memory, 2), "stream_steps_per_s": round(fed, 2),
                     "ratio": round(fed / in_memory, 3)})
        print(json.dumps(rows[-1]), flush=True)
    result = {"trainer": "SegNet (3 levels), bf16, 2 clips x %d frames per step" % args.frames,
              "stream": "DDIM stride 4, bf16%s, t_s 200, t_f 10, gen_batch %d, 1 spawned worker"
                        % (", compiled" if args.compile else "", args.stream_batch),
              "widths": rows}
    first = args.trainer_widths[0]
    return {**result, **followed(bundle, device, args, in_memory_rates[first], first)}


def followed(bundle: str, device: torch.device, args: argparse.Namespace, in_memory: float, width: int) -> dict:
    """(c): the trainer reads a cache that `bvdm-data cache` fills on the same GPU meanwhile (FollowedCache)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "live.lmdb"
        writer = subprocess.Popen(
            [sys.executable, "-m", "bvdm_data", "cache", "--bundle", bundle, "--out", str(path), "--clips", "1000000",
             "--frames", str(args.frames), "--size", str(args.size), str(args.size), "--sampler", "ddim",
             "--stride", "4", "--bf16", *(["--compile"] if args.compile else []), "--device", str(device),
             "--gen-batch", str(args.stream_batch),
             "--commit-every", str(args.stream_batch), "--seed", "1"], stdout=subprocess.DEVNULL)
        try:
            began = time.perf_counter()
            loader = torch.utils.data.DataLoader(
                FollowedCache(path, min_clips=args.stream_batch, refresh_s=1.0), batch_size=2,
                collate_fn=collate_clips, num_workers=2, multiprocessing_context="spawn", prefetch_factor=4,
                pin_memory=device.type == "cuda")
            batches = iter(loader)
            next(batches)  # the first gen batch committed
            waited = time.perf_counter() - began
            rate = trainer_rate(batches, device, args.train_steps, width)
        finally:
            writer.terminate()
            writer.wait(timeout=60)
        pool = len(LMDBClips(path))
    return {"followed": "DataLoader(FollowedCache, 2 spawned workers) while `bvdm-data cache` (same settings, "
                        "gen_batch %d) fills it on the same device" % args.stream_batch,
            "followed_first_batch_s": round(waited, 1), "followed_steps_per_s": round(rate, 2),
            "followed_ratio": round(rate / in_memory, 3), "followed_clips_written": pool}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", default="hela")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--clips", type=int, nargs="+", default=[8, 64, 256])
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--t-s", type=int, default=200)
    parser.add_argument("--t-f", type=int, default=10)
    parser.add_argument("--cell-batch", type=int, default=None, help="cells per network call (default: automatic)")
    parser.add_argument("--stream-batch", type=int, default=32, help="gen_batch of the starvation stream")
    parser.add_argument("--train-steps", type=int, default=40)
    parser.add_argument("--trainer-widths", type=int, nargs="+", default=[32],
                        help="SegNet widths of the starvation trainers (the first also reads the followed cache)")
    parser.add_argument("--skip-starvation", action="store_true")
    parser.add_argument("--compile", action="store_true", help="add compiled runs of the 64-clip bf16 settings")
    parser.add_argument("--precisions", nargs="+", default=["bf16", "fp32"], choices=["bf16", "fp32"])
    parser.add_argument("--skip-frame", action="store_true", help="leave out the frame-by-frame order's rows")
    parser.add_argument("--profile", action="store_true", help="profile one 64-clip DDIM bf16 paint")
    parser.add_argument("--budget-s", type=float, default=420)
    parser.add_argument("--out")
    args = parser.parse_args()
    device = torch.device(args.device)
    start = time.perf_counter()
    rows, plans = [], {}
    # (sampler, stride, precision, schedule, clips, compiled)
    runs = [(sampler, stride, precision, "wide", clips, False) for sampler, stride in (("ddim", 4), ("ddpm", 1))
            for precision in args.precisions for clips in args.clips]
    c = 64 if 64 in args.clips else args.clips[0]
    first = ("ddim", 4, args.precisions[0], "wide", c, False)
    if not args.skip_frame:
        runs[1:1] = [("ddim", 4, "bf16", "frame", 64, False), ("ddpm", 1, "bf16", "frame", 64, False)]
    extra = [("ddim", 4, "bf16", "wide", c, True), ("ddpm", 1, "bf16", "wide", c, True)] if args.compile else []
    at = runs.index(first) + 1  # right after the eager run they compare with, so that the budget reaches them
    runs[at:at] = extra
    for sampler, stride, precision, schedule, clips, compiled in runs:
        if time.perf_counter() - start > args.budget_s:
            print(f"budget of {args.budget_s:.0f} s spent: skipping {sampler} {precision} {schedule} {clips}")
            continue
        settings = SynthesisSettings(t_s=args.t_s, t_f=args.t_f, sampler=sampler, stride=stride,
                                     bf16=precision == "bf16", schedule=schedule, cell_batch=args.cell_batch,
                                     compile=compiled)
        try:
            row = throughput(args.bundle, device, settings, clips, args.frames, args.size, plans)
        except torch.OutOfMemoryError as err:
            row = {"clips": clips, "error": f"out of memory: {str(err)[:120]}"}
            torch.cuda.empty_cache()
        row = {"sampler": f"{sampler}{'' if sampler == 'ddpm' else f' /{stride}'}",
               "precision": precision, "schedule": schedule, "compiled": compiled, **row}
        rows.append(row)
        print(json.dumps(row), flush=True)
    result = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
              "settings": {"t_s": args.t_s, "t_f": args.t_f, "frames": args.frames, "size": args.size,
                           "cpu_workers": DEVICE_CPU_WORKERS, "cell_batch": args.cell_batch or "automatic"},
              "throughput": rows}
    columns = ["sampler", "precision", "schedule", "compiled", "clips", "cell_frames", "plan_s", "paint_s",
               "paint_cell_frames_per_s", "stream_cell_frames_per_s", "peak_gib"]
    print("\n" + markdown([r for r in rows if "error" not in r], columns))
    out = Path(args.out or ROOT / "benchmarks" / "results" / f"gpu_generation_{device.type}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.profile:
        table = profile_paint(args.bundle, device, args, plans)
        out.with_name(out.stem + "_profile.txt").write_text(table + "\n")
        print(table)
    if not args.skip_starvation and time.perf_counter() - start < args.budget_s + 60:
        result["starvation"] = starvation(args.bundle, device, args)
        print(json.dumps(result["starvation"]))
    result["wall_s"] = round(time.perf_counter() - start, 1)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out} ({result['wall_s']} s)")


if __name__ == "__main__":
    main()
