"""Train on synthetic, test on real (the paper's Table 1, at CPU size), with an ablation of what surrounds texture.

    .venv/bin/python benchmarks/downstream.py [--dataset hela|gowt1] [--steps 1500] [--seeds 0 1 2] [--quick]

One small U-Net segmenter (background / interior / boundary, instances by
seeded growth) plus an overlap tracker, trained with the same budget (steps,
batch, crop, seed) on each source, then scored with py-ctcmetrics on real
frames that no model of the bundle saw:

  (a) real:          sequence 02 frames 0-10 with 02_ERR_SEG (CTCClips, frames=range(0, 11))
  (a1) real, 1 frame: frame 0 only (scarce labels)
  (b) BVDM:          clips of the bundle (an LMDB cache), every measured law on
  (c) flat:          the same masks with flat textures (`--texture flat`)
  (d) real + BVDM:   half of every batch from (a), half from (b); (d1) the same with (a1)
  (dq, dm):          `--arms dq` / `--arms dm` only: (d) with a quarter / three quarters of every batch from (b)
  (df, d1f):         `--arms df` / `--arms d1f` only: (d) / (d1) with (b)'s share of each batch falling
                     linearly from half at the first step to none at the last (`FramePool(fade=True)`):
                     synthetic crops first, real ones last
  (b-, d-, d1-):     `--labels-ablation`: (b), (d), (d1) labelled with the simulated masks
                     (`--labels masks`) instead of labels redrawn from the painted cells (the default)
  (b*, d*, d1*):     `--calibrate-edge`: (b), (d), (d1) repainted with the painted edge moved by the
                     outline offset that (b)'s segmenter shows on the real training frames
  (bg, dg, d1g):     `--glow-ablation`: (b), (d), (d1) with the cells' measured out-of-focus glow (`--glow`)
  (bz, dz, d1z):     `--brightness-ablation`: (b), (d), (d1) with each new cell's brightness drawn from the law of
                     real cells of its size (`--brightness by_area`) instead of the marginal law
  (bk, dk, d1k):     `--contrast-ablation`: (b), (d), (d1) with each clip's light above the background scaled by a
                     gain drawn log-uniformly from 0.5..2 (`--contrast 0.5 2`, domain randomisation)
  (bu, du, d1u):     `--unlabelled-ablation`: (b), (d), (d1) with the nuclei the annotation leaves out painted,
                     unlabelled (`--unlabelled`)
  (bv, dv, d1v):     `--overlap-ablation`: (b), (d), (d1) with the paintings of cells that meet averaged
                     (`--overlap average`, the rule before 2026-11-27: a dark seam between touching cells) instead
                     of their light added
  (bs, ds, d1s):     `--seam-ablation`: (b), (d), (d1) with touching cells painted as free cells whose light
                     adds (`--pressed 0`, the rule until 2026-11-27: a seam where they meet) instead of pressed
                     against each other (arms bp, dp, d1p of the result files until 2026-11-27: `--pressed 1`)
  (bo, do, d1o):     `--outline-ablation`: (b), (d), (d1) with the loss blind to a 1-px band on both sides of
                     every BVDM cell's edge on the background (`FramePool(outline_ignore=1)`): the same clips,
                     teaching where cells are and where they part, not where the annotation draws an outline
  (br, dr, d1r):     `--formation-ablation`: (b), (d), (d1) with every clip shown as the fitted recording would
                     show it (`--formation none`, the rule until 2026-11-28; arms br, dr, d1r of the result files
                     until then were the opposite: the image formation drawn per clip where the default was none)
  (bx, dx, d1x):     `--magnification-ablation`: (b), (d), (d1) with each clip's cells shown at a magnification
                     drawn per clip from 0.8..1.25 (`--magnification 0.8 1.25`; labels resampled with the frames)
  (bi, di, d1i):     `--formation-per-crop`: (b), (d), (d1) on the clips of `--formation none` with every BVDM
                     crop's contrast, blur and noise drawn anew (`FramePool(photometric=...)`, as `--augment` draws
                     them), the real crops left as they are: what an endless stream teaches, where a cache of a few
                     clips holds a few draws

The BVDM and flat clips draw each clip's image formation as the library does by default (`--formation`:
contrast, blur and noise from bvdm_data.Photometric's ranges, one draw per clip); `--formation-changes` names the
changes drawn, per clip and, for the per-crop arms, per crop (default all three).

`--augment` varies every training crop's contrast, blur and noise (`bvdm_data.photometric`, each change
with probability 0.5), the real and the synthetic ones alike, as a trainer would; the arms keep their codes and the
runs their own parts (name them with `--out`).

`--ablation` adds BVDM arms that switch the measured laws on one at a time
from a baseline without them (`--base-bundle`: the mask model fitted on
01_RES alone, a 1-px blurred edge, every painted cell labelled, the simulated masks as labels): shapes and
sizes from 02_ERR_SEG (`--bundle`'s mask part), the edge profile, and the
unlabelled nuclei (`--unlabelled`, off in the default arms). Test: sequence 02 frames 11-13 with 02_ERR_SEG as
reference (a CTC segmentation result, not a human annotation); SEG and DET, and the
outline offset (`boundary_offset`, px, + = drawn too generously) on the test frames and on the real
training frames (`calibration_offset_px`: real frames a synthetic arm never saw, where an annotation
convention can be calibrated without touching the test).
It also prints the frame statistics (`bvdm_data.evaluate.frames`) of the
real training frames next to each synthetic source (`--statistics-only`: that
table alone, nothing trained; `--no-statistics`: training alone).

`--dataset gowt1` runs the paper's protocol on the one real pair with
lineage: the real arms train on GOWT1 sequence 01 (its 30 frames with gold
SEG; nuclei without an outline, known by their TRA marker, are left out of the loss), the
synthetic arms on the `gowt1` bundle (fitted on 01), and every arm is scored
on the whole of sequence 02: SEG on its 20 gold SEG frames, DET and TRA
(segmenter + `track_by_overlap`) against its gold TRA.

Synthetic cell density: `--density match` (default) makes the clips as covered
by cells as the real training frames (share of pixels in a marked cell;
`bvdm_data.masks.coverage.density_for_coverage` finds the first-frame density
by simulating masks at the clips' size). Until the night of 2026-11-26 it asked
for the real frames' cells per px^2 in the first frame, which gave HeLa clips
17 % more covered area than the real frames (`frame statistics`, density).
`--density fitted` uses the bundle's own; a number is a first-frame density. Caches are
made first if missing (`bvdm-data cache` on --device). `--workers N` trains
the seeds in N processes (on a GPU, where one process leaves it idle).
Writes benchmarks/results/downstream.json and .png (or --out).

Every (arm, seed) run is also kept under runs/downstream_parts/<out name>/
with the settings it ran with; `--resume` reuses the runs whose settings
(bundle files included) match, so a long CPU run stopped part-way goes on
where it stopped; a segmenter stopped mid-training resumes from its last
checkpoint there (every 100 steps), and the trained nets are kept there.
Synthetic caches are named after the bundle's files: a refitted bundle never
reuses clips of the old one.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import signal
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from bvdm_data import CTCClips, LMDBClips
from bvdm_data.bundle import Bundle, resolve_bundle
from bvdm_data.cli import main as cli
from bvdm_data.diffusion.sample import DEFAULT_SAMPLER, resolve_stride
from bvdm_data.evaluate.downstream import (SCORING_ONLY, FramePool, ProtocolConfig, RealSequence, per_frame_clip,
                                           run_protocol)
from bvdm_data.evaluate.ctc import ERRORS
from bvdm_data.evaluate.frames import compare_frames, frame_statistics
from bvdm_data.evaluate.realism import markdown
from bvdm_data.masks.coverage import density_for_coverage
from bvdm_data.masks.model import MaskModel
from bvdm_data.photometric import CHANGES, Photometric
from bvdm_data.synth import SynthesisSettings

ROOT = Path(__file__).resolve().parents[1]
BY_NAME_ONLY = ("dq", "dm", "df", "d1f")  # the share experiments: run only when --arms names them
TRAIN, TEST = range(0, 11), range(11, 14)
STATISTICS_FRAMES = 48  # synthetic frames measured per source (about 10x the real frames' area)
OUTLINE_IGNORE = 1  # px each side of a cell's edge on the background that --outline-ablation's arms do not teach
# One change to the default BVDM clips: the arms' code letter, what the clips then do, the flags, the arms' label.
LAW_ABLATIONS = {"glow": ("g", "carry the cells' out-of-focus glow measured on the real frames", ("--glow",),
                          " + glow"),
                 "brightness": ("z", "draw each new cell's brightness from the law of real cells of its size",
                                ("--brightness", "by_area"), ", brightness by size"),
                 "contrast": ("k", "show their light above the background at a gain drawn per clip from 0.5..2 "
                              "(domain randomisation)", ("--contrast", "0.5", "2"), ", contrast varied"),
                 "unlabelled": ("u", "also show, unlabelled, the nuclei the real annotation leaves out",
                                ("--unlabelled",), " + unlabelled"),
                 "overlap": ("v", "average the paintings of cells where they meet (the rule before 2026-11-27: a dark "
                             "seam) instead of adding their light", ("--overlap", "average"), ", paintings averaged"),
                 "seam": ("s", "paint touching cells as free cells whose light adds (the rule until 2026-11-27: "
                          "a seam where they meet) instead of pressed against each other", ("--pressed", "0"),
                          ", touching pairs with a seam"),
                 "formation": ("r", "show every clip as the fitted recording would, no image formation drawn (the "
                               "rule until 2026-11-28)", ("--formation", "none"), ", no formation drawn"),
                 "magnification": ("x", "show each clip's cells at a magnification drawn per clip from 0.8..1.25 "
                                   "(another objective: cells and labels larger or smaller)",
                                   ("--magnification", "0.8", "1.25"), ", magnification varied")}


CACHE_SEED = 11  # the synthetic caches' seed unless --cache-seed says otherwise


def bundle_fingerprint(bundle: str) -> str:
    """8 hex digits that change whenever any file of the bundle does (from the manifest's file hashes)."""
    manifest = json.loads((resolve_bundle(bundle) / "manifest.json").read_text())
    files = sorted((k, v) for part in manifest["parts"].values() for k, v in part.get("files", {}).items())
    return hashlib.sha256(json.dumps(files).encode()).hexdigest()[:8]


def named_defaults(args: argparse.Namespace) -> tuple[tuple[str, ...], ...]:
    """Settings whose default changed after caches were first named without them, as (flag, value, ...): a cache
    name always carries them (in this order), so that one painted with the new default is never taken for one
    painted before it (the image formation drawn: none until 2026-11-28, then the changes ``--formation-changes``
    names)."""
    return (("--pressed", f"{SynthesisSettings.pressed:g}"), ("--overlap", SynthesisSettings.overlap),
            ("--formation", *(c for c in CHANGES if c in args.formation_changes)))


def cache(path: str | None, texture: str, density: float | None, args: argparse.Namespace, bundle: str | None = None,
          flags: tuple[str, ...] = ()) -> LMDBClips:
    """The given cache, or one made for these settings and this version of the bundle under runs/ (once; a
    partial one left by a stop is completed)."""
    bundle = bundle or args.bundle
    made_here = path is None
    for flag, *values in named_defaults(args):  # named in full: older caches held another value
        if flag not in flags:
            flags = (*flags, flag, *values)
    if made_here:
        tag = "fitted" if density is None else f"{density:.2e}"
        name = "".join(c if c.isalnum() else "-" for c in Path(bundle).name + "".join(flags))
        size = "" if args.size == 256 else f"_{args.size}px"  # 256 px unnamed: the caches made before it was named
        seed = "" if args.cache_seed == CACHE_SEED else f"_seed{args.cache_seed}"  # likewise
        path = ROOT / "runs" / (f"downstream_{name}-{bundle_fingerprint(bundle)}_{texture}_{tag}_{args.sampler}"
                                f"{args.stride}_{args.clips}x{args.frames}{size}{seed}.lmdb")
    else:  # resolved, so that a resumed run reuses parts whether the path was given relative or not
        path = str(Path(path).resolve())
    # Made here: the cache verb runs every time. It completes a cache cut short by a stop, returns at once on a
    # whole one, and refuses one painted with other settings (a default changed since it was named), so that no
    # run trains on clips it did not ask for. A given cache is taken as it is.
    if made_here or not Path(path).exists():
        code = cli(["cache", "--bundle", bundle, "--out", str(path), "--clips", str(args.clips), "--frames",
                    str(args.frames), "--size", str(args.size), str(args.size), "--seed", str(args.cache_seed),
                    "--texture", texture, "--sampler", args.sampler, "--stride", str(args.stride), "--device",
                    args.device, "--gen-batch", str(args.gen_batch), *flags,
                    *([] if density is None else ["--density", str(density)])])
        if code:
            raise SystemExit(f"bvdm-data cache {path} failed (exit {code}); the reason is printed above")
    return LMDBClips(path)


def labelled_density(pool: FramePool) -> float:
    """Cells per px^2 over the frames of a pool."""
    cells = sum(int((torch.unique(m) > 0).sum()) for m in pool.masks)
    return cells / sum(m.numel() for m in pool.masks)


def labelled_coverage(pool: FramePool) -> float:
    """Share of the pool's pixels inside a marked cell (ignored cells included: they are cells)."""
    return sum(int((m != 0).sum()) for m in pool.masks) / sum(m.numel() for m in pool.masks)


def matched_density(bundle: str, size: int, frames: int, coverage: float) -> float:
    """The first-frame density at which the bundle's size^2 clips are as covered by cells as the real frames."""
    loaded = Bundle.load(bundle)  # once: loading verifies every file's hash
    crop = loaded.read_json("texture", "texture.json")["crop_size"]
    return density_for_coverage(MaskModel.load(loaded), (size, size), coverage, margin=crop // 2, frames=frames)


def plot(rows: list[dict], path: Path, test: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [m for m in ("SEG", "DET", "TRA") if m in rows[0]]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(rows)), 3.6))
    width = 0.8 / len(metrics)
    for i, m in enumerate(metrics):
        xs = [k + i * width for k in range(len(rows))]
        bars = ax.bar(xs, [r[m] for r in rows], width, label=m)
        ax.bar_label(bars, fmt="%.3f", fontsize=7)
    ax.set_xticks([k + width * (len(metrics) - 1) / 2 for k in range(len(rows))], [r["arm"] for r in rows],
                  rotation=30, ha="right", fontsize=7)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("score on real frames")
    ax.set_title(test, fontsize=8)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def _run_one(name: str, pools: list, test, config: ProtocolConfig, calibration, metrics: tuple[str, ...],
             part: Path | None, settings: dict, resume: bool) -> dict:
    """One arm at one seed: trained and scored, or read back from ``part`` when it ran with these ``settings``."""
    # Settings that only change the scoring (min_area) name the part but not the net: a net kept by a run with
    # another min_area is scored again, not trained again.
    scoring = {k: settings[k] for k in SCORING_ONLY if k in settings}
    trained = {k: v for k, v in settings.items() if k not in scoring}
    digest = hashlib.sha256(json.dumps(trained, sort_keys=True).encode()).hexdigest()[:12]
    ckpt = None if part is None else part.with_name(f"{part.stem}.{digest}.ckpt")
    if part is not None and scoring:
        part = part.with_name(part.stem + "".join(f"_{k}{v}" for k, v in scoring.items()) + part.suffix)
    if part is not None and resume and part.exists():
        kept = json.loads(part.read_text())
        if kept.get("settings") == settings:
            print(f"{name}, seed {config.seed}: reused {part}")
            return kept["row"]
    # The segmenter checkpoints beside its part, named by the settings: a stop mid-training loses at most
    # 100 steps, and a checkpoint of other settings is never picked up. The finished net stays there (about
    # 1 MB), so that it can be looked at or scored again without training it again.
    if ckpt is not None and not resume:
        ckpt.unlink(missing_ok=True)
    row = run_protocol({name: pools}, test, config, metrics, calibration=calibration,
                       checkpoints=None if ckpt is None else {name: ckpt})[0]
    if part is not None:
        part.parent.mkdir(parents=True, exist_ok=True)
        part.write_text(json.dumps({"settings": settings, "row": row}, indent=1) + "\n")
    return row


