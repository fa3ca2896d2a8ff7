"""Scoring: ``evaluate`` (CTC SEG/DET/TRA) and ``evaluate-realism`` (texture distances and flicker)."""

from __future__ import annotations

import argparse
import sys

from bvdm_data.cli.common import POSITIVE, _density, _frame_range, _sampler_options, _verb


def run_evaluate(args: argparse.Namespace) -> int:
    from bvdm_data.evaluate import evaluate_ctc

    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scores = evaluate_ctc(args.res, args.gt, args.metrics, errors=args.errors)
    for warning in caught:
        print(f"bvdm-data evaluate: note: {warning.message}", file=sys.stderr)
    print(" ".join(f"{name} {value:.4f}" if name in args.metrics else f"{name} {value:.0f}"
                   for name, value in scores.items()))
    return 0


def run_evaluate_realism(args: argparse.Namespace) -> int:
    from bvdm_data.ctc.sequence import open_sequence
    from bvdm_data.diffusion.sample import resolve_stride, sampler_label
    from bvdm_data.diffusion.texture import TextureModel
    from bvdm_data.evaluate.realism import (ENCODER_NAME, markdown, split_crops, temporal_rows, texture_columns,
                                            texture_rows)
    from bvdm_data.synth import SynthesisSettings

    seq = open_sequence(args.ctc, args.seq, labels=args.annotation)
    texture = TextureModel.load(args.bundle)
    held_out = _frame_range(args.held_out)
    held, reference = split_crops(seq, texture.crop_size, held_out, args.cells, args.seed)
    stride = resolve_stride(args.sampler, args.stride)
    painting = sampler_label(args.sampler, stride)
    rows = texture_rows(texture, held, reference, [(f"BVDM t_s={args.t_s} {painting}",
                                                    {"t_s": args.t_s, "sampler": args.sampler, "stride": stride})],
                        args.resamples, args.seed, brightness=args.brightness)
    print(f"texture: {len(held)} held-out cells of frames {args.held_out}; lower is closer to real; "
          f"Fréchet on {ENCODER_NAME} features; _95: range over {args.resamples} resamples of the held-out cells, "
          f"_beats_flat: share of those in which the row is closer than flat")
    print(markdown(rows, texture_columns(args.resamples)))
    painted = dict(t_s=args.t_s, sampler=args.sampler, stride=stride, density=args.density,
                   formation=None)  # the painter's own flicker, without the per-frame noise of a drawn formation
    settings = [(f"BVDM t_f={args.t_f} {painting}", SynthesisSettings(t_f=args.t_f, **painted)),
                ("independent frames", SynthesisSettings(t_f=0, independent_frames=True, **painted))]
    rows = temporal_rows(args.bundle, seq, texture.intensity_range, args.clips, args.frames, tuple(args.size),
                         settings)
    print("\ntemporal flicker (mean absolute change inside cells between frames, 0..1):")
    print(markdown(rows, ["setting", "flicker"]))
    return 0


def add_verbs(sub: argparse._SubParsersAction) -> None:
    """Register this group's verbs on the ``bvdm-data`` parser."""
    p = _verb(sub, "evaluate", "CTC SEG, DET and TRA of a result folder against ground truth (needs the [eval] "
              "extra: py-ctcmetrics, the challenge's own Python metrics).",
              "bvdm-data evaluate --res Fluo-N2DL-HeLa/01_RES --gt Fluo-N2DL-HeLa/01_GT", run_evaluate)
    p.add_argument("--res", required=True, help="result folder (maskTTT.tif + res_track.txt)")
    p.add_argument("--gt", required=True, help="ground-truth folder holding TRA/ (and SEG/ for SEG)")
    p.add_argument("--metrics", nargs="+", default=["SEG", "DET", "TRA"], help="any of SEG DET TRA (default all)")
    p.add_argument("--errors", action="store_true", help="also print what DET counts against the result: "
                   "false positives, misses and splits, summed over the frames")

    p = _verb(sub, "evaluate-realism", "Texture distances (intensity, spectrum, Fréchet) of SDEdit-painted held-out "
              "masks and temporal flicker of synthetic clips, next to real-vs-real and the flat baseline.",
              "bvdm-data evaluate-realism --bundle hela --ctc Fluo-N2DL-HeLa --seq 02 --annotation ERR_SEG "
              "--held-out 11:14", run_evaluate_realism)
    p.add_argument("--bundle", default="hela", help="bundle to evaluate (default hela)")
    p.add_argument("--ctc", required=True, help="CTC dataset folder with the real frames")
    p.add_argument("--seq", default="01", help="sequence (default 01)")
    p.add_argument("--annotation", default="GT", help="labels to find cells (default GT)")
    p.add_argument("--held-out", required=True, help="frames FIRST:STOP the bundle did not learn from")
    p.add_argument("--cells", type=int, default=64, help="held-out cells to paint (default 64)")
    p.add_argument("--resamples", type=int, default=100,
                   help="bootstrap draws of the held-out cells for ranges and shares that beat flat (default 100)")
    p.add_argument("--brightness", default="drawn", choices=["drawn", "real"],
                   help="paint each held-out mask at a brightness drawn from the fitted law (default) or at its "
                   "real cell's mean, so that the distances measure texture alone")
    p.add_argument("--t-s", type=int, default=200, help="SDEdit step (default 200)")
    p.add_argument("--t-f", type=int, default=10, help="refinement steps (default 10)")
    _sampler_options(p)
    p.add_argument("--clips", type=int, default=2, help="synthetic clips for flicker (default 2)")
    p.add_argument("--frames", type=int, default=6, help="frames per synthetic clip (default 6)")
    p.add_argument("--size", type=POSITIVE, nargs=2, default=[192, 192], metavar=("H", "W"),
                   help="synthetic frame size (default 192 192)")
    p.add_argument("--density", type=_density, help="cells per px^2 in synthetic clips (default: the bundle's fitted)")
    p.add_argument("--seed", type=int, default=0, help="seed (default 0)")

