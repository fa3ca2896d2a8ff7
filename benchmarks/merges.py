"""Where a segmenter's SEG goes on the HeLa test frames: merged touching nuclei, misses, or outlines.

    .venv/bin/python benchmarks/merges.py NAME=CHECKPOINT [NAME=CHECKPOINT ...] [--out ...]

Takes segmenters that ``downstream.py`` trained and kept (``runs/downstream_parts/<run>/<arm>_seed<k>.<hash>.ckpt``),
segments ``02`` frames 11-13 as the protocol does, and splits each reference cell's SEG term (its IoU with
the predicted object covering more than half of it, else 0) into three parts:

* ``merged``: reference cells whose object covers more than half of another reference cell too (two nuclei
  drawn as one); ``seg_lost_merged`` is what they lose, summed and divided by all reference cells;
* ``missed``: reference cells no object covers by more than half (``seg_lost_missed``);
* the IoU of the other cells (``iou_rest``): the outlines.

SEG = 1 - seg_lost_merged - seg_lost_missed - (1 - iou_rest) x their share. For each merged pair it also
gives the gap between the two reference cells (0: they touch) and the seam (the mean light on the pixels of
either cell that 4-neighbour the other, over the pair's mean contrast above the frame's median background
pixel; ``bvdm_data.evaluate.frames`` takes the same pixels but its background level from the unlabelled-object
fit, so the two agree only roughly). Writes
benchmarks/results/merges_hela_cpu.json and .txt (or --out). CPU, seconds per net.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from bvdm_data.ctc import CTCClips
from bvdm_data.evaluate.downstream import load_segmenter, segment
from bvdm_data.masks.coverage import meeting_pixels

ROOT = Path(__file__).resolve().parents[1]
TEST = range(11, 14)


def split_seg(predicted: np.ndarray, reference: np.ndarray, video: np.ndarray) -> dict:
    """SEG's terms over ``[T, H, W]`` frames, split into merged, missed and the rest (see the module docstring)."""
    terms: dict[str, list[float]] = {"merged": [], "missed": [], "rest": []}
    pairs = []
    for pred, ref, image in zip(predicted, reference, video):
        ref_area, pred_area = np.bincount(ref.ravel()), np.bincount(pred.ravel())
        both = (ref > 0) & (pred > 0)
        overlap, counts = np.unique(np.stack([ref[both], pred[both]]), axis=1, return_counts=True)
        match = {int(r): (int(p), n / (pred_area[p] + ref_area[r] - n))
                 for r, p, n in zip(*overlap, counts) if 2 * n > ref_area[r]}
        owners: dict[int, list[int]] = {}
        for r, (p, _) in match.items():
            owners.setdefault(p, []).append(r)
        for r in np.unique(ref[ref > 0]).tolist():
            p, iou = match.get(r, (0, 0.0))
            terms["missed" if r not in match else "merged" if len(owners[p]) > 1 else "rest"].append(iou)
        level = float(np.median(image[ref == 0]))
        here, there, where = meeting_pixels(ref)
        for cells in (c for c in owners.values() if len(c) > 1):
            a, b = (ref == cells[0]), (ref == cells[1])
            pair = np.isin(here, cells[:2]) & np.isin(there, cells[:2])
            meet = np.zeros(ref.size, bool)
            meet[where[pair]] = True  # each meeting pixel once
            meet = meet.reshape(ref.shape)
            contrast = (image[a].mean() + image[b].mean()) / 2 - level
            pairs.append({"gap_px": float(ndimage.distance_transform_edt(~a)[b].min()) - 1.0,
                          "seam": round(float((image[meet].mean() - level) / contrast), 3) if meet.any() else None})
    n = sum(len(v) for v in terms.values())
    return {"SEG": round(float(np.mean([i for v in terms.values() for i in v])), 4), "reference_cells": n,
            "merged": len(terms["merged"]), "missed": len(terms["missed"]),
            "seg_lost_merged": round(float(np.sum(1 - np.asarray(terms["merged"]))) / n, 4),
            "seg_lost_missed": round(len(terms["missed"]) / n, 4),
            "iou_rest": round(float(np.mean(terms["rest"])), 4), "merged_pairs": pairs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("nets", nargs="+", metavar="NAME=CHECKPOINT")
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "Fluo-N2DL-HeLa"))
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "merges_hela_cpu.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    test = CTCClips(args.data, ["02"], labels="ERR_SEG", clip_len=len(TEST), per_frame_ids=True, frames=TEST)[0]
    reference, video = test["masks"].numpy(), test["video"][:, 0].numpy()
    rows = {}
    for item in args.nets:
        name, path = item.split("=", 1)
        net = load_segmenter(path)
        rows[name] = {**split_seg(segment(net, test["video"]), reference, video), "checkpoint": path,
                      "steps": net.steps}
    lines = [f"{'net':44s} {'SEG':>6s} {'merged':>6s} {'lost':>6s} {'missed':>6s} {'lost':>6s} {'IoU rest':>8s}  "
             "merged pairs (gap px, seam)"]
    for name, r in rows.items():
        pairs = ", ".join(f"({p['gap_px']:g}, {p['seam']})" for p in r["merged_pairs"])
        lines.append(f"{name[:44]:44s} {r['SEG']:6.3f} {r['merged']:6d} {r['seg_lost_merged']:6.3f} {r['missed']:6d} "
                     f"{r['seg_lost_missed']:6.3f} {r['iou_rest']:8.4f}  {pairs}")
    text = "\n".join(lines)
    print(text)
    out = Path(args.out)
    out.write_text(json.dumps({"test": "HeLa 02 frames 11-13 vs 02_ERR_SEG", "nets": rows}, indent=1))
    out.with_suffix(".txt").write_text(text + "\n")


if __name__ == "__main__":
    main()