def train_arms(arms: dict, test, calibration, configs: list[ProtocolConfig], workers: int,
               metrics: tuple[str, ...] = ("SEG", "DET"), parts: Path | None = None,
               settings: dict[str, dict] | None = None, resume: bool = False, threads: int = 2) -> list[dict]:
    """One row per arm: scores and outline offsets averaged over the seeds of ``configs``.

    Each (arm, seed) is one job (``workers`` processes of ``threads`` threads share them); with ``parts`` each
    finished job is written there with ``settings[arm]`` (what its result depends on), and ``resume`` reuses
    those that match.
    """
    def part(name: str, seed: int) -> Path | None:
        slug = "".join(c if c.isalnum() else "_" for c in name).strip("_")
        return None if parts is None else parts / f"{slug}_seed{seed}.json"

    jobs = [(name, pools, test, c, calibration, metrics, part(name, c.seed),
             {**(settings or {}).get(name, {}), "arm": name, "seed": c.seed, "steps": c.steps, "batch_size": c.batch_size,
              "crop": c.crop, **({"width": c.width} if c.width != ProtocolConfig.width else {}),
              **({"min_area": c.min_area} if c.min_area != ProtocolConfig.min_area else {}),
              **({"augment": True} if c.augment else {})}, resume)
            for c in configs for name, pools in arms.items()]
    if workers > 1:
        # SIGTERM (kill, a scheduler's stop) becomes SystemExit here, so leaving the ``with`` terminates the
        # workers; by default they outlived the parent and went on writing checkpoints into ``parts``.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
        with torch.multiprocessing.get_context("spawn").Pool(workers, torch.set_num_threads, (threads,)) as pool:
            done = pool.starmap(_run_one, jobs)
    else:
        done = [_run_one(*job) for job in jobs]
    rows = []
    for k, name in enumerate(arms):
        per_seed = done[k::len(arms)]
        errors = [e for e in ERRORS if all(e in r for r in per_seed)]  # runs scored before 2026-11-26 lack them
        means = (*metrics, *errors, "offset_px", "matched_iou", "calibration_offset_px")
        rows.append({"arm": name, **{m: sum(r[m] for r in per_seed) / len(per_seed) for m in means},
                     **({"SEG_min": min(r["SEG"] for r in per_seed), "SEG_max": max(r["SEG"] for r in per_seed)}
                        if len(per_seed) > 1 else {}),
                     "SEG_per_seed": [round(r["SEG"], 4) for r in per_seed],
                     "train_s": sum(r["train_s"] for r in per_seed) / len(per_seed), "frames": per_seed[0]["frames"]})
    return rows


