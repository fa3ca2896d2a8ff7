"""Where cells meet: how many touch, and how much light the seam between them keeps, real vs synthetic.

    .venv/bin/python benchmarks/touching.py --dataset hela --cache NAME=LMDB [--cache NAME=LMDB ...]
        [--differ NAME NAME] [--out benchmarks/results/touching_hela_cpu.json]

Real: HeLa ``02`` frames 0-10 with ``02_ERR_SEG`` (what ``downstream.py`` trains its real arm on); GOWT1's gold
SEG outlines only some nuclei per frame, so which of them touch cannot be measured there (no real row).
Synthetic: LMDB caches of clips (e.g. the ones ``downstream.py`` made under ``runs/``), by name. Per source:

* ``touching``: the share of cells, pooled over frames, that share an edge with another cell
  (``bvdm_data.masks.coverage.touching_share``);
* ``seam``: per pair of touching cells, the mean light on the pixels where they meet over the pair's mean
  contrast above the background (``bvdm_data.evaluate.frames``): 1 = no dip between them; median and
  quartiles over pairs; ``no_seam``, the share of pairs whose seam keeps at least 0.8 of their contrast (what
  ``--pressed`` paints);
* with ``--differ A B`` (two caches of the same seeds), the share of pixels whose value differs and the
  clips whose labels do;
* with ``--masks NAME=BUNDLE``, a bundle's mask model alone: 6 simulated fields of 2 frames at the real
  frames' size (1100x700 on HeLa), their touching share, median whole-cell area and cells per 100x100 px
  (a larger sample than the fit's report of one 3-frame video).

Why: segmenters trained on real + BVDM merged real touching HeLa nuclei that a segmenter trained on real
frames alone split (benchmarks/RESULTS.md §1, "Touching cells"). Writes the JSON and a .txt. CPU, a minute.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from bvdm_data.cache import LMDBClips
from bvdm_data.ctc import CTCClips
from bvdm_data.evaluate.frames import frame_statistics
from bvdm_data.masks.contours import measure_instances
from bvdm_data.masks.coverage import touching_share
from bvdm_data.masks.model import MaskModel
from bvdm_data.masks.simulate import simulate_masks

ROOT = Path(__file__).resolve().parents[1]
NO_SEAM = 0.8  # a pair whose light where they meet keeps this share of their contrast shows no seam


def real_hela(data: str) -> list:
    return [CTCClips(data, ["02"], labels="ERR_SEG", clip_len=11, per_frame_ids=True, frames=range(0, 11))[0]]


def measure(clips) -> dict:
    clips = list(clips)
    seam = frame_statistics(clips)["seam"]
    masks = np.concatenate([c["masks"].numpy().reshape(-1, *c["masks"].shape[-2:]) for c in clips])
    q = np.percentile(seam, [25, 50, 75]) if seam.size else [float("nan")] * 3
    return {"frames": int(len(masks)), "cells": int(sum(len(np.unique(f[f > 0])) for f in masks)),
            "touching": round(touching_share(masks), 4), "touching_pairs": int(seam.size),
            "seam_median": round(float(q[1]), 3), "seam_q25": round(float(q[0]), 3), "seam_q75": round(float(q[2]), 3),
            "no_seam": round(float((seam >= NO_SEAM).mean()), 3) if seam.size else float("nan")}


def frame_law(masks: np.ndarray) -> dict:
    """Touching share, median whole-cell area and cells per 100x100 px of a ``[T, H, W]`` label video."""
    inst = measure_instances(masks)
    return {"touching": round(touching_share(masks), 4), "median_area": float(np.median(inst.area[~inst.border])),
            "cells_per_1e4_px": round(len(inst.label) / masks.shape[0] / (masks.shape[1] * masks.shape[2]) * 1e4, 3)}


def simulated(bundle: str, size: tuple[int, int], fields: int = 6, frames: int = 2) -> dict:
    model = MaskModel.load(bundle)
    videos = [simulate_masks(model, frames, size, seed=np.random.SeedSequence([7, f]))["masks"].numpy()
              for f in range(fields)]
    return {**frame_law(np.concatenate(videos)), "min_separation": round(model.min_separation, 4), "bundle": bundle}


def differences(a: LMDBClips, b: LMDBClips) -> dict:
    """The share of pixels whose value differs, and how many clips' labels differ, between two caches."""
    changed = total = relabelled = 0
    n = min(len(a), len(b))
    for i in range(n):
        x, y = a[i], b[i]
        d = (x["video"] - y["video"]).abs() > 1e-6
        changed, total = changed + int(d.sum()), total + d.numel()
        relabelled += int(not bool((x["masks"] == y["masks"]).all()))
    return {"share": changed / max(total, 1), "clips": n, "clips_with_other_labels": relabelled}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="hela", choices=["hela", "gowt1"])
    parser.add_argument("--data", help="the dataset's CTC folder (default ../shared/data/<dataset>)")
    parser.add_argument("--cache", action="append", default=[], metavar="NAME=LMDB", help="a synthetic source")
    parser.add_argument("--differ", nargs=2, metavar=("A", "B"), help="two caches of the same seeds to compare "
                        "pixel by pixel")
    parser.add_argument("--masks", action="append", default=[], metavar="NAME=BUNDLE", help="a bundle's mask model "
                        "alone, simulated at the real frames' size")
    parser.add_argument("--out", help="JSON path (default benchmarks/results/touching_<dataset>_cpu.json)")
    args = parser.parse_args()
    data = args.data or str(ROOT.parent / "shared" / "data" / {"hela": "Fluo-N2DL-HeLa",
                                                                "gowt1": "Fluo-N2DH-GOWT1"}[args.dataset])
    out = Path(args.out or ROOT / "benchmarks" / "results" / f"touching_{args.dataset}_cpu.json")
    caches = dict(c.split("=", 1) for c in args.cache)
    real = real_hela(data) if args.dataset == "hela" else None
    rows = {"real (HeLa 02 frames 0-10, 02_ERR_SEG)": measure(real)} if real else {}
    for name, path in caches.items():
        rows[name] = {**measure(LMDBClips(path)), "cache": str(path)}
    result = {"dataset": args.dataset, "sources": rows}
    if args.masks:
        masks = {"real": frame_law(real[0]["masks"].numpy())} if real else {}
        size = tuple(real[0]["masks"].shape[-2:]) if real else (1024, 1024)
        masks.update({name: simulated(bundle, size) for name, bundle in (m.split("=", 1) for m in args.masks)})
        result["masks"] = masks
    if args.differ:
        a, b = args.differ
        result["differing_pixels"] = {"a": a, "b": b, **differences(LMDBClips(caches[a]), LMDBClips(caches[b]))}
    lines = [f"{'source':58s} {'frames':>6s} {'cells':>6s} {'touching':>8s} {'pairs':>6s}  seam median (q25-q75)  no seam"]
    for name, r in rows.items():
        lines.append(f"{name[:58]:58s} {r['frames']:6d} {r['cells']:6d} {r['touching']:8.3f} {r['touching_pairs']:6d}  "
                     f"{r['seam_median']:.3f} ({r['seam_q25']:.3f}-{r['seam_q75']:.3f})  {r['no_seam']:.3f}")
    for name, r in result.get("masks", {}).items():
        lines.append(f"mask model {name}: touching {r['touching']:.3f}, median whole-cell area {r['median_area']:.0f} px, "
                     f"{r['cells_per_1e4_px']:.2f} cells per 100x100 px" +
                     (f" (min_separation {r['min_separation']:.3f})" if "min_separation" in r else ""))
    if args.differ:
        d = result["differing_pixels"]
        lines.append(f"pixels that differ between {d['a']} and {d['b']}: {d['share']:.4%}; clips whose labels "
                     f"differ: {d['clips_with_other_labels']} of {d['clips']}")
    text = "\n".join(lines)
    print(text)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    out.with_suffix(".txt").write_text(text + "\n")


if __name__ == "__main__":
    main()
