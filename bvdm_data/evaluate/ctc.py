"""CTC SEG, DET and TRA through the Cell Tracking Challenge's own Python metrics (py-ctcmetrics)."""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

from bvdm_data.errors import BVDMDataError

METRICS = ("SEG", "DET", "TRA")


def evaluate_ctc(res: str | os.PathLike, gt: str | os.PathLike, metrics: Sequence[str] = METRICS,
                 threads: int = 1) -> dict[str, float]:
    """Score a CTC result folder (``NN_RES``) against a ground-truth folder (``NN_GT`` with ``TRA``/``SEG``).

    Needs the ``[eval]`` extra (``pip install 'bvdm-data[eval]'``).

    Example:
        >>> evaluate_ctc("synth/01_RES", "synth/01_GT")  # doctest: +SKIP
        {'SEG': 1.0, 'DET': 1.0, 'TRA': 1.0}
    """
    try:
        from ctc_metrics import evaluate_sequence
    except ImportError as err:
        raise BVDMDataError("CTC metrics need the [eval] extra: pip install 'bvdm-data[eval]' "
                            "(py-ctcmetrics)") from err
    res, gt = Path(res), Path(gt)
    for path, what in ((res, "result"), (gt / "TRA", "ground truth TRA")):
        if not path.is_dir():
            raise BVDMDataError(f"{path}: no such {what} folder")
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise BVDMDataError(f"unknown metrics {unknown}; choose from {list(METRICS)}")
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():  # it prints and warns per frame
        warnings.simplefilter("ignore")
        results = evaluate_sequence(str(res), str(gt), list(metrics), threads)
    if not results.get("Valid", 1):
        raise BVDMDataError(f"{res}: py-ctcmetrics judged the result invalid and scored nothing; "
                            f"'bvdm-data validate {res}' names the problems")
    return {m: float(results[m]) for m in metrics if results.get(m) is not None}