def hela_data(args: argparse.Namespace) -> tuple[list, object, dict, dict]:
    """HeLa: train on 02 frames 0-10, test on 02 frames 11-13, both with ERR_SEG (a segmentation, no lineage)."""
    real = CTCClips(args.data, ["02"], labels="ERR_SEG", clip_len=1, per_frame_ids=True, frames=TRAIN)
    test = CTCClips(args.data, ["02"], labels="ERR_SEG", clip_len=len(TEST), per_frame_ids=True, frames=TEST)[0]
    video = CTCClips(args.data, ["02"], labels="ERR_SEG", clip_len=len(TRAIN), per_frame_ids=True, frames=TRAIN)[0]
    protocol = {"test": "02 frames 11-13 vs ERR_SEG", "train_real": "02 frames 0-10 with ERR_SEG",
                "train_real_scarce": "02 frame 0", "metrics": ("SEG", "DET")}
    return [real[i] for i in range(len(real))], test, video, protocol


def gowt1_data(args: argparse.Namespace) -> tuple[list, object, dict, dict]:
    """GOWT1: train on sequence 01, test on the whole of sequence 02 against its gold SEG and TRA.

    The real arm learns from the 30 frames of 01 with gold SEG. SEG outlines ~5 of ~25 nuclei per frame; the
    others are known only by their TRA markers, so their pixels, grown by the 90th-percentile rim
    (`ctc.outlines.OutlinedLabels`), are left out of the loss (`IGNORE`) rather than called background or
    labelled with a convention of ours (grown markers as labels drew nuclei 6 px too wide on 02). The synthetic
    density matches every marked cell of those frames. The calibration frames keep the gold outlines only.
    """
    from bvdm_data.ctc import open_sequence
    from bvdm_data.ctc.clips import intensity_range, to_unit
    from bvdm_data.ctc.outlines import OutlinedLabels
    from bvdm_data.evaluate.downstream import IGNORE

    root = Path(args.data)
    seq = open_sequence(root, "01", labels="GT")
    labels = OutlinedLabels(root / "01_GT" / "SEG", root / "01_GT" / "TRA")
    lo_hi = intensity_range(seq, (1.0, 99.9))  # as CTCClips normalises a sequence
    clips, outlines, cells, pixels = [], [], 0, 0
    for f in labels.frames:
        video = torch.from_numpy(to_unit(seq.images.read(f)[None].astype(np.float32), lo_hi)[:, None])
        frame = labels.read(f)
        n = labels.last_outlined(f)
        cells, pixels = cells + int(frame.max()), pixels + frame.size
        clips.append({"video": video, "masks": torch.from_numpy(np.where(frame > n, IGNORE, frame)[None])})
        outlines.append((video, np.where(frame > n, 0, frame)))
    video = torch.cat([v for v, _ in outlines])
    calibration = per_frame_clip(video, np.stack([m for _, m in outlines]), {"source": "ctc", "sequence": "01"})
    test = RealSequence.load(root, "02")
    protocol = {"test": f"02, all {len(test.video)} frames: SEG on its {len(test.seg_index)} gold SEG frames, DET and "
                        "TRA on the gold TRA (tracker: track_by_overlap)",
                "train_real": f"01, the {len(clips)} frames with gold SEG, trained on the outlined nuclei; nuclei "
                              f"without an outline (their TRA marker grown by {labels.rim_px:.1f} px) are ignored "
                              "by the loss",
                "train_real_scarce": f"01 frame {labels.frames[0]}", "metrics": ("SEG", "DET", "TRA"),
                "density": cells / pixels}
    return clips, test, calibration, protocol


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="hela", choices=["hela", "gowt1"], help="hela: train and test on "
                        "HeLa 02 (ERR_SEG); gowt1: train on GOWT1 01, test on 02 with SEG and TRA (default hela)")
    parser.add_argument("--data", help="the dataset's CTC folder (default ../shared/data/Fluo-N2DL-HeLa or "
                        "Fluo-N2DH-GOWT1)")
    parser.add_argument("--bundle", help="bundle for the synthetic arms (default: the dataset's name)")
    parser.add_argument("--base-bundle", help="bundle whose mask model is the ablation baseline (fitted on tracks only)")
    parser.add_argument("--ablation", action="store_true", help="add the one-change-at-a-time BVDM arms")
    parser.add_argument("--texture-ablation", action="store_true", help="add a BVDM arm that keeps only the "
                        "DDPM's fine texture on the measured envelope (--texture detail)")
    parser.add_argument("--synthetic-only", action="store_true", help="train only the synthetic arms (b), (c) and "
                        "the ablations (a CPU-sized run)")
    parser.add_argument("--edge-ablation", action="store_true", help="add a BVDM arm with one mean edge profile "
                        "instead of profiles by brightness")
    parser.add_argument("--calibrate-edge", action="store_true", help="then repaint BVDM with the painted edge moved "
                        "by the outline offset its segmenter shows on the real training frames, and train again")
    parser.add_argument("--labels-ablation", action="store_true", help="add arms whose BVDM labels are the "
                        "simulated masks (--labels masks) instead of labels redrawn from the painting")
    parser.add_argument("--outline-ablation", action="store_true", help="add arms trained on the same BVDM clips "
                        f"with the loss blind to a {OUTLINE_IGNORE}-px band on both sides of each cell's edge on the "
                        "background")
    parser.add_argument("--formation-per-crop", action="store_true", help="add arms trained on the clips of "
                        "--formation none with each synthetic crop's contrast, blur and noise drawn anew (the real "
                        "crops unchanged)")
    parser.add_argument("--formation-changes", nargs="+", choices=CHANGES, default=list(CHANGES),
                        help="which changes the BVDM and flat clips draw per clip (bvdm-data cache --formation) and "
                        "--formation-per-crop's arms per crop (default: all three, as the library and --augment do)")
    for law, (_, what, flags, _) in LAW_ABLATIONS.items():
        parser.add_argument(f"--{law}-ablation", action="store_true", help=f"add arms whose BVDM clips {what} "
                            f"({' '.join(flags)})")
    parser.add_argument("--arms", nargs="+", help="train only these arms, by code: a a1 b c d d1 dq dm (a quarter "
                        "or three quarters of each batch synthetic) df d1f (the synthetic share falling to none; "
                        "these four asked for by name only) b* d* d1* b- d- d1- "
                        "bg dg d1g bu du d1u br dr d1r bi di d1i ...")
    statistics = parser.add_mutually_exclusive_group()
    statistics.add_argument("--no-statistics", action="store_true", help="skip the frame-statistics table")
    parser.add_argument("--bvdm-cache", help="an LMDB cache of BVDM clips (default: made under runs/)")
    parser.add_argument("--flat-cache", help="an LMDB cache of flat-texture clips (default: made under runs/)")
    parser.add_argument("--density", default="match", help="match (the real training frames), fitted, or a number")
    parser.add_argument("--sampler", default=DEFAULT_SAMPLER, choices=["ddpm", "ddim"],
                        help=f"for caches made here (default {DEFAULT_SAMPLER}, the library's)")
    parser.add_argument("--stride", type=int, help="DDIM stride for caches made here (default 4; DDPM: 1)")
    parser.add_argument("--clips", type=int, default=64, help="synthetic clips to cache if missing")
    parser.add_argument("--cache-seed", type=int, default=CACHE_SEED,
                        help=f"seed of the synthetic caches made here (default {CACHE_SEED}), to repeat an arm on "
                        "another synthetic sample")
    parser.add_argument("--frames", type=int, default=2)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--gen-batch", type=int, default=1, help="clips generated together for caches made here")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--width", type=int, default=ProtocolConfig.width, help="the segmenter's base channels (the "
                        f"protocol's: {ProtocolConfig.width}; more, to tell a source's look from the net's capacity)")
    parser.add_argument("--min-area", type=int, default=ProtocolConfig.min_area, help="smallest predicted object "
                        f"kept, px (the protocol's: {ProtocolConfig.min_area}, set for HeLa; 320 is the same filter "
                        "at GOWT1's scale, RESULTS.md §1). It only changes the scoring: with --resume the nets that "
                        "--out's runs kept are scored again, not trained again, and the tables are written beside "
                        "--out with _min_areaN in the name")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="training seeds; scores are averaged")
    parser.add_argument("--workers", type=int, default=1, help="processes training the seeds in parallel")
    parser.add_argument("--quick", action="store_true", help="200 steps, to check the set-up")
    statistics.add_argument("--statistics-only", action="store_true", help="measure and print the frame statistics of "
                        "the real frames and the synthetic sources of the chosen arms (issue 12's realism table) and "
                        "train nothing")
    parser.add_argument("--augment", action="store_true", help="vary every training crop's contrast, blur and noise "
                        "(bvdm_data.photometric, each with probability 0.5), real and synthetic alike")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="for training and, if caches are missing, generation")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "downstream.json"))
    parser.add_argument("--resume", action="store_true", help="reuse the (arm, seed) runs kept under "
                        "runs/downstream_parts/<out name>/ that ran with the same settings")
    args = parser.parse_args()
    args.stride = resolve_stride(args.sampler, args.stride)  # as caches name it
    args.data = args.data or str(ROOT.parent / "shared" / "data" / {"hela": "Fluo-N2DL-HeLa",
                                                                    "gowt1": "Fluo-N2DH-GOWT1"}[args.dataset])
    args.bundle = args.bundle or args.dataset
    torch.set_num_threads(args.threads)
    steps = 200 if args.quick else args.steps

    real_clips, test, real_video, protocol = (gowt1_data if args.dataset == "gowt1" else hela_data)(args)
    real_pool = FramePool(real_clips, "real")
    scarce_pool = FramePool(real_clips[:1], "real-1")
    metrics = protocol["metrics"]
    real_density = protocol.get("density") or labelled_density(real_pool)
    real_coverage = labelled_coverage(real_pool)
    density = (matched_density(args.bundle, args.size, args.frames, real_coverage) if args.density == "match"
               else None if args.density == "fitted" else float(args.density))
    wanted = set(args.arms or "b c d d1".split())
    # The BVDM clips are made only when an arm trains on them (real arms alone need no bundle).
    bvdm_wanted = wanted & {"b", "d", "d1", *BY_NAME_ONLY} or args.outline_ablation or args.formation_per_crop
    sources = {"BVDM": cache(args.bvdm_cache, "ddpm", density, args)} if bvdm_wanted else {}
    if not args.arms or "c" in args.arms:
        sources["flat"] = cache(args.flat_cache, "flat", density, args)
    off = ("--edge", "blur", "--labels", "masks")
    if args.ablation:
        if not args.base_bundle:
            parser.error("--ablation needs --base-bundle (the mask model fitted on tracks alone)")
        sources.update({
            "base": cache(None, "ddpm", density, args, args.base_bundle, off),
            "base + shapes": cache(None, "ddpm", density, args, args.bundle, off),
            "base + edge": cache(None, "ddpm", density, args, args.base_bundle, ("--labels", "masks")),
            "base + unlabelled": cache(None, "ddpm", density, args, args.base_bundle, off + ("--unlabelled",))})
    if args.texture_ablation:
        sources["BVDM, detail only"] = cache(None, "detail", density, args)
    if args.edge_ablation:
        sources["BVDM, mean edge"] = cache(None, "ddpm", density, args, args.bundle, ("--edge", "mean"))
    if args.labels_ablation:
        sources["BVDM, mask labels"] = cache(None, "ddpm", density, args, args.bundle, ("--labels", "masks"))
    laws = [law for law in LAW_ABLATIONS if getattr(args, f"{law}_ablation")]
    for law in laws:
        sources[f"BVDM{LAW_ABLATIONS[law][3]}"] = cache(None, "ddpm", density, args, args.bundle,
                                                        LAW_ABLATIONS[law][2])
    pools = {name: FramePool(clips, name) for name, clips in sources.items()}
    arms = {"(a) real": [real_pool], "(a1) real, 1 frame": [scarce_pool], "(b) BVDM": [pools.get("BVDM")],
            "(c) flat texture": [pools.get("flat")], "(d) real + BVDM": [real_pool, pools.get("BVDM")],
            "(d1) real 1 frame + BVDM": [scarce_pool, pools.get("BVDM")],
            # a batch splits evenly over its pools: three real pools for one synthetic, 6 real crops of 8
            "(dq) real + BVDM, a quarter synthetic": [real_pool, real_pool, real_pool, pools.get("BVDM")],
            "(dm) real + BVDM, three quarters synthetic": [real_pool] + [pools.get("BVDM")] * 3}
    if wanted & {"df", "d1f"}:
        fading = FramePool(sources["BVDM"], "BVDM, fading", fade=True)
        arms.update({"(df) real + BVDM, synthetic share falling to none": [real_pool, fading],
                     "(d1f) real 1 frame + BVDM, synthetic share falling to none": [scarce_pool, fading]})
    if args.edge_ablation:
        arms["(b') BVDM, one mean edge profile"] = [pools["BVDM, mean edge"]]
    if args.texture_ablation:
        arms["(b'') BVDM, detail only"] = [pools["BVDM, detail only"]]
    if args.labels_ablation:
        masks = pools["BVDM, mask labels"]
        arms.update({"(b-) BVDM, simulated masks as labels": [masks],
                     "(d-) real + BVDM, simulated masks as labels": [real_pool, masks],
                     "(d1-) real 1 frame + BVDM, simulated masks as labels": [scarce_pool, masks]})
    for law in laws:
        code, label = LAW_ABLATIONS[law][0], LAW_ABLATIONS[law][3]
        pool = pools[f"BVDM{label}"]
        arms.update({f"(b{code}) BVDM{label}": [pool], f"(d{code}) real + BVDM{label}": [real_pool, pool],
                     f"(d1{code}) real 1 frame + BVDM{label}": [scarce_pool, pool]})
    if args.outline_ablation:
        blind = FramePool(sources["BVDM"], "BVDM, outline ignored", outline_ignore=OUTLINE_IGNORE)
        pools[blind.name] = blind
        arms.update({"(bo) BVDM, outline band ignored": [blind], "(do) real + BVDM, outline band ignored":
                     [real_pool, blind], "(d1o) real 1 frame + BVDM, outline band ignored": [scarce_pool, blind]})
    if args.formation_per_crop:
        plain = cache(None, "ddpm", density, args, args.bundle, LAW_ABLATIONS["formation"][2])
        varied = FramePool(plain, f"BVDM, formation varied ({', '.join(args.formation_changes)})",
                           photometric=Photometric().only(args.formation_changes))
        pools[varied.name] = varied
        arms.update({"(bi) BVDM, formation varied": [varied], "(di) real + BVDM, formation varied":
                     [real_pool, varied], "(d1i) real 1 frame + BVDM, formation varied": [scarce_pool, varied]})
    if args.arms:
        arms = {name: p for name, p in arms.items() if name.split(")")[0][1:] in args.arms}
    else:  # the share experiments run when asked for
        arms = {name: p for name, p in arms.items() if name.split(")")[0][1:] not in BY_NAME_ONLY}
    if args.synthetic_only:
        arms = {name: pools_ for name, pools_ in arms.items() if all(p is not real_pool and p is not scarce_pool
                                                                    for p in pools_)}
    if args.ablation:
        arms.update({f"ablation: {name}": [pools[name]] for name in
                     ("base", "base + shapes", "base + edge", "base + unlabelled")})

    if args.statistics_only:
        arms = {}
    real_stats = None if args.no_statistics else frame_statistics([real_video])
    synthetic_stats = {} if args.no_statistics else \
        {name: frame_statistics(clips, max_frames=STATISTICS_FRAMES) for name, clips in sources.items()}
    if synthetic_stats:
        statistics_table = markdown(compare_frames(real_stats, synthetic_stats),
                                    ["statistic", "real"] + [c for n in sources for c in (n, f"{n} rel.")])
        print(f"\nframe statistics, median (real: {protocol['train_real']})\n\n{statistics_table}")

    t0 = time.perf_counter()
    configs = [ProtocolConfig(steps=steps, batch_size=args.batch_size, crop=args.crop, width=args.width, seed=seed,
                              min_area=args.min_area, device=args.device, augment=args.augment) for seed in args.seeds]
    parts = ROOT / "runs" / "downstream_parts" / Path(args.out).stem
    if args.min_area != ProtocolConfig.min_area:  # the nets of --out's runs, scored again: tables beside --out
        args.out = str(Path(args.out).with_name(f"{Path(args.out).stem}_min_area{args.min_area}.json"))

    def settings(arms_: dict) -> dict[str, dict]:
        """What a run depends on besides its seed and budget: the data, the protocol, the synthetic clips used."""
        common = {"dataset": args.dataset, "data": str(Path(args.data).resolve()), "device": args.device,
                  "test": protocol["test"], "train_real": protocol["train_real"]}
        def source(p: FramePool) -> str:
            name = "BVDM" if p.outline_ignore or p.photometric else p.name
            where = str(sources[name].path) if name in sources else name
            return where + (f" (outline band of {p.outline_ignore} px ignored)" if p.outline_ignore else "") + \
                (f" (formation varied: {asdict(p.photometric)})" if p.photometric else "")

        return {name: {**common, "sources": [source(p) for p in pools_]} for name, pools_ in arms_.items()}

    run = dict(parts=parts, resume=args.resume, threads=args.threads)
    rows = train_arms(arms, test, real_video, configs, args.workers, metrics, settings=settings(arms), **run)
    shift = None
    if args.calibrate_edge and rows:
        # One calibration round on real frames the test never sees: move the painted edge by the outline offset
        # that the BVDM-trained segmenter shows on the real training frames.
        shift = round(max(-3.0, min(3.0, next(r for r in rows if r["arm"] == "(b) BVDM")["calibration_offset_px"])), 2)
        print(f"\nedge calibration: BVDM-trained outlines sit {shift:+.2f} px from the real annotation on "
              f"{protocol['train_real']}; repainting with --edge-shift {shift}")
        sources["BVDM-calibrated"] = cache(None, "ddpm", density, args, args.bundle, ("--edge-shift", str(shift)))
        calibrated = FramePool(sources["BVDM-calibrated"], "BVDM-calibrated")
        more = {"(b*) BVDM, edge calibrated": [calibrated], "(d*) real + BVDM, edge calibrated": [real_pool, calibrated],
                "(d1*) real 1 frame + BVDM, edge calibrated": [scarce_pool, calibrated]}
        if args.synthetic_only:
            more = {"(b*) BVDM, edge calibrated": [calibrated]}
        rows += train_arms(more, test, real_video, configs, args.workers, metrics, settings=settings(more), **run)
    columns = ["arm", *metrics] + (["SEG_min", "SEG_max"] if len(args.seeds) > 1 else []) + \
        [e for e in ERRORS if any(e in r for r in rows)] + \
        ["matched_iou", "offset_px", "calibration_offset_px", "train_s", "frames"]
    table = markdown(rows, columns)
    print(f"\nsynthetic density {density if density is not None else 'fitted'} cells/px^2 "
          f"(real training frames: {real_density:.2e} cells/px^2, {real_coverage:.1%} of their pixels in a cell)")
    if rows:
        print(f"\n{steps} steps x batch {args.batch_size} x {args.crop} px, width {args.width}, seeds {args.seeds}, "
              f"{'photometric augmentation, ' if args.augment else ''}"
              f"{args.device}, {args.threads} threads, {time.perf_counter() - t0:.0f} s\n\n{table}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # what the clips were made with, read from each cache (a named --bvdm-cache may hold another density)
    caches = {name: {"path": str(c.path), "density": c.meta.get("density")} for name, c in sources.items()}
    out.write_text(json.dumps({"steps": steps, "batch_size": args.batch_size, "crop": args.crop, "width": args.width,
                               "seeds": args.seeds, "augment": args.augment, "device": args.device, "threads": args.threads, "dataset": args.dataset, **protocol,
                               "synthetic": {"frames": len(pools["BVDM"]) if "BVDM" in pools else 0,
                                             "bundle": args.bundle,
                                             "base_bundle": args.base_bundle, "caches": caches,
                                             "density": caches["BVDM"]["density"] if "BVDM" in caches else density,
                                             "density_real_training_frames": real_density, "coverage_real_training_frames": real_coverage,
                                             "sampler": args.sampler, "stride": args.stride,
                                             "clip_frames": args.frames, "size": args.size,
                                             "calibrated_edge_shift": shift},
                               "rows": rows, "frame_statistics": compare_frames(real_stats, synthetic_stats)
                               if synthetic_stats else None},
                              indent=2) + "\n")
    try:
        if rows:
            plot(rows, out.with_suffix(".png"), protocol["test"])
    except ImportError:
        print("matplotlib is not installed: no plot (pip install matplotlib)")


if __name__ == "__main__":
    main()
