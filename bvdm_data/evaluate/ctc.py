"""CTC SEG, DET and TRA through the Cell Tracking Challenge's own Python metrics (py-ctcmetrics)."""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

from bvdm_data.ctc.naming import RES, TRA, list_frames
from bvdm_data.ctc.validate import errors_only, validate_frames
from bvdm_data.errors import BVDMDataError

METRICS = ("SEG", "DET", "TRA")


def check_result(res: Path, gt: Path) -> None:
    """Our own format check of a result folder before py-ctcmetrics reads it (its errors name no file).

    The result must pass :func:`~bvdm_data.ctc.validate.validate_frames` as a
    ``RES`` folder (mask files, integer labels, ``res_track.txt`` lines that
    match the masks), and hold a mask for every frame of the ground truth.
    """
    problems: list = []
    validate_frames(res, RES, problems)
    problems = errors_only(problems)
    if problems:
        more = f" (and {len(problems) - 1} more; 'bvdm-data validate {res}' lists them)" if len(problems) > 1 else ""
        raise BVDMDataError(f"{problems[0]}{more}")
    missing = sorted(set(list_frames(gt / "TRA", TRA)) - set(list_frames(res, RES)))
    if missing:
        raise BVDMDataError(f"{res}: no mask for ground-truth frame(s) {missing[:8]}"
                            f"{' ...' if len(missing) > 8 else ''} (mask{missing[0]:03d}.tif)")


# DET's and TRA's error counts (py-ctcmetrics' AOGM vertex operations over the whole sequence), by what they mean.
ERRORS = {"false_positives": "AOGM_FP", "misses": "AOGM_FN", "splits": "AOGM_NS"}


def evaluate_ctc(res: str | os.PathLike, gt: str | os.PathLike, metrics: Sequence[str] = METRICS,
                 threads: int = 1, errors: bool = False) -> dict[str, float]:
    """Score a CTC result folder (``NN_RES``) against a ground-truth folder (``NN_GT`` with ``TRA``/``SEG``).

    With ``errors=True`` the scores come with what DET counts against a
    result (:data:`ERRORS`): objects matching no reference marker
    (``false_positives``, weight 1 in DET), reference markers no object
    matches (``misses``, weight 10) and objects to split (``splits``, weight 5),
    summed over the frames. Needs the ``[eval]`` extra (``pip install 'bvdm-data[eval]'``).

    Example:
        >>> evaluate_ctc("synth/01_RES", "synth/01_GT")  # doctest: +SKIP
        {'SEG': 1.0, 'DET': 1.0, 'TRA': 1.0}
        >>> evaluate_ctc("synth/01_RES", "synth/01_GT", ["DET"], errors=True)  # doctest: +SKIP
        {'DET': 1.0, 'false_positives': 0.0, 'misses': 0.0, 'splits': 0.0}
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
    metrics = list(metrics)
    if "SEG" in metrics and not (gt / "SEG").is_dir():
        metrics.remove("SEG")
        warnings.warn(f"{gt}: no SEG folder, SEG skipped; scoring {metrics}", stacklevel=2)
        if not metrics:
            raise BVDMDataError(f"{gt}: no SEG folder, and SEG was the only metric asked for")
    check_result(res, gt)
    if not (res / "res_track.txt").read_text().strip():
        # Nothing segmented in any frame (py-ctcmetrics cannot read an empty track file): every reference object
        # is missed, which SEG, DET and TRA all score 0.
        scores = dict.fromkeys(metrics, 0.0)
        return {**scores, **_empty_result_errors(gt)} if errors else scores
    asked = metrics + ["TRA"] if errors and "TRA" not in metrics else metrics  # the error counts come with TRA
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():  # it prints and warns per frame
        warnings.simplefilter("ignore")
        results = evaluate_sequence(str(res), str(gt), asked, threads)
    if not results.get("Valid", 1):
        raise BVDMDataError(f"{res}: py-ctcmetrics judged the result invalid and scored nothing; "
                            f"'bvdm-data validate {res}' names the problems")
    scores = {m: float(results[m]) for m in metrics if results.get(m) is not None}
    return {**scores, **{name: float(results[key]) for name, key in ERRORS.items()}} if errors else scores


def _empty_result_errors(gt: Path) -> dict[str, float]:
    """An empty result misses every reference marker of every frame, and has nothing false or to split."""
    import numpy as np
    import tifffile

    markers = sum(len(np.unique(tifffile.imread(path))) - 1 for path in list_frames(gt / "TRA", TRA).values())
    return {**dict.fromkeys(ERRORS, 0.0), "misses": float(markers)}
