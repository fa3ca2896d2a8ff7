"""Train a small segmentation network on BVDMStream clips for a few steps.

    python examples/train_segmentation.py --steps 20 --size 128 128

A tiny U-Net-like net predicts foreground and cell boundaries per frame from
synthetic clips of the shipped `hela` bundle; instances would follow by
connected components of (foreground and not boundary). The point is the data
path: DataLoader(BVDMStream) -> collate_clips -> frames as a batch of images.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn
from torch.utils.data import DataLoader

from bvdm_data import BVDMStream, collate_clips


def targets(masks: torch.Tensor) -> torch.Tensor:
    """Per-pixel classes from instance masks [N, H, W]: 0 background, 1 cell, 2 boundary between or around cells."""
    padded = nn.functional.pad(masks[:, None].float(), (1, 1, 1, 1), mode="replicate")
    neighbours = nn.functional.unfold(padded, 3).view(masks.shape[0], 9, *masks.shape[-2:])
    boundary = (neighbours != masks[:, None].float()).any(1) & (masks > 0)
    return torch.where(boundary, 2, (masks > 0).long())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--size", type=int, nargs=2, default=(128, 128), metavar=("H", "W"))
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--t-s", type=int, default=200, help="SDEdit noise step of a cell's first frame (paper: 200)")
    args = parser.parse_args()
    # The default sampler, DDIM stride 4: a quarter of DDPM's network calls, and the clips that mixed best with
    # real frames downstream (benchmarks/RESULTS.md section 1, "The library's default sampler")
    stream = BVDMStream("hela", clip_len=args.frames, size=tuple(args.size), t_s=args.t_s, t_f=5,
                        density=2e-4, gen_batch=2, seed=0)
    loader = DataLoader(stream, batch_size=2, num_workers=2, collate_fn=collate_clips)
    net = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=2, dilation=2),
                        nn.ReLU(), nn.Conv2d(16, 16, 3, padding=4, dilation=4), nn.ReLU(), nn.Conv2d(16, 3, 1))
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    weights = torch.tensor([1.0, 2.0, 5.0])
    start = time.perf_counter()
    for step, batch in enumerate(loader):
        if step == args.steps:
            break
        images = batch["video"].flatten(0, 1)              # [B*T, 1, H, W]
        labels = targets(batch["masks"].flatten(0, 1))      # [B*T, H, W]
        loss = nn.functional.cross_entropy(net(images), labels, weight=weights)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        print(f"step {step:3d}  loss {loss.item():.3f}  ({time.perf_counter() - start:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
