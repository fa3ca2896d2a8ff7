"""The annotation's label law and the background's noise grain against the real HeLa frames they describe.

    .venv/bin/python benchmarks/label_law.py [--data ../shared/data/Fluo-N2DL-HeLa] [--bundle pretrained/hela]

1. Label law: fitted (``synth.annotation.fit_label_law``) on the cells of
   ``02`` frames 0-7 with ``02_ERR_SEG``, then on the whole cells of frames
   8-10 the labels the relabel rule draws from the real image are compared
   with ``ERR_SEG`` (IoU per cell): by the law, by the bundle's edge profile
   midpoint (the rule before), and at the best share per cell (hindsight).
2. Noise grain: the spread of Gaussian high-pass residues at 0.7, 1, 2 and
   8 px over the 4-px one (a spectrum in five numbers) of the real background
   (>= 15 px from any labelled cell, frames 0-10) and of backgrounds drawn by
   the bundle's scene with its grain and as white noise.

Writes benchmarks/results/label_law_hela_cpu.json and .txt. No network: a minute on a CPU.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from bvdm_data.ctc import open_sequence
from bvdm_data.ctc.clips import to_unit
from bvdm_data.diffusion.crops import extract_cell_crops
from bvdm_data.diffusion.texture import TextureModel
from bvdm_data.robust import robust_std
from bvdm_data.scene.model import HIGHPASS_SIGMA, SceneModel, background_of, residue_lag1
from bvdm_data.synth.annotation import fit_label_law, label_agreement
from bvdm_data.synth.pipeline import edge_statistics

ROOT = Path(__file__).resolve().parent
SCALES = (0.7, 1.0, 2.0, 4.0, 8.0)  # px, high-pass scales; the 4-px one is the scene's pixel-noise measure
FAR = 15  # px from any labelled cell: the background without the cells' glow


def spectrum(image: np.ndarray, where: np.ndarray) -> list[float]:
    """Robust spread of each high-pass residue over the 4-px one's."""
    spreads = [robust_std((image - ndimage.gaussian_filter(image, s))[where]) for s in SCALES]
    return [float(v / spreads[SCALES.index(4.0)]) for v in spreads]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(ROOT.parent.parent / "shared" / "data" / "Fluo-N2DL-HeLa"))
    parser.add_argument("--bundle", default=str(ROOT.parent / "pretrained" / "hela"))
    parser.add_argument("--out", default=str(ROOT / "results" / "label_law_hela_cpu.json"))
    args = parser.parse_args()
    texture, scene = TextureModel.load(args.bundle), SceneModel.load(args.bundle)
    seq = open_sequence(args.data, "02", labels="ERR_SEG")

    def cells(frames):
        crops = extract_cell_crops(seq, size=texture.crop_size, frames=frames, intensity=texture.intensity_range)
        return crops.images[:, 0].double().numpy(), crops.masks.numpy(), crops.empty.numpy()

    law = fit_label_law(*cells(list(range(8))))
    profile = edge_statistics(texture.statistics, "by_brightness")["edge_profile"]
    agree = label_agreement(*cells([8, 9, 10]), profile, law)
    rules = {k: {"mean_iou": float(v.mean()), "median_iou": float(np.median(v)), "cells": int(v.size)}
             for k, v in agree.items()}

    real, robust, plain = [], [], []
    for f in range(11):
        x = to_unit(seq.images.read(f), texture.intensity_range, np.float64) * 2 - 1
        labels = seq.labels.read(f)
        far = ~ndimage.binary_dilation(labels > 0, iterations=FAR)
        real.append(spectrum(x, far))
        # The lag-1 correlations the scene fit reads (robust) and what a plain correlation reads, same pixels.
        residue, where = x - ndimage.gaussian_filter(x, HIGHPASS_SIGMA), background_of(labels)
        robust.append(residue_lag1(residue, where))
        plain.append([np.corrcoef(a[m], b[m])[0, 1] for a, b, m in
                      ((residue[1:], residue[:-1], where[1:] & where[:-1]),
                       (residue[:, 1:], residue[:, :-1], where[:, 1:] & where[:, :-1]))])
    lag1 = {"robust (vertical, horizontal)": np.median(robust, 0).tolist(),
            "plain (vertical, horizontal)": np.median(plain, 0).tolist()}
    drawn = {}
    for name, model in (("drawn, measured grain", scene), ("drawn, white", dataclasses.replace(scene, noise_sigma=(0.0, 0.0)))):
        frame = model.background(1, (512, 512), key=0, device=torch.device("cpu"))[0, 0].double().numpy()
        inner = np.zeros(frame.shape, bool)
        inner[24:-24, 24:-24] = True
        drawn[name] = spectrum(frame, inner)
    spectra = {"real background (frames 0-10, >= 15 px from cells)": np.mean(real, 0).tolist(), **drawn}

    lines = [f"label law fitted on 02 frames 0-7: shares {', '.join(f'{v:.2f}' for v in law['share'])} of the mean "
             "contrast, dim -> bright", "",
             "| rule (02 frames 8-10, whole cells) | mean IoU with ERR_SEG | median | cells |", "|---|---|---|---|"]
    lines += [f"| {k} | {v['mean_iou']:.4f} | {v['median_iou']:.4f} | {v['cells']} |" for k, v in rules.items()]
    lines += ["", "lag-1 correlation of the real background's 4-px residue, median of frames 0-10: "
              + "; ".join(f"{k} {v[0]:.2f}, {v[1]:.2f}" for k, v in lag1.items()),
              f"noise grain of the bundle's scene: {scene.noise_sigma} px (y, x)", "",
              "| background | " + " | ".join(f"{s:g} px" for s in SCALES) + " |", "|---" * (len(SCALES) + 1) + "|"]
    lines += [f"| {k} | " + " | ".join(f"{v:.3f}" for v in row) + " |" for k, row in spectra.items()]
    text = "\n".join(lines)
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"law_frames_0_7": law, "rules": rules, "noise_sigma": list(scene.noise_sigma), "lag1": lag1,
                               "highpass_scales_px": list(SCALES), "spectra": spectra}, indent=2))
    out.with_suffix(".txt").write_text(text + "\n")


if __name__ == "__main__":
    main()
