"""How sharp annotated nuclei's edges are, real against painted, and how large HeLa's nuclei are in each sequence.

    .venv/bin/python benchmarks/edge_sharpness.py [--cache runs/<a downstream cache>.lmdb] [--out ...]

Beside ``benchmarks/shift.py``: a segmenter taught on clips moves its outlines further out under blur than one
taught on real frames. One cause would be painted edges sharper than real ones. Per whole cell (off the frame's
border, at least 100 px), this measures the peak of the Gaussian gradient magnitude (sigma 1 px) within 2 px of
the outline, averaged along the outline, over the cell's contrast (mean 3 px and more inside, minus the median
of pixels more than 5 px from any cell): 1 / the edge's width, roughly, in px. For HeLa ``02`` frames 0-10 (the
training frames), 11-13 (the test) and every frame of the cache, as quartiles. It also gives the median area of
whole nuclei in ``01_RES``'s first 14 frames (sequence 01, a method's masks) and in ``02_ERR_SEG``, the one hint we
hold of the other sequence's magnification. Writes benchmarks/results/edge_sharpness_hela_cpu.json and .txt.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import tifffile
from scipy import ndimage

from bvdm_data import CTCClips
from bvdm_data.cache import LMDBClips

ROOT = Path(__file__).resolve().parents[1]


def whole_cells(labels: np.ndarray, min_area: int = 100) -> list[int]:
    """Ids of cells that do not touch the frame's edge and cover at least ``min_area`` px."""
    border = set(np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]).tolist()))
    areas = np.bincount(labels.ravel())
    return [i for i in np.nonzero(areas)[0].tolist() if i and i not in border and areas[i] >= min_area]


def edge_sharpness(image: np.ndarray, labels: np.ndarray) -> list[float]:
    """Per whole cell: peak gradient near the outline, averaged along it, over the cell's contrast (1/px)."""
    grad = ndimage.gaussian_gradient_magnitude(image.astype(np.float64), 1.0)
    background = float(np.median(image[ndimage.distance_transform_edt(labels == 0) > 5]))
    keep, out = set(whole_cells(labels)), []
    for i, box in enumerate(ndimage.find_objects(labels), 1):
        if box is None or i not in keep:
            continue
        box = tuple(slice(max(s.start - 4, 0), s.stop + 4) for s in box)
        cell = labels[box] == i
        inner = ndimage.binary_erosion(cell, iterations=3)
        contrast = float(image[box][inner].mean()) - background if inner.sum() >= 20 else 0.0
        if contrast <= 0:
            continue
        band = ndimage.binary_dilation(cell, iterations=2) & ~ndimage.binary_erosion(cell, iterations=2)
        peak = ndimage.maximum_filter(np.where(band, grad[box], 0.0), size=5)
        outline = cell & ~ndimage.binary_erosion(cell)
        out.append(float(peak[outline].mean()) / contrast)
    return out


def over_clips(clips) -> list[float]:
    return [v for c in clips for t in range(len(c["video"]))
            for v in edge_sharpness(c["video"][t, 0].numpy(), c["masks"][t].numpy())]


def median_area(files: list[Path]) -> tuple[int, float]:
    areas = []
    for f in files:
        labels = tifffile.imread(f)
        counts = np.bincount(labels.ravel())
        areas += [int(counts[i]) for i in whole_cells(labels, min_area=1)]
    return len(areas), float(np.median(areas))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "Fluo-N2DL-HeLa"))
    parser.add_argument("--cache", help="an LMDB cache of clips (e.g. the one downstream.py painted)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "edge_sharpness_hela_cpu.json"))
    args = parser.parse_args()
    sources = {}
    for name, frames in (("real 02 frames 0-10", range(0, 11)), ("real 02 frames 11-13", range(11, 14))):
        real = CTCClips(args.data, ["02"], labels="ERR_SEG", clip_len=1, per_frame_ids=True, frames=frames)
        sources[name] = over_clips(real[i] for i in range(len(real)))
    if args.cache:
        cache = LMDBClips(args.cache)
        sources[f"clips {Path(args.cache).name}"] = over_clips(cache[i] for i in range(len(cache)))
    rows = [{"source": name, "cells": len(v), "q25_50_75": np.percentile(v, [25, 50, 75]).round(4).tolist()}
            for name, v in sources.items()]
    data = Path(args.data)
    areas = {"01_RES frames 0-13": median_area(sorted(data.glob("01_RES/mask*.tif"))[:14]),
             "02_ERR_SEG frames 0-13": median_area(sorted(data.glob("02_ERR_SEG/mask*.tif")))}
    lines = ["edge sharpness (peak gradient at the outline / contrast, 1/px): cells, quartiles"]
    lines += [f"  {r['source']}: {r['cells']} cells, {' / '.join(f'{q:.3f}' for q in r['q25_50_75'])}" for r in rows]
    lines.append("median area of whole nuclei (px):")
    lines += [f"  {k}: {n} nuclei, {a:.0f} px" for k, (n, a) in areas.items()]
    ratio = (areas["01_RES frames 0-13"][1] / areas["02_ERR_SEG frames 0-13"][1]) ** 0.5
    lines.append(f"  linear scale 01 / 02: {ratio:.3f}")
    text = "\n".join(lines)
    print(text)
    out = Path(args.out)
    out.write_text(json.dumps({"sharpness": rows, "median_area": {k: {"nuclei": n, "px": a} for k, (n, a) in
                                                                  areas.items()}, "scale_01_over_02": ratio},
                              indent=1))
    out.with_suffix(".txt").write_text(text + "\n")


if __name__ == "__main__":
    main()
