"""What every verb group shares: exit codes, argument types, option groups and label sources."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from bvdm_data.errors import BVDMDataError

EXIT_PROBLEMS = 1


EXIT_BAD_INPUT = 2


def _count(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer of at least ``minimum`` (argparse prints the one-line error and exits 2)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value
    parse.__name__ = f"integer >= {minimum}"
    return parse


POSITIVE, NON_NEGATIVE = _count(1), _count(0)


def _density(text: str) -> float:
    """An argparse type: a finite, non-negative number of cells per px^2."""
    from bvdm_data.arguments import as_density

    try:
        return as_density(float(text))
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _sampler_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sampler", default="ddim", choices=["ddpm", "ddim"], help="denoising sampler: ddim "
                   "(default), or ddpm, the paper's ancestral sampler (every step; 4x the calls of DDIM /4, and its "
                   "clips mixed worse with real frames, benchmarks/RESULTS.md section 1)")
    p.add_argument("--stride", type=POSITIVE, help="DDIM step stride (default 4; DDPM takes every step)")


def _verb(sub: argparse._SubParsersAction, name: str, help_text: str, example: str,
          run: Callable[[argparse.Namespace], int]) -> argparse.ArgumentParser:
    parser = sub.add_parser(name, help=help_text, description=help_text,
                            epilog=f"example:\n  {example}", formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.set_defaults(run=run)
    return parser


def _label_source(args: argparse.Namespace):
    """The label folder named by --labels, or by --ctc/--seq/--annotation."""
    from bvdm_data.ctc.sequence import LabelFolder, label_folder

    if args.labels:
        return LabelFolder(args.labels)
    if not args.ctc:
        raise BVDMDataError("give --labels FOLDER (a TRA or RES folder) or --ctc DATASET --seq NN")
    return LabelFolder(label_folder(Path(args.ctc), args.seq, args.annotation))


def _frame_range(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        first, last = (int(v) for v in text.split(":"))
    except ValueError as err:
        raise BVDMDataError(f"--frames takes FIRST:STOP (e.g. 0:11), got {text!r}") from err
    return list(range(first, last))


def _label_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--labels", help="a TRA folder (man_trackTTT.tif + man_track.txt) or RES folder")
    p.add_argument("--ctc", help="a CTC dataset folder, instead of --labels")
    p.add_argument("--seq", default="01", help="sequence in --ctc (default 01)")
    p.add_argument("--annotation", default="GT", help="annotation in --ctc: GT, RES ... (default GT)")


def _number(text: str) -> float:
    """``text`` as a float, NaN (outside every range) when it is not a number."""
    try:
        return float(text)
    except ValueError:
        return float("nan")


def share(text: str) -> float:
    """An argparse type: a number in 0..1."""
    value = _number(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected a share between 0 and 1, got {text!r}")
    return value


def touching_target(text: str) -> bool | float:
    """``--touching``: ``real`` (True) or a share in (0, 1)."""
    if text == "real":
        return True
    value = _number(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"expected 'real' or a share between 0 and 1, got {text!r}")
    return value


def separation(text: str) -> float:
    """``--min-separation``: closest centroid distance over the sum of the two cells' radii, in (0, 2]."""
    value = _number(text)
    if not 0 < value <= 2:
        raise argparse.ArgumentTypeError(f"expected a ratio in (0, 2] (closest centroid distance / (r1 + r2)), "
                                         f"got {text!r}")
    return value


def _shape_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--shapes-from", help="a per-frame segmentation folder (maskTTT.tif, e.g. 02_ERR_SEG) to take "
                   "outlines, sizes and density from, so that they follow the annotation a segmenter is scored "
                   "against; lineage and motion still come from the tracks")
    p.add_argument("--shapes-frames", help="frames FIRST:STOP of --shapes-from (default all)")
    p.add_argument("--shape-components", type=int, help="shape modes fitted on --shapes-from (default: as --components)")
    spacing = p.add_mutually_exclusive_group()  # both set the cells' spacing
    spacing.add_argument("--touching", type=touching_target, metavar="real|SHARE",
                   help="space simulated cells so that this share of them touch another ('real': as many as in "
                   "--shapes-from, when it outlines every cell); default: the closest approach seen (on HeLa, 0.17 of "
                   "simulated cells touch, 0.04 of real ones)")
    spacing.add_argument("--min-separation", type=separation, metavar="RATIO",
                   help="space simulated cells at least RATIO x (r1 + r2) apart, set after every calibration "
                   "(the shipped hela bundle: 0.7, more touching cells than the data show, which helped a "
                   "segmenter part real pressed nuclei; benchmarks/RESULTS.md section 1); instead of --touching")


def _training_options(p: argparse.ArgumentParser, part: str, crop_multiple: int, iterations: int, lr: float) -> None:
    p.add_argument("--out", required=True, help="bundle folder to write (created or updated)")
    p.add_argument("--work", help=f"checkpoint folder (default OUT.{part}-work)")
    p.add_argument("--crop-size", type=int, default=64, help=f"crop size in px, a multiple of {crop_multiple} (default 64)")
    p.add_argument("--iterations", type=int, default=iterations, help=f"training steps (default {iterations})")
    p.add_argument("--batch-size", type=int, default=32, help="examples per step (default 32)")
    p.add_argument("--lr", type=float, default=lr, help=f"AdamW learning rate (default {lr:g})")
    p.add_argument("--hours", type=float, help="stop after this long, leaving a checkpoint")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
