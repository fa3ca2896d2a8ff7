"""Cell brightness: the fitted law against real cells, and the draws the realism table paints at.

    .venv/bin/python benchmarks/brightness.py [--dataset hela|gowt1] [--cells 120]

The same cells as ``texture.py`` (hela: 02 frames 11-13 held out, the other
frames as reference; gowt1: 02's gold-outlined nuclei held out, 01's as
reference) and the same draws (:func:`bvdm_data.evaluate.realism.drawn_brightness`).
Brightness = mean inside the outline, in the texture's -1..1 units. Prints
quartiles of each set and the Kolmogorov-Smirnov and Wasserstein distances of
each to the held-out cells; where the bundle has the law by size
(``cell_mean_by_area``), the same per size class for the marginal law and the
law of the class, and the law by size drawn at the held-out cells' own areas.
Writes benchmarks/results/brightness_<dataset>.json. No network runs: seconds on a CPU.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from scipy.stats import ks_2samp, wasserstein_distance

from bvdm_data.diffusion.crops import sample_brightness, size_class
from bvdm_data.diffusion.edges import mean_inside
from bvdm_data.evaluate.realism import drawn_brightness, markdown
from texture import ROOT, add_dataset_arguments, load_dataset


def size_classes(statistics: dict, target: np.ndarray, areas: np.ndarray, draws: int = 20_000) -> list[dict]:
    """Per size class of the law by size: the held-out cells' brightness against the marginal law's and the
    class law's draws (quartiles and Kolmogorov-Smirnov distance to the held-out cells of the class), and the
    share of marginal draws under the class law's 10th percentile."""
    law = statistics["cell_mean_by_area"]
    edges, which = law["area_edges"], size_class(law, areas)
    marginal = sample_brightness(statistics, draws, torch.Generator().manual_seed(1)).numpy()
    rows = []
    for k, (low, high) in enumerate(zip([0.0, *edges], [*edges, float("inf")])):
        cells = target[which == k]
        if len(cells) == 0:
            continue
        own = sample_brightness(statistics, draws, torch.Generator().manual_seed(1),
                                np.resize(areas[which == k], draws)).numpy()  # at these cells' own areas
        row = {"area px": f"{low:.0f}-{high:.0f}", "held-out cells": int(len(cells))}
        for name, values in (("held-out", cells), ("marginal", marginal), ("by size", own)):
            row[f"{name} q10 / median / q90"] = " / ".join(f"{v:.3f}" for v in np.quantile(values, [0.1, 0.5, 0.9]))
        row["KS marginal"] = float(ks_2samp(marginal, cells).statistic)
        row["KS by size"] = float(ks_2samp(own, cells).statistic)
        # how often the marginal law paints a cell of this size dimmer than the fitted class's dimmest tenth
        row["marginal under the class's q10"] = float((marginal < law["quantiles"][k][10]).mean())
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_dataset_arguments(parser, "gowt1")
    parser.add_argument("--cells", type=int, default=120, help="held-out cells, as texture.py's --cells")
    parser.add_argument("--out", help="default benchmarks/results/brightness_<dataset>.json")
    args = parser.parse_args()
    texture, held, reference = load_dataset(args)
    target = mean_inside(held.images, held.masks).numpy()
    sets = {"held-out cells": target,
            "reference cells (the floor's)": mean_inside(reference.images, reference.masks).numpy(),
            "fitted law (100 000 draws)": sample_brightness(texture.statistics, 100_000,
                                                            torch.Generator().manual_seed(0)).numpy(),
            "realism table's draws": drawn_brightness(texture.statistics, len(target)).numpy()}
    areas = held.masks.flatten(1).sum(1).numpy()
    law = texture.statistics.get("cell_mean_by_area")
    if law is not None:
        sets["law by size, at the held-out cells' areas"] = sample_brightness(
            texture.statistics, len(target), torch.Generator().manual_seed(0), areas).numpy()
    rows = []
    for name, values in sets.items():
        q25, q50, q75 = (float(v) for v in np.quantile(values, [0.25, 0.5, 0.75]))
        ks = ks_2samp(values, target)
        rows.append({"set": name, "cells": len(values), "q25": q25, "median": q50, "q75": q75,
                     "ks_vs_held_out": float(ks.statistic), "ks_p": float(ks.pvalue),
                     "w1_vs_held_out": float(wasserstein_distance(values, target))})
    print(f"{args.dataset}: brightness (mean inside the outline, -1..1) of {len(target)} held-out cells\n")
    print(markdown(rows, ["set", "cells", "q25", "median", "q75", "ks_vs_held_out", "ks_p", "w1_vs_held_out"]))
    classes = [] if law is None else size_classes(texture.statistics, target, areas)
    if classes:
        print("\nby size class (the bundle's area edges), 20 000 draws per law:\n")
        print(markdown(classes, list(classes[0])))
    out = Path(args.out or ROOT / "benchmarks" / "results" / f"brightness_{args.dataset}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {"dataset": args.dataset, "bundle": args.bundle, "rows": rows, "size_classes": classes}
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
