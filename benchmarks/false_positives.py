"""What a segmenter marks that the annotation does not: its false positives on GOWT1 02, measured.

    .venv/bin/python benchmarks/false_positives.py NAME=CHECKPOINT [NAME=CHECKPOINT ...] [--every 8] [--out ...]

Takes segmenters that ``downstream.py --dataset gowt1`` trained and kept
(``runs/downstream_parts/<run>/<arm>_seed<k>.<hash>.ckpt``), segments every ``--every``-th frame of GOWT1 ``02``
as the protocol does, and sorts each predicted object by DET's rule: it matches a gold TRA marker when it
covers more than half of it, else it is a false positive. For both kinds it reports the area (px) and the
light (mean inside the object above the frame's median background pixel) in units of the matched objects'
median light, as 10th / 50th / 90th percentiles, and for false positives the share touching the frame's edge
and the share overlapping some marker. Writes benchmarks/results/false_positives_gowt1_cpu.json and .txt (or
--out). CPU, about 20 s per net at ``--every 8``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from bvdm_data.ctc import open_sequence
from bvdm_data.evaluate.downstream import RealSequence, load_segmenter, segment

ROOT = Path(__file__).resolve().parents[1]
LIGHT_BINS = (0.05, 0.15, 0.3)  # in units of the matched objects' median light


def sort_objects(predicted: np.ndarray, markers: np.ndarray, video: np.ndarray) -> dict[str, list[dict]]:
    """Each object of ``predicted`` ``[T, H, W]`` as ``matched`` or ``false_positive`` against ``markers``."""
    kinds: dict[str, list[dict]] = {"matched": [], "false_positive": []}
    for pred, mark, image in zip(predicted, markers, video):
        background = float(np.median(image[(pred == 0) & (mark == 0)]))
        marker_area = np.bincount(mark.ravel())
        for obj in range(1, int(pred.max()) + 1):
            inside = pred == obj
            if not inside.any():
                continue
            hit, counts = np.unique(mark[inside], return_counts=True)
            matched = any(h and 2 * n > marker_area[h] for h, n in zip(hit, counts))
            ys, xs = np.nonzero(inside)
            kinds["matched" if matched else "false_positive"].append({
                "area": int(inside.sum()), "light": float(image[inside].mean() - background),
                "edge": bool(ys.min() == 0 or xs.min() == 0 or ys.max() == pred.shape[0] - 1
                             or xs.max() == pred.shape[1] - 1),
                "on_marker": bool((hit > 0).any())})
    return kinds


def summarise(kinds: dict[str, list[dict]], frames: int) -> dict:
    unit = float(np.median([o["light"] for o in kinds["matched"]]))
    out: dict = {"frames": frames, "light_unit": unit}
    for name, objects in kinds.items():
        if not objects:
            out[name] = {"count": 0}
            continue
        area = np.array([o["area"] for o in objects])
        light = np.array([o["light"] for o in objects]) / unit
        row = {"count": len(objects), "per_frame": round(len(objects) / frames, 2),
               "area_q10_q50_q90": np.percentile(area, [10, 50, 90]).round(0).tolist(),
               "light_q10_q50_q90": np.percentile(light, [10, 50, 90]).round(3).tolist()}
        if name == "false_positive":
            edges = (-np.inf, *LIGHT_BINS, np.inf)
            names = [f"<{LIGHT_BINS[0]:g}"] + [f"{lo:g}-{hi:g}" for lo, hi in zip(LIGHT_BINS[:-1], LIGHT_BINS[1:])] \
                + [f">={LIGHT_BINS[-1]:g}"]
            row["light_share_by_bin"] = {name: round(float(((light >= lo) & (light < hi)).mean()), 3)
                                         for name, lo, hi in zip(names, edges[:-1], edges[1:])}
            row["at_frame_edge"] = round(float(np.mean([o["edge"] for o in objects])), 3)
            row["on_a_marker"] = round(float(np.mean([o["on_marker"] for o in objects])), 3)
        out[name] = row
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("nets", nargs="+", metavar="NAME=CHECKPOINT")
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "Fluo-N2DH-GOWT1"))
    parser.add_argument("--every", type=int, default=8, help="segment every N-th frame of 02 (default 8: 12 frames)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "false_positives_gowt1_cpu.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    test = RealSequence.load(args.data, "02")
    index = list(range(0, len(test.video), args.every))
    video = test.video[index]
    sequence = open_sequence(args.data, "02", labels="GT")  # labels: the gold TRA markers
    markers = np.stack([sequence.labels.read(sequence.images.frames[i]) for i in index])
    rows = {}
    for item in args.nets:
        name, path = item.split("=", 1)
        net = load_segmenter(path)
        kinds = sort_objects(segment(net, video), markers, video[:, 0].numpy())
        rows[name] = {**summarise(kinds, len(index)), "checkpoint": path, "steps": net.steps}
    lines = [f"{'net':28s} {'matched':>7s} {'FP':>5s} {'FP/frame':>8s}  {'matched area q10/50/90':>24s}  "
             f"{'FP area q10/50/90':>20s}  {'FP light q10/50/90':>20s}  FP light shares by bin  edge  on marker"]
    for name, r in rows.items():
        fp, tp = r["false_positive"], r["matched"]
        if not fp["count"]:
            lines.append(f"{name[:28]:28s} {tp['count']:7d} {0:5d}")
            continue
        bins = " ".join(f"{k}:{v:.2f}" for k, v in fp["light_share_by_bin"].items())
        lines.append(f"{name[:28]:28s} {tp['count']:7d} {fp['count']:5d} {fp['per_frame']:8.1f}  "
                     f"{'/'.join(f'{a:g}' for a in tp['area_q10_q50_q90']):>24s}  "
                     f"{'/'.join(f'{a:g}' for a in fp['area_q10_q50_q90']):>20s}  "
                     f"{'/'.join(f'{a:.2f}' for a in fp['light_q10_q50_q90']):>20s}  {bins}  "
                     f"{fp['at_frame_edge']:.2f}  {fp['on_a_marker']:.2f}")
    text = "\n".join(lines)
    print(text)
    out = Path(args.out)
    out.write_text(json.dumps({"test": f"GOWT1 02, every {args.every}th frame, objects vs gold TRA markers",
                               "nets": rows}, indent=1))
    out.with_suffix(".txt").write_text(text + "\n")


if __name__ == "__main__":
    main()
