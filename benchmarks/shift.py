"""How the protocol's HeLa segmenters hold up when the test frames' image formation shifts.

    .venv/bin/python benchmarks/shift.py runs/downstream_parts/<run> [<run> ...] [--out ...]

Another recording of the same cells differs from the training one in ways a per-sequence percentile
normalisation does not remove: how bright nuclei read against the frame's top percentile (GOWT1's two
recordings: 2.7x, ``results/contrast_by_sequence_cpu.txt``), focus, noise and magnification. The project holds
no raw frames of HeLa's other sequence, so this asks a narrower question on the frames it has: does training
with the clips make a segmenter more or less sensitive to each such change than training on real frames alone?

It takes the segmenters that ``downstream.py`` kept for one or more runs (each arm and seed: ``<arm>_seed<k>.json`` with
its ``<arm>_seed<k>.<hash>.ckpt``), and scores each on HeLa ``02`` frames 11-13 (the protocol's test, against
``02_ERR_SEG``) as they are and under one change at a time, in the 0..1 units the segmenters read:

  contrast G   light above the frame's median (the background) times G, clipped to 0..1 as inputs are
  blur S       a Gaussian blur of S px (defocus)
  noise K      Gaussian noise added until the background's noise is K times its own (measured per frame:
               1.4826 x the MAD of the background pixels' difference from their 3x3 median; this reads white
               Gaussian noise at 0.86 of its sigma, so on such noise K = 2 and 4 make 1.8 and 3.5 times it;
               bvdm_data.photometric.crop_noise divides the 0.86 out)
  scale F      frames and labels resized by F (nuclei F times as wide; labels by nearest neighbour)

Writes a row per net and change (SEG, DET with its error counts, the outline offset and matched IoU of
``boundary_offset``) and a table of each arm's mean over its seeds with its difference from ``--reference``'s
(default the real arm), to benchmarks/results/shift_hela_cpu.json and .txt (or ``--out``). CPU, about 5 s per
net and change.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from bvdm_data import CTCClips
from bvdm_data.evaluate.downstream import (SCORING_ONLY, ProtocolConfig, boundary_offset, load_segmenter,
                                          per_frame_clip, score_on_clip, segment)
from bvdm_data.robust import robust_std

ROOT = Path(__file__).resolve().parents[1]
TEST = range(11, 14)  # as downstream.py's HeLa protocol
SHIFTS = (("none", 0.0), ("contrast", 0.5), ("contrast", 0.7), ("contrast", 1.4), ("contrast", 2.0),
          ("blur", 1.0), ("blur", 2.0), ("noise", 2.0), ("noise", 4.0), ("scale", 0.8), ("scale", 1.25))


def background_noise(frame: np.ndarray, masks: np.ndarray) -> float:
    """The noise of a frame's background: the robust spread (MAD) of (pixel - its 3x3 median) off every cell."""
    return robust_std((frame - ndimage.median_filter(frame, size=3))[masks == 0])


def shifted(video: torch.Tensor, masks: torch.Tensor, kind: str, value: float, seed: int = 0
            ) -> tuple[torch.Tensor, np.ndarray]:
    """``video`` ``[T, 1, H, W]`` in 0..1 and its labels ``[T, H, W]`` under one change of image formation."""
    v, m = video.clone(), masks.numpy()
    if kind == "contrast":
        background = v.flatten(1).median(1).values.view(-1, 1, 1, 1)
        v = (background + value * (v - background)).clamp(0, 1)
    elif kind == "blur":
        v = torch.from_numpy(ndimage.gaussian_filter(v.numpy(), sigma=(0, 0, value, value)))
    elif kind == "noise":
        gen = torch.Generator().manual_seed(seed)
        for t in range(len(v)):
            sigma = background_noise(v[t, 0].numpy(), m[t]) * (value ** 2 - 1) ** 0.5
            v[t] = (v[t] + sigma * torch.randn(v[t].shape, generator=gen)).clamp(0, 1)
    elif kind == "scale":
        size = [round(s * value) for s in v.shape[-2:]]
        v = F.interpolate(v, size=size, mode="bilinear", align_corners=False, antialias=value < 1).clamp(0, 1)
        m = F.interpolate(masks[:, None].float(), size=size, mode="nearest")[:, 0].long().numpy()
    elif kind != "none":
        raise ValueError(f"unknown shift {kind!r}")
    return v, m


