"""The ``bvdm-data`` command line (also ``python -m bvdm_data``), one module per verb group.

Every verb has ``--help`` with an example; bad input ends with a one-line
reason on stderr and a non-zero exit status, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from bvdm_data import __version__
from bvdm_data.cli import evaluation, fitting, generation, inspection
from bvdm_data.cli.common import EXIT_BAD_INPUT
from bvdm_data.errors import BVDMDataError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bvdm-data",
        description="Synthetic annotated cell microscopy videos (BVDM) as a PyTorch data source.",
    )
    parser.add_argument("--version", action="version", version=f"bvdm-data {__version__}")
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for group in (inspection, generation, evaluation, fitting):
        group.add_verbs(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except (BVDMDataError, OSError, ValueError) as err:
        print(f"bvdm-data {args.verb}: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"bvdm-data {args.verb}: interrupted", file=sys.stderr)
        return 130


__all__ = ["build_parser", "main"]
