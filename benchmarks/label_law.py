"""The annotation's label law and the background's noise grain against the real frames they describe.

    .venv/bin/python benchmarks/label_law.py [--dataset hela|gowt1] [--data DIR] [--bundle DIR]

1. Label law: fitted (``synth.annotation.fit_label_law``) on the cells of
   some annotated frames, then on the whole cells of later frames the labels
   the relabel rule draws from the real image are compared with the
   annotation (IoU per cell): by the law, by the bundle's edge profile
   midpoint (the rule before), and at the best share per cell (hindsight).
   HeLa: ``02`` with ``02_ERR_SEG`` (an algorithm's segmentation), fitted on
   frames 0-7, checked on 8-10. GOWT1: ``01`` with its gold SEG (human
   outlines of some nuclei per frame), fitted on the first 20 gold frames,
   checked on the other 10; and fitted on all 30, checked on the gold frames
   of ``02``, a video the law never saw.
2. Noise grain (backgrounds measured as a level and noise, not as photons):
   the spread of Gaussian high-pass residues at 0.7, 1, 2 and 8 px over the
   4-px one (a spectrum in five numbers) of the real background (>= 15 px
   from any labelled cell, the fitting frames) and of backgrounds drawn by the
   bundle's scene with its grain and as white noise.

Writes benchmarks/results/label_law_<dataset>_cpu.json and .txt. No network: a minute or two on a CPU.
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
from bvdm_data.ctc.outlines import with_outlines
from bvdm_data.ctc.clips import to_unit
from bvdm_data.diffusion.crops import extract_cell_crops
from bvdm_data.diffusion.texture import TextureModel
from bvdm_data.robust import robust_std
from bvdm_data.scene.model import HIGHPASS_SIGMA, SceneModel, background_of, residue_lag1
from bvdm_data.synth.annotation import fit_label_law, label_agreement
from bvdm_data.synth.pipeline import edge_statistics

ROOT = Path(__file__).resolve().parent
DATA = ROOT.parent.parent / "shared" / "data"
# Per dataset: folder, bundle, the annotated sequence, its annotation, where the law is fitted and checked.
DATASETS = {
    "hela": {"data": DATA / "Fluo-N2DL-HeLa", "seq": "02", "annotation": "ERR_SEG", "fit": range(8), "check": range(8, 11),
             "other": None},
    "gowt1": {"data": DATA / "Fluo-N2DH-GOWT1", "seq": "01", "annotation": "GT", "fit": slice(0, 20),
              "check": slice(20, None), "other": "02"},
}
SCALES = (0.7, 1.0, 2.0, 4.0, 8.0)  # px, high-pass scales; the 4-px one is the scene's pixel-noise measure
FAR = 15  # px from any labelled cell: the background without the cells' glow


def spectrum(image: np.ndarray, where: np.ndarray) -> list[float]:
    """Robust spread of each high-pass residue over the 4-px one's."""
    spreads = [robust_std((image - ndimage.gaussian_filter(image, s))[where]) for s in SCALES]
    return [float(v / spreads[SCALES.index(4.0)]) for v in spreads]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=sorted(DATASETS), default="hela")
    parser.add_argument("--data", help="the CTC dataset folder (default: ../shared/data/<the dataset's>)")
    parser.add_argument("--bundle", help="default: pretrained/<dataset>")
    parser.add_argument("--out", help="default: benchmarks/results/label_law_<dataset>_cpu.json")
    args = parser.parse_args()
    spec = DATASETS[args.dataset]
    data = Path(args.data or spec["data"])
    bundle = args.bundle or str(ROOT.parent / "pretrained" / args.dataset)
    texture, scene = TextureModel.load(bundle), SceneModel.load(bundle)

    def sequence(name):
        seq = open_sequence(data, name, labels=spec["annotation"])
        # GOWT1's gold SEG outlines some nuclei per frame; the others are known by their TRA markers.
        return seq if spec["annotation"] != "GT" else with_outlines(seq, data / f"{name}_GT" / "SEG")

    def cells(seq, frames=None):
        crops = extract_cell_crops(seq, size=texture.crop_size, frames=frames, intensity=texture.intensity_range)
        return crops.images[:, 0].double().numpy(), crops.masks.numpy(), crops.empty.numpy()

    def frames_of(seq, which):
        return list(which) if isinstance(which, range) else sorted(seq.labels.paths)[which]

    def scored(agree):
        return {k: {"mean_iou": float(v.mean()), "median_iou": float(np.median(v)), "cells": int(v.size)}
                for k, v in agree.items()}

    seq = sequence(spec["seq"])
    fit_frames, check_frames = frames_of(seq, spec["fit"]), frames_of(seq, spec["check"])
    fitted, checked = cells(seq, fit_frames), cells(seq, check_frames)
    law = fit_label_law(*fitted)
    profile = edge_statistics(texture.statistics, "by_brightness")["edge_profile"]
    name = f"{spec['seq']} frames {_span(check_frames)}"
    rules = {name: scored(label_agreement(*checked, profile, law))}
    out = {"law_fit_frames": fit_frames, "law": law, "rules": rules}
    if spec["other"]:
        # The fitting and checking frames together are all the annotated ones (GOWT1: the 30 gold frames of 01).
        law_all = fit_label_law(*(np.concatenate(pair) for pair in zip(fitted, checked)))
        rules[f"{spec['other']}, all annotated frames (law fitted on all of {spec['seq']})"] = \
            scored(label_agreement(*cells(sequence(spec["other"])), profile, law_all))
        out["law_all_frames"] = law_all

    lines = [f"label law fitted on {spec['seq']} frames {_span(fit_frames)}: shares "
             f"{', '.join(f'{v:.2f}' for v in law['share'])} of the mean contrast, dim -> bright", ""]
    for where, rows in rules.items():
        lines += [f"| rule ({where}, whole cells) | mean IoU with {spec['annotation']} | median | cells |", "|---|---|---|---|"]
        lines += [f"| {k} | {v['mean_iou']:.4f} | {v['median_iou']:.4f} | {v['cells']} |" for k, v in rows.items()]
        lines += [""]
    if scene.photon_step <= 0:
        lines += _grain(seq, fit_frames + check_frames, texture, scene, out)
    text = "\n".join(lines).rstrip() + "\n"
    print(text)
    path = Path(args.out or ROOT / "results" / f"label_law_{args.dataset}_cpu.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2))
    path.with_suffix(".txt").write_text(text)


def _span(frames: list[int]) -> str:
    return f"{frames[0]}-{frames[-1]}" if frames == list(range(frames[0], frames[-1] + 1)) else \
        ", ".join(map(str, frames))


def _grain(seq, frames: list[int], texture: TextureModel, scene: SceneModel, out: dict) -> list[str]:
    """The noise grain part: lag-1 correlations and high-pass spectra, real against drawn (adds to ``out``)."""
    real, robust, plain = [], [], []
    for f in frames:
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
    spectra = {f"real background (frames {_span(frames)}, >= {FAR} px from cells)": np.mean(real, 0).tolist(), **drawn}
    out.update({"noise_sigma": list(scene.noise_sigma), "lag1": lag1, "highpass_scales_px": list(SCALES),
                "spectra": spectra})
    lines = [f"lag-1 correlation of the real background's 4-px residue, median of frames {_span(frames)}: "
             + "; ".join(f"{k} {v[0]:.2f}, {v[1]:.2f}" for k, v in lag1.items()),
             f"noise grain of the bundle's scene: {scene.noise_sigma} px (y, x)", "",
             "| background | " + " | ".join(f"{s:g} px" for s in SCALES) + " |", "|---" * (len(SCALES) + 1) + "|"]
    return lines + [f"| {k} | " + " | ".join(f"{v:.3f}" for v in row) + " |" for k, row in spectra.items()]


if __name__ == "__main__":
    main()
