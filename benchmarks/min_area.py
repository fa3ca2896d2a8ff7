"""The protocol's size filter on GOWT1: kept segmenters scored again with other smallest objects kept.

    .venv/bin/python benchmarks/min_area.py NAME=CHECKPOINT [NAME=CHECKPOINT ...] [--min-area 40 320] [--out ...]

``downstream.py`` drops predicted objects under ``ProtocolConfig.min_area`` = 40 px, a value set for HeLa (5th
percentile of the nuclei's area 279 px in ``02_ERR_SEG`` frames 0-10). GOWT1's are 7.7 times larger (2 162 px in
``01_GT/SEG``), so 320 px is the same filter at GOWT1's scale; and the false positives
every GOWT1 net makes on ``02`` are mostly small faint fragments (``benchmarks/false_positives.py``). This takes
nets that ``downstream.py --dataset gowt1`` kept, segments all of ``02`` with each ``--min-area`` and scores SEG,
DET and TRA with DET's error counts, as the protocol does (segmenter + ``track_by_overlap`` + py-ctcmetrics).
Writes benchmarks/results/min_area_gowt1_cpu.json and .txt (or --out). CPU, 3-5 min per net and value. For
the nets of one ``downstream.py`` run, ``downstream.py ... --resume --min-area N`` does the same within the
protocol and writes its usual tables.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from bvdm_data.evaluate.downstream import RealSequence, load_segmenter, score_segmentation, segment

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("nets", nargs="+", metavar="NAME=CHECKPOINT")
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "Fluo-N2DH-GOWT1"))
    parser.add_argument("--min-area", type=int, nargs="+", default=[40, 320],
                        help="smallest object kept, px (default: the protocol's 40 and 320, the same filter at "
                             "GOWT1's scale: its nuclei's 5th percentile of area is 7.7 times HeLa's)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "min_area_gowt1_cpu.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    test = RealSequence.load(args.data, "02")
    rows = []
    for item in args.nets:
        name, path = item.split("=", 1)
        net = load_segmenter(path)
        for min_area in args.min_area:
            scores = score_segmentation(segment(net, test.video, min_area), test.gt, ("SEG", "DET", "TRA"),
                                        errors=True)
            rows.append({"net": name, "min_area": min_area, **scores, "checkpoint": path})
            print(f"{name}, min_area {min_area}: " + ", ".join(f"{k} {v:.3f}" if k in ("SEG", "DET", "TRA")
                                                                  else f"{k} {v:g}" for k, v in scores.items()),
                  flush=True)
    lines = [f"{'net':28s} {'min_area':>8s} {'SEG':>6s} {'DET':>6s} {'TRA':>6s} {'FP':>6s} {'misses':>6s} "
             f"{'splits':>6s}"]
    lines += [f"{r['net'][:28]:28s} {r['min_area']:8d} {r['SEG']:6.3f} {r['DET']:6.3f} {r['TRA']:6.3f} "
              f"{r['false_positives']:6g} {r['misses']:6g} {r['splits']:6g}" for r in rows]
    text = "\n".join(lines)
    print(text)
    out = Path(args.out)
    out.write_text(json.dumps({"test": "GOWT1 02, all frames: SEG on its gold SEG frames, DET and TRA on its gold TRA",
                               "rows": rows}, indent=1))
    out.with_suffix(".txt").write_text(text + "\n")


if __name__ == "__main__":
    main()
