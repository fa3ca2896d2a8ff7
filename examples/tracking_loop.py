"""A tracking-style loop: link cells between frames by overlap and score the links against the lineage.

    python examples/tracking_loop.py --clips 4

For each synthetic clip, every cell in frame t+1 is linked to the cell of
frame t it overlaps most (a naive tracker); the ground-truth lineage
(`tracks`: a cell keeps its id, daughters name their mother) says which
links are right. This is the shape of a tracking trainer's inner loop.
"""

from __future__ import annotations

import argparse

import numpy as np

from bvdm_data import BVDMStream
from bvdm_data.evaluate import match_by_overlap


def true_links(tracks: np.ndarray) -> set[tuple[int, int, int]]:
    """(frame, id at t, id at t+1) for every cell continuing or dividing between t and t+1."""
    links = set()
    for label, first, last, parent in tracks.tolist():
        links |= {(t, label, label) for t in range(first, last)}
        if parent:
            links.add((first - 1, parent, label))
    return links


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=4)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, nargs=2, default=(128, 128), metavar=("H", "W"))
    args = parser.parse_args()
    stream = BVDMStream("hela", clip_len=args.frames, size=tuple(args.size), t_s=50, t_f=5, density=2e-4,
                        num_clips=args.clips, gen_batch=args.clips)
    print(f"painting {args.clips} clips of {args.frames} frames on the CPU, all together (a few minutes)...",
          flush=True)
    for clip in stream:
        masks = clip["masks"].numpy()
        predicted = {(t, a, b) for t in range(len(masks) - 1) for a, b in match_by_overlap(masks[t], masks[t + 1])}
        truth = true_links(clip["tracks"].numpy())
        right = len(predicted & truth)
        print(f"clip {clip['meta']['index']}: {len(truth)} true links, overlap linking found {right} "
              f"({right / max(len(truth), 1):.0%}), {len(predicted - truth)} wrong")


if __name__ == "__main__":
    main()
