"""What drawing each clip's image formation (the default ``formation=Photometric()``) costs per clip.

    .venv/bin/python benchmarks/formation_cost.py [--device cuda] [--clips 64] [--frames 8] [--size 256]

Times ``synth.pipeline.vary_formation`` on one batch of finished clips on the given device, as the synthesizer
calls it (the whole batch, before its one copy to the host), and the same batch clip by clip on one CPU thread,
which is what a host-side formation would cost the synthesizer's main process. Prints milliseconds per clip
(best of ``--repeats``) and their ratio. Random clips: the cost depends on the pixel count and on which changes
each clip draws, not on the picture.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch

from bvdm_data.diffusion.noise import derive_key
from bvdm_data.photometric import Photometric
from bvdm_data.synth.pipeline import vary_formation


def best_seconds(run: Callable[[], object], device: torch.device, repeats: int) -> float:
    """The fastest of ``repeats`` timed calls after one warm-up, waiting for the device each time."""
    run()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        run()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--clips", type=int, default=16)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    device = torch.device(args.device)
    cpu = torch.device("cpu")
    gen = torch.Generator().manual_seed(0)
    clips = 0.3 + 0.3 * torch.rand(args.clips, args.frames, 1, args.size, args.size, generator=gen)
    keys = [derive_key(k) for k in range(args.clips)]
    on_device = clips.to(device)
    batch = best_seconds(lambda: vary_formation(on_device, keys, Photometric()), device, args.repeats)
    alone = best_seconds(lambda: [vary_formation(c[None], [k], Photometric()) for c, k in zip(clips, keys)], cpu,
                         args.repeats)
    print(f"{args.clips} clips x {args.frames} frames of {args.size}^2, formation=Photometric(): "
          f"{batch / args.clips * 1e3:.2f} ms per clip as one batch on {device}, "
          f"{alone / args.clips * 1e3:.2f} ms per clip one by one on one CPU thread "
          f"(x{alone / batch:.1f}; {alone / args.clips * 64:.2f} s of the main process per 64 clips)")


if __name__ == "__main__":
    main()
