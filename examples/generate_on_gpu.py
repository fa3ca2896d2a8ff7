"""Generate clips on a GPU: models and tensors stay on the device, bf16 autocast on.

    python examples/generate_on_gpu.py --clips 128

Generation runs in the main process (num_workers=0): CUDA state does not survive
fork. To paint while a trainer trains on the same GPU, use one worker with
DataLoader(..., num_workers=1, multiprocessing_context="spawn"). 64 clips are
painted together by default (`--gen-batch`), their masks planned on the CPU
while the previous batch paints.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.utils.data import DataLoader

from bvdm_data import BVDMStream, collate_clips
from bvdm_data.clip import cell_frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=128)
    parser.add_argument("--gen-batch", type=int, default=None, help="clips painted together (default 64 on a GPU)")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, nargs=2, default=(256, 256), metavar=("H", "W"))
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device: this example needs a GPU")
    stream = BVDMStream("hela", clip_len=args.frames, size=tuple(args.size), device="cuda", bf16=True,
                        gen_batch=args.gen_batch, num_clips=args.clips)
    loader = DataLoader(stream, batch_size=4, num_workers=0, collate_fn=collate_clips, pin_memory=True)
    start = time.perf_counter()
    cells = 0
    for batch in loader:
        cells += sum(cell_frames(t) for t in batch["tracks"])  # annotated cell-frames
    seconds = time.perf_counter() - start
    print(f"{args.clips} clips in {seconds:.1f} s: {args.clips / seconds:.2f} clips/s, {cells / seconds:.1f} "
          f"annotated cell-frames/s on {torch.cuda.get_device_name()}")


if __name__ == "__main__":
    main()
