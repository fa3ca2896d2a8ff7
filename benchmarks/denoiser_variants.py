"""Ways to run the texture U-Net: evaluations/s and error, in one run on one device.

    python benchmarks/denoiser_variants.py --device cuda [--batch 2048] [--compile]

The shipped bundle's denoiser (0.9 M parameters, 16 base channels, 64^2
crops) does ~0.37 GFLOP per image but writes ~44 MB of fp32 activations per
image in eager mode (counted with the profiler on the CPU): at paper settings
it is bound by memory traffic, not arithmetic, so the variants here differ in
bytes moved: bf16 autocast (the norms still run in fp32), the whole network in
bf16, channels-last memory, and ``torch.compile`` (fusing norms, activations
and adds). Each variant runs the same random batch (images in -1..1, steps in
0..199, the SDEdit range); the error is ``|eps - eps_fp32| / |eps_fp32|``
against the fp32 eager network. Prints a table and writes
benchmarks/results/denoiser_variants_<device>.json.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import torch

from bvdm_data.diffusion.texture import TextureModel
from bvdm_data.evaluate.realism import markdown

ROOT = Path(__file__).resolve().parents[1]


def timed(fn, device: torch.device, repeats: int) -> float:
    """Median seconds per call of ``fn`` after two warm-up calls."""
    for _ in range(2):
        fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1000)
        else:
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def variants(model: torch.nn.Module, with_compile: bool) -> dict:
    """name -> (network, input dtype, memory format, autocast)."""
    bf16 = copy.deepcopy(model).to(torch.bfloat16)
    out = {
        "fp32": (model, torch.float32, torch.contiguous_format, False),
        "bf16 autocast (shipped bf16=True)": (model, torch.float32, torch.contiguous_format, True),
        "bf16 autocast, channels-last": (copy.deepcopy(model).to(memory_format=torch.channels_last),
                                         torch.float32, torch.channels_last, True),
        "bf16 weights": (bf16, torch.bfloat16, torch.contiguous_format, False),
        "bf16 weights, channels-last": (copy.deepcopy(bf16).to(memory_format=torch.channels_last),
                                        torch.bfloat16, torch.channels_last, False),
    }
    if with_compile:  # one: compiling takes about a minute (compiled with autocast: gpu_generation.py --compile)
        out["compiled, bf16 weights, channels-last"] = (
            torch.compile(copy.deepcopy(bf16).to(memory_format=torch.channels_last)),
            torch.bfloat16, torch.channels_last, False)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", default="hela")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batch", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--compile", action="store_true", help="add a torch.compile variant (compile time apart)")
    parser.add_argument("--out")
    args = parser.parse_args()
    device = torch.device(args.device)
    texture = TextureModel.load(args.bundle, device)
    model = texture.denoiser.model.eval()
    size = texture.crop_size
    gen = torch.Generator().manual_seed(0)
    x = (torch.rand(args.batch, 1, size, size, generator=gen) * 2 - 1).to(device)
    t = torch.randint(0, 200, (args.batch,), generator=gen).to(device)
    rows, reference = [], None
    for name, (net, dtype, memory_format, autocast) in variants(model, args.compile).items():
        xin = x.to(dtype).contiguous(memory_format=memory_format)

        @torch.no_grad()
        def call(net=net, xin=xin, autocast=autocast):
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                return net(xin, t)

        t0 = time.perf_counter()
        eps = call().float()
        first_s = time.perf_counter() - t0
        if reference is None:
            reference = eps
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        seconds = timed(call, device, args.repeats)
        row = {"variant": name, "batch": args.batch, "ms_per_call": round(1000 * seconds, 2),
               "images_per_s": round(args.batch / seconds), "first_call_s": round(first_s, 1),
               "rel_error": float(f"{float((eps - reference).norm() / reference.norm()):.2e}"),
               "peak_gib": round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if device.type == "cuda" else None}
        rows.append(row)
        print(json.dumps(row), flush=True)
    base = rows[0]["images_per_s"]
    for row in rows:
        row["vs_fp32"] = round(row["images_per_s"] / base, 2)
    print("\n" + markdown(rows, ["variant", "batch", "ms_per_call", "images_per_s", "vs_fp32", "rel_error",
                                 "first_call_s", "peak_gib"]))
    result = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
              "torch": torch.__version__, "bundle": args.bundle, "crop": size, "rows": rows}
    out = Path(args.out or ROOT / "benchmarks" / "results" / f"denoiser_variants_{device.type}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