def nets(parts: Path) -> list[tuple[str, int, Path]]:
    """(arm, seed, checkpoint) for every finished part of a downstream.py run.

    The checkpoint is the one named by the part's training settings, as downstream.py names it; parts that only
    scored a kept net again (``_min_areaN``) are skipped, so that each net comes once.
    """
    found = []
    for part in sorted(parts.glob("*_seed*.json")):
        if "_min_area" in part.stem:
            continue
        settings = json.loads(part.read_text())["settings"]
        trained = {k: v for k, v in settings.items() if k not in SCORING_ONLY}
        digest = hashlib.sha256(json.dumps(trained, sort_keys=True).encode()).hexdigest()[:12]
        ckpt = parts / f"{part.stem}.{digest}.ckpt"
        if ckpt.is_file():  # nets trained with --augment keep their arm's code and are told apart here
            found.append((settings["arm"] + (", augmented" if settings.get("augment") else ""), int(settings["seed"]),
                          ckpt))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("parts", nargs="+", help="downstream.py runs' folders under runs/downstream_parts/")
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "Fluo-N2DL-HeLa"))
    parser.add_argument("--reference", default="(a) real", help="the arm the others are compared with (nets "
                        "trained with --augment: '(a) real, augmented')")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "shift_hela_cpu.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    found = [net for parts in args.parts for net in nets(Path(parts))]
    if not found:
        raise SystemExit(f"{' '.join(args.parts)}: no finished part with its checkpoint")
    test = CTCClips(args.data, ["02"], labels="ERR_SEG", clip_len=len(TEST), per_frame_ids=True, frames=TEST)[0]
    tests = {}
    for kind, value in SHIFTS:
        video, masks = shifted(test["video"], test["masks"], kind, value)
        tests[(kind, value)] = per_frame_clip(video, masks, {"source": "ctc", "shift": kind, "value": value})
    rows = []
    for arm, seed, ckpt in found:
        net = load_segmenter(ckpt)
        for (kind, value), clip in tests.items():
            predicted = segment(net, clip["video"], ProtocolConfig.min_area)
            scores = score_on_clip(predicted, clip, ("SEG", "DET"), errors=True)
            scores.update(boundary_offset(predicted, clip["masks"].numpy()))
            rows.append({"arm": arm, "seed": seed, "shift": kind, "value": value, **scores, "checkpoint": str(ckpt)})
            print(f"{arm} seed {seed}, {kind} {value:g}: SEG {scores['SEG']:.3f} DET {scores['DET']:.3f} outline "
                  f"{scores['offset_px']:+.2f} px", flush=True)
    arms = list(dict.fromkeys(r["arm"] for r in rows))
    by_net = {}  # (arm, shift, value) -> its seeds' rows
    for r in rows:
        by_net.setdefault((r["arm"], r["shift"], r["value"]), []).append(r)
    mean = {key: float(np.mean([r["SEG"] for r in group])) for key, group in by_net.items()}
    offset = {key: float(np.mean([r["offset_px"] for r in group])) for key, group in by_net.items()}
    reference = args.reference if args.reference in arms else arms[0]
    lines = ["SEG (outline offset, + = outside), mean over seeds, on 02 frames 11-13 under one change; "
             f"[d] = difference from {reference}, [drop] = change from the arm's own unshifted score",
             f"{'shift':14s} " + " ".join(f"{a[:36]:>36s}" for a in arms)]
    for k, v in SHIFTS:
        cells = []
        for a in arms:
            s, o = mean[(a, k, v)], offset[(a, k, v)]
            drop = s - mean[(a, "none", 0.0)]
            diff = "" if a == reference else f" [d {s - mean[(reference, k, v)]:+.3f}]"
            cells.append(f"{s:.3f} ({o:+.2f} px) [drop {drop:+.3f}]{diff}")
        lines.append(f"{k + ' ' + format(v, 'g'):14s} " + " ".join(f"{c:>36s}" for c in cells))
    seeds = {a: sorted({r['seed'] for r in rows if r['arm'] == a}) for a in arms}
    lines.append("seeds: " + "; ".join(f"{a}: {s}" for a, s in seeds.items()))
    text = "\n".join(lines)
    print(text)
    out = Path(args.out)
    out.write_text(json.dumps({"test": "HeLa 02 frames 11-13 vs 02_ERR_SEG, one change of image formation at a time",
                               "parts": args.parts, "shifts": [list(s) for s in SHIFTS], "rows": rows}, indent=1))
    out.with_suffix(".txt").write_text(text + "\n")


if __name__ == "__main__":
    main()
