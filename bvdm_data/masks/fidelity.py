"""Statistics of a label video and their distance between real and simulated data.

The same measures serve the fit report, the tests and the evaluation: sizes
and shapes of whole cells, per-frame motion, cell-cycle lengths, divisions
per cell-frame and density.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats as sstats
from scipy.spatial import ConvexHull, QhullError

from bvdm_data.masks.contours import Instances, measure_instances
from bvdm_data.masks.lineage import cell_cycles, lineage_roles, short_cycle_mothers

DISTRIBUTIONS = ("area", "eccentricity", "solidity", "displacement", "cycle_length", "density")
RATES = ("divisions_per_cell_frame",)
MAX_SOLIDITY_SAMPLES = 1500


def solidities(masks: np.ndarray, inst: Instances, rng: np.random.Generator) -> np.ndarray:
    """Area / convex-hull area of whole cells (not touching the border), at most ``MAX_SOLIDITY_SAMPLES`` of them.

    Pixels count as unit squares, so a one-pixel cell has solidity 1.
    """
    picks = np.flatnonzero(~inst.border)
    if picks.size > MAX_SOLIDITY_SAMPLES:
        picks = rng.choice(picks, MAX_SOLIDITY_SAMPLES, replace=False)
    out = []
    corners = np.array([[0, 0], [0, 1], [1, 0], [1, 1]]) - 0.5
    for i in picks:
        ys, xs = np.nonzero(masks[inst.frame[i]] == inst.label[i])
        points = (np.stack([ys, xs], 1)[:, None, :] + corners[None]).reshape(-1, 2)
        try:
            out.append(ys.size / ConvexHull(points).volume)
        except QhullError:
            continue
    return np.asarray(out)


def displacements(inst: Instances) -> np.ndarray:
    """Centroid steps (px) of each whole cell (not touching the border) between consecutive frames of its track."""
    order = np.lexsort((inst.frame, inst.label))
    lab, frm, cen, ok = inst.label[order], inst.frame[order], inst.centroid[order], (~inst.border)[order]
    step = (lab[1:] == lab[:-1]) & (frm[1:] == frm[:-1] + 1) & ok[1:] & ok[:-1]
    return np.hypot(*(cen[1:] - cen[:-1])[step].T)


def divisions_in_view(tracks: np.ndarray, num_frames: int, min_cycle: int = 1) -> int:
    """Divisions seen in a ``num_frames`` video: mothers whose last frame is inside it (not its last frame).

    A mother whose cycle (from its birth by division, through single-child
    continuations) is shorter than ``min_cycle`` frames is a tracking
    artefact (a split of one nucleus) and is not counted, as the cycle law
    leaves such cycles out (:func:`~bvdm_data.masks.lineage.short_cycle_mothers`).

    Example:
        >>> divisions_in_view(np.array([[1, 0, 4, 0], [2, 5, 5, 1], [3, 5, 9, 1], [4, 6, 9, 2], [5, 6, 9, 2]]), 10, 4)
        1
    """
    dividers, _ = lineage_roles(tracks)
    dividers -= short_cycle_mothers(tracks, min_cycle)
    return sum(1 for l, _, e, _ in np.asarray(tracks).reshape(-1, 4).tolist() if l in dividers and e < num_frames - 1)


def label_video_statistics(masks: np.ndarray, tracks: np.ndarray, inst: Instances | None = None,
                           seed: int = 0, min_cycle: int = 1) -> dict[str, np.ndarray]:
    """Measure a ``[T, H, W]`` label video with CTC lineage rows ``(label, begin, end, parent)``.

    Returns arrays: ``area``, ``eccentricity``, ``solidity`` (whole cells,
    not touching the border), ``displacement`` (px per frame of a cell
    between consecutive frames), ``cycle_length`` (frames from birth to the
    last frame before division, complete cycles only), ``density`` (cells per
    10 000 px^2, per frame) and ``divisions_per_cell_frame`` (one value).
    Cycles shorter than ``min_cycle`` frames, and their divisions, are left
    out as tracking artefacts (the fit passes a newborn plus a mitotic phase).
    """
    masks = np.asarray(masks)
    tracks = np.asarray(tracks, dtype=np.int64).reshape(-1, 4)
    inst = inst if inst is not None else measure_instances(masks)
    whole = ~inst.border

    lengths, divided = cell_cycles(tracks)
    cycles = lengths[divided & (lengths >= min_cycle)]
    divisions = divisions_in_view(tracks, masks.shape[0], min_cycle)
    frame_area = masks.shape[1] * masks.shape[2] / 1e4
    per_frame = np.bincount(inst.frame, minlength=masks.shape[0])
    return {
        "area": inst.area[whole],
        "eccentricity": inst.eccentricity[whole],
        "solidity": solidities(masks, inst, np.random.default_rng(seed)),
        "displacement": displacements(inst),
        "cycle_length": cycles,
        "density": per_frame / frame_area,
        "divisions_per_cell_frame": np.array([divisions / max(len(inst), 1)]),
    }


def summarize(statistics: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Median, mean, 5th/95th percentile and count of each statistic (JSON-ready)."""
    out = {}
    for name, values in statistics.items():
        values = np.asarray(values, dtype=float)
        if values.size == 0:
            out[name] = {"n": 0}
            continue
        p5, p50, p95 = np.percentile(values, [5, 50, 95])
        out[name] = {"n": int(values.size), "median": float(p50), "mean": float(values.mean()),
                     "p5": float(p5), "p95": float(p95)}
    return out


def compare_statistics(real: dict[str, np.ndarray], simulated: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """One row per statistic: real and simulated centre, relative difference, KS distance.

    The centre is the median of a distribution and the mean of a rate;
    ``relative`` is ``(simulated - real) / real``; ``ks`` is the two-sample
    Kolmogorov-Smirnov statistic (0 = same distribution, 1 = disjoint), NaN
    for rates or when either side has no samples.
    """
    rows = []
    for name in DISTRIBUTIONS + RATES:
        a, b = np.asarray(real.get(name, []), float), np.asarray(simulated.get(name, []), float)
        centre = np.mean if name in RATES else np.median
        ra = float(centre(a)) if a.size else float("nan")
        sb = float(centre(b)) if b.size else float("nan")
        ks = float(sstats.ks_2samp(a, b).statistic) if name in DISTRIBUTIONS and a.size and b.size else float("nan")
        rel = (sb - ra) / ra if a.size and b.size and ra != 0 else float("nan")
        rows.append({"statistic": name, "real": ra, "simulated": sb, "relative": rel, "ks": ks,
                     "n_real": int(a.size), "n_simulated": int(b.size)})
    return rows


def format_comparison(rows: list[dict[str, Any]]) -> str:
    """The comparison as a fixed-width text table."""
    lines = [f"{'statistic':26s} {'real':>10s} {'simulated':>10s} {'rel.diff':>9s} {'KS':>6s} {'n real':>7s} {'n sim':>7s}"]
    for r in rows:
        lines.append(f"{r['statistic']:26s} {r['real']:10.4g} {r['simulated']:10.4g} {r['relative']:+9.1%} "
                     f"{r['ks']:6.3f} {r['n_real']:7d} {r['n_simulated']:7d}")
    return "\n".join(lines)
