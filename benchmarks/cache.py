"""LMDB cache vs reading the same clips from CTC TIFFs: random-access clips/s and bytes per clip.

    .venv/bin/python benchmarks/cache.py [--data tests/data/Fluo-N2DL-HeLa] [--clips 64]

The clips are real CTCClips windows (content does not change read speed), written
once into LMDB with and without compression, then read back in a shuffled order
by LMDBClips and by CTCClips (TIFF decode + normalisation + relabelling), in one
run. Also prints the write throughput (encode + commit). Ratios are what count.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bvdm_data import CTCClips
from bvdm_data.cache import LMDBClips, encode_clip, write_cache

ROOT = Path(__file__).resolve().parents[1]


def rate(read, order) -> float:
    start = time.perf_counter()
    for i in order:
        read(int(i))
    return len(order) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(ROOT / "tests" / "data" / "Fluo-N2DL-HeLa"))
    parser.add_argument("--seq", default="02")
    parser.add_argument("--labels", default="ERR_SEG")
    parser.add_argument("--clip-len", type=int, default=4)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--clips", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(1)
    real = CTCClips(args.data, [args.seq], labels=args.labels, clip_len=args.clip_len, size=(args.size, args.size),
                    mode="random", num_clips=args.clips, per_frame_ids=True)
    order = np.random.default_rng(0).permutation(args.clips)
    with tempfile.TemporaryDirectory() as tmp:
        results = {}
        for compression in ("zlib", "raw"):
            path = Path(tmp) / f"{compression}.lmdb"
            start = time.perf_counter()
            write_cache(path, {"benchmark": True}, range(args.clips), lambda ks: [real[k] for k in ks],
                        commit_every=16, compression=compression, progress=False)
            gen_and_write = time.perf_counter() - start
            cached = LMDBClips(path)
            results[compression] = {
                "bytes_per_clip": len(encode_clip(real[0], compression)),
                "lmdb_clips_per_s": rate(cached.__getitem__, order),
                "write_clips_per_s": args.clips / gen_and_write,
            }
        tiff = rate(real.__getitem__, order)
    raw_bytes = real[0]["video"].numel() * 4 + real[0]["masks"].numel() * 4
    print(f"{args.clips} clips of {args.clip_len}x{args.size}x{args.size}; float32 video + int32 masks = "
          f"{raw_bytes / 1e6:.2f} MB in memory\n")
    print("| reader | clips/s | vs TIFF | bytes per clip |\n|---|---|---|---|")
    print(f"| CTCClips (TIFF) | {tiff:.1f} | 1.0x | - |")
    for name, r in results.items():
        print(f"| LMDBClips ({name}) | {r['lmdb_clips_per_s']:.1f} | {r['lmdb_clips_per_s'] / tiff:.1f}x | "
              f"{r['bytes_per_clip'] / 1e6:.3f} MB |")
    print(f"\nwrite (read from TIFF + encode + commit): zlib {results['zlib']['write_clips_per_s']:.1f} clips/s, "
          f"raw {results['raw']['write_clips_per_s']:.1f} clips/s")


if __name__ == "__main__":
    main()
