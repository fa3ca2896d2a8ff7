"""Fit a :class:`MaskModel` from a real label video whose ids are track ids."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from bvdm_data.clip import cell_frames, tracks_from_masks
from bvdm_data.errors import BVDMDataError
from bvdm_data.masks.contours import Instances, measure_instances
from bvdm_data.masks.coverage import touching_share
from bvdm_data.masks.fidelity import displacements, divisions_in_view, label_video_statistics, summarize
from bvdm_data.masks.lineage import cell_cycles, is_short_cycle, lineage_roles
from bvdm_data.masks.model import PHASES, MaskModel
from bvdm_data.masks.simulate import simulate_masks
from bvdm_data.robust import robust_std

MIN_SHAPES_PER_PHASE = 24


def _wrap_axis(angle: np.ndarray) -> np.ndarray:
    """Wrap an axis angle (defined modulo pi) to [-pi/2, pi/2)."""
    return (angle + np.pi / 2) % np.pi - np.pi / 2


def instance_phases(inst: Instances, tracks: np.ndarray, mitosis_frames: int, newborn_frames: int
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Phase index (into PHASES) and cycle age fraction (NaN if the cycle is not complete) per instance."""
    dividers, born = lineage_roles(tracks)
    span = {int(l): (int(b), int(e)) for l, b, e, _ in tracks}
    phase = np.zeros(len(inst), dtype=np.int64)
    age = np.full(len(inst), np.nan)
    for i, (t, label) in enumerate(zip(inst.frame.tolist(), inst.label.tolist())):
        b, e = span[label]
        if label in dividers and t > e - mitosis_frames:
            phase[i] = 1
        elif label in born and t - b < newborn_frames:
            phase[i] = 2
        if label in dividers and label in born:
            age[i] = (t - b) / (e - b + 1)
    return phase, age


def _shape_pca(radii: np.ndarray, num_components: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    mean = radii.mean(0)
    _, s, vt = np.linalg.svd(radii - mean, full_matrices=False)
    c = min(num_components, vt.shape[0])
    std = s[:c] / np.sqrt(max(len(radii) - 1, 1))
    return mean, vt[:c], std


def _shape_persistence(inst: Instances, mean: np.ndarray, comps: np.ndarray, std: np.ndarray,
                       fallbacks: list[str]) -> float:
    """Correlation of the standardised shape latent between consecutive frames of a cell."""
    key = inst.label * 100000 + inst.frame
    index = {int(k): i for i, k in enumerate(key)}
    a, b = [], []
    k = inst.radii.shape[1]
    for i, (label, t) in enumerate(zip(inst.label.tolist(), inst.frame.tolist())):
        j = index.get(label * 100000 + t + 1)
        if j is None:
            continue
        zi = comps @ (inst.radii[i] - mean) / std
        # The start point is the major axis in either direction: take the nearer reading.
        zj = [comps @ (np.roll(inst.radii[j], s) - mean) / std for s in (0, k // 2)]
        a.append(zi)
        b.append(min(zj, key=lambda z: float(((z - zi) ** 2).sum())))
    if len(a) < 10:
        fallbacks.append(f"shape persistence: {len(a)} cells seen in consecutive frames (< 10); assumed 0.9")
        return 0.9
    a, b = np.asarray(a), np.asarray(b)
    return float(np.clip((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()), 0.0, 0.99))


def cycle_length_distribution(tracks: np.ndarray, min_length: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Kaplan-Meier estimate of the cell-cycle length, in frames.

    Every cell born by division is followed from birth (see
    :func:`~bvdm_data.masks.lineage.cell_cycles`): it either divides (an event
    at its length) or its chain ends without dividing (it left the view, was
    lost, or the video ended: censored). Counting only complete cycles would
    favour short cycles, since long ones rarely fit in the video. Returns
    ``(lengths, probabilities)`` of the event times. They sum to less than
    one when cells were followed past the longest observed cycle without
    dividing; that remaining mass is the fraction of cells that do not divide
    (the simulation gives them no division). On the HeLa result the residual
    is 0.48: spreading it over the observed lengths instead doubles the
    simulated division rate (0.023 vs 0.012 per cell-frame in the real data),
    keeping it undershoots (0.008-0.010), so it is kept. Cells seen to
    divide fewer than ``min_length`` frames after their birth are left out
    (not events, not censored): a cycle shorter than a newborn plus a mitotic
    phase is a tracking artefact (HeLa 01_RES: 13 of 68 complete cycles last
    1-3 frames, splits and merges of one nucleus, and carried 7 % of the law).
    """
    length, event, _ = _cycles_without_artefacts(tracks, min_length)
    return _kaplan_meier(length, event)


def _cycles_without_artefacts(tracks: np.ndarray, min_length: int) -> tuple[np.ndarray, np.ndarray, int]:
    """:func:`cell_cycles` less the short (artefact) cycles, and how many those were."""
    length, event = cell_cycles(tracks)
    short = is_short_cycle(length, event, min_length)
    return length[~short], event[~short], int(short.sum())


def _kaplan_meier(length: np.ndarray, event: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Event times and their probabilities from lengths with an event flag (``False``: censored)."""
    if not event.any():
        return np.zeros(0), np.zeros(0)
    times = np.unique(length[event])
    at_risk = np.array([(length >= t).sum() for t in times], dtype=float)
    events = np.array([(event & (length == t)).sum() for t in times], dtype=float)
    survival = np.cumprod(1 - events / at_risk)
    probabilities = -np.diff(np.concatenate([[1.0], survival]))
    return times, probabilities


MIN_COMPLETE_CYCLES = 5  # fewer seen from birth to division: the law comes from the division rate instead
CYCLE_CV_PRIOR = 0.25    # spread of cycle lengths assumed then (cultured mammalian cells: about 0.2-0.3)


def cycle_law(tracks: np.ndarray, min_length: int = 1) -> tuple[np.ndarray, np.ndarray, dict]:
    """The cell-cycle law and a note of what it rests on: Kaplan-Meier when the video shows complete cycles.

    With fewer than :data:`MIN_COMPLETE_CYCLES` cells followed from birth to
    division (GOWT1 01: none, though two cells divide), the law is a
    discretised gamma whose mean is the observed exposure per division
    (cell-frames / divisions, every track counted, censored ones too) and
    whose coefficient of variation is the prior :data:`CYCLE_CV_PRIOR`:
    simulated cells, caught at a uniform point of their cycle, then divide
    at the observed rate. No division at all gives no law (cells never divide).
    Complete cycles under ``min_length`` frames are artefacts, left out of
    both (see :func:`cycle_length_distribution`); the note counts them.

    Example:
        >>> rows = np.array([[1, 0, 99, 0], [2, 100, 120, 1], [3, 100, 120, 1], [4, 0, 120, 0]])
        >>> lengths, probs, note = cycle_law(rows)
        >>> note["source"], round(float((lengths * probs).sum())), note["divisions"]
        ('division rate with a prior', 263, 1)
    """
    length, divided, short = _cycles_without_artefacts(tracks, min_length)
    lengths, probabilities = _kaplan_meier(length, divided)
    complete = int(divided.sum())
    dividers, _ = lineage_roles(tracks)
    exposure = cell_frames(tracks)
    note = {"complete_cycles": complete, "divisions": len(dividers), "cell_frames": exposure,
            "short_cycles_left_out": short, "min_length": int(min_length)}
    if complete >= MIN_COMPLETE_CYCLES or not dividers:
        return lengths, probabilities, {**note, "source": "Kaplan-Meier of observed cycles" if complete else "none"}
    from scipy import stats

    mean = exposure / len(dividers)
    shape = 1 / CYCLE_CV_PRIOR ** 2
    support = np.arange(max(1, int(mean * (1 - 4 * CYCLE_CV_PRIOR))), int(np.ceil(mean * (1 + 6 * CYCLE_CV_PRIOR))) + 1)
    weights = stats.gamma.pdf(support, a=shape, scale=mean / shape)
    return support.astype(float), weights / weights.sum(), {**note, "source": "division rate with a prior",
                                                            "mean_frames": mean, "cv_prior": CYCLE_CV_PRIOR}


def _motion(inst: Instances, interphase: np.ndarray, fallbacks: list[str]) -> tuple[float, float, float]:
    """AR(1) persistence and noise of displacements, and the spread of rotation, per frame."""
    order = np.lexsort((inst.frame, inst.label))
    lab, frm = inst.label[order], inst.frame[order]
    cen, ori, ok = inst.centroid[order], inst.orientation[order], (interphase & ~inst.border)[order]
    step = (lab[1:] == lab[:-1]) & (frm[1:] == frm[:-1] + 1) & ok[1:] & ok[:-1]
    disp = np.where(step[:, None], cen[1:] - cen[:-1], np.nan)
    rot = _wrap_axis(ori[1:] - ori[:-1])[step]
    prev, cur = disp[:-1], disp[1:]
    both = ~np.isnan(prev).any(1) & ~np.isnan(cur).any(1) & (lab[1:-1] == lab[2:])
    # Robust (median-based) estimates: tracking and segmentation errors give heavy tails.
    if both.sum() >= 10:
        rho = float(np.clip(np.median((prev[both] * cur[both]).sum(1)) / np.median((prev[both] ** 2).sum(1)), 0, 0.95))
        noise = robust_std(cur[both] - rho * prev[both])
    else:
        valid = ~np.isnan(disp).any(1)
        rho, noise = 0.0, robust_std(disp[valid]) if valid.sum() >= 2 else 1.0
        fallbacks.append(f"motion: {int(both.sum())} pairs of consecutive steps (< 10); persistence assumed 0, "
                         + ("noise from single steps" if valid.sum() >= 2 else "noise assumed 1 px/frame"))
    if rot.size:
        rot_std = robust_std(rot)
    else:
        rot_std = 0.1
        fallbacks.append("rotation: no cell seen in consecutive frames; assumed 0.1 rad/frame")
    return rho, noise, rot_std


def _divisions(inst: Instances, tracks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    dividers, _ = lineage_roles(tracks)
    where = {(int(l), int(t)): i for i, (l, t) in enumerate(zip(inst.label, inst.frame))}
    seps, angles = [], []
    for parent in sorted(dividers):
        kids = tracks[tracks[:, 3] == parent]
        if len(kids) != 2 or kids[0, 1] != kids[1, 1]:
            continue
        t0 = int(kids[0, 1])
        p_end = int(tracks[tracks[:, 0] == parent, 2][0])
        ia, ib, ip = where.get((int(kids[0, 0]), t0)), where.get((int(kids[1, 0]), t0)), where.get((parent, p_end))
        if ia is None or ib is None or ip is None:
            continue
        d = inst.centroid[ib] - inst.centroid[ia]
        seps.append(float(np.hypot(*d)))
        angles.append(float(_wrap_axis(np.arctan2(d[0], d[1]) - inst.orientation[ip])))
    return np.asarray(seps), np.asarray(angles)


def _min_separation(inst: Instances, fallbacks: list[str] | None = None) -> float:
    ratios = []
    for t in np.unique(inst.frame):
        sel = inst.frame == t
        if sel.sum() < 2:
            continue
        c, r = inst.centroid[sel], np.sqrt(inst.area[sel] / np.pi)
        dist = np.hypot(*(c[:, None] - c[None]).transpose(2, 0, 1))
        np.fill_diagonal(dist, np.inf)
        ratios.append((dist / (r[:, None] + r[None])).min(1))
    if not ratios:
        if fallbacks is not None:
            fallbacks.append("spacing: no frame with two cells; closest approach assumed 0.8 of the radii")
        return 0.8
    return float(np.clip(np.percentile(np.concatenate(ratios), 1), 0.5, 1.0))


def fit_mask_model(masks: np.ndarray, tracks: np.ndarray | None, num_angles: int = 32,
                   num_components: int = 6, mitosis_frames: int = 2, newborn_frames: int = 2,
                   min_area: int = 20, assume_track_ids: bool = False, progress: bool = False) -> MaskModel:
    """Fit shapes, sizes, lineage and motion from a ``[T, H, W]`` label video and its CTC lineage.

    ``tracks`` are CTC rows ``(label, begin, end, parent)``. Without them
    (``None``), pass ``assume_track_ids=True`` to read each label as one
    track with no parent: no divisions are learnt and simulated cells never
    divide. Objects under ``min_area`` px and objects touching the border are
    left out of the shape and size statistics. A phase with fewer than
    ``MIN_SHAPES_PER_PHASE`` shapes borrows the interphase statistics.

    Example:
        >>> from bvdm_data.ctc import open_sequence  # doctest: +SKIP
        >>> labels = open_sequence("Fluo-N2DL-HeLa", "01", labels="GT").labels  # doctest: +SKIP
        >>> masks = np.stack([labels.read(t) for t in labels.frames])  # doctest: +SKIP
        >>> model = fit_mask_model(masks, labels.tracks)  # doctest: +SKIP
    """
    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise BVDMDataError(f"fit_mask_model needs a [T, H, W] label video, got shape {list(masks.shape)}")
    if masks.shape[0] < 2:
        raise BVDMDataError("fit_mask_model needs at least 2 frames to measure motion; got 1")
    if not np.issubdtype(masks.dtype, np.integer):
        raise BVDMDataError(f"labels must be integers, got {masks.dtype}")
    if tracks is None:
        if not assume_track_ids:
            raise BVDMDataError("no lineage given: pass the CTC track rows, or assume_track_ids=True "
                                "(--no-lineage) to read each label as one track without divisions")
        tracks = tracks_from_masks(masks)
    tracks = np.asarray(tracks, dtype=np.int64).reshape(-1, 4)

    inst = measure_instances(masks, num_angles=num_angles, progress=progress)
    unknown = np.setdiff1d(np.unique(inst.label), tracks[:, 0])
    if unknown.size:
        raise BVDMDataError(f"labels {unknown[:8].tolist()} are in the masks but not in the lineage rows")
    phase, age = instance_phases(inst, tracks, mitosis_frames, newborn_frames)
    good = (~inst.border) & (inst.area >= min_area)
    if (good & (phase == 0)).sum() < MIN_SHAPES_PER_PHASE:
        raise BVDMDataError(
            f"only {(good & (phase == 0)).sum()} whole interphase cells of at least {min_area} px "
            f"(not touching the border); need {MIN_SHAPES_PER_PHASE} to fit a shape model")

    means, comps, stds, la_mean, la_std = [], [], [], [], []
    fallbacks: list[str] = []
    for p in range(len(PHASES)):
        sel = good & (phase == p)
        if sel.sum() < MIN_SHAPES_PER_PHASE:
            fallbacks.append(f"{PHASES[p]} shapes and sizes: {int(sel.sum())} whole cells (< {MIN_SHAPES_PER_PHASE}); "
                             "interphase's used")
            sel = good & (phase == 0)
        mean, comp, std = _shape_pca(inst.radii[sel], num_components)
        means.append(mean)
        comps.append(comp)
        stds.append(std)
        log_area = np.log(inst.area[sel])
        la_mean.append(float(log_area.mean()))
        la_std.append(float(log_area.std()))
    c = min(len(s) for s in stds)
    comps = np.stack([x[:c] for x in comps])
    stds = np.maximum(np.stack([x[:c] for x in stds]), 1e-6)

    trend = good & (phase == 0) & ~np.isnan(age)
    slope = 0.0
    if trend.sum() >= 20:
        slope = float(np.polyfit(age[trend], np.log(inst.area[trend]), 1)[0])
        la_mean[0] = float(np.log(inst.area[trend]).mean() - slope * age[trend].mean() + slope * 0.5)

    cycle_lengths, cycle_probs, cycle_note = cycle_law(tracks, min_length=mitosis_frames + newborn_frames)
    if cycle_note["source"] != "Kaplan-Meier of observed cycles":
        fallbacks.append(f"cycle: {cycle_note['complete_cycles']} complete cycles; {cycle_note['source']}")
    seps, angles = _divisions(inst, tracks)
    if not seps.size:
        fallbacks.append("divisions: no measurable division; daughters placed one newborn diameter apart, "
                         "at right angles to the mother's major axis")
    rho, noise, rot_std = _motion(inst, phase == 0, fallbacks)
    persistence = _shape_persistence(inst.select(good & (phase == 0)), means[0], comps[0], stds[0], fallbacks)
    min_separation = _min_separation(inst, fallbacks)
    first_frame = inst.frame == inst.frame.min()

    stats = label_video_statistics(masks, tracks, inst=inst, min_cycle=mitosis_frames + newborn_frames)
    return MaskModel(
        shape_mean=np.stack(means),
        shape_components=comps,
        shape_std=stds,
        shape_persistence=persistence,
        log_area_mean=np.asarray(la_mean),
        log_area_std=np.asarray(la_std),
        area_slope=slope,
        cycle_lengths=cycle_lengths,
        cycle_probabilities=cycle_probs,
        division_separation=seps if seps.size else np.array([2.0 * np.sqrt(np.exp(la_mean[2]) / np.pi)]),
        division_angle=angles if angles.size else np.array([np.pi / 2]),
        mitosis_frames=int(mitosis_frames),
        newborn_frames=int(newborn_frames),
        velocity_persistence=rho,
        velocity_noise=noise,
        rotation_std=rot_std,
        density=float(first_frame.sum() / (masks.shape[1] * masks.shape[2])),
        min_separation=min_separation,
        real_statistics={**summarize(stats), "cycle_law": cycle_note, "fallbacks": fallbacks},
    )


def cells_per_frame(masks: np.ndarray) -> float:
    """Median over frames of the labelled cells in a ``[T, H, W]`` label video (border cells included)."""
    return float(np.median([len(np.unique(f)) - (0 in f) for f in masks]))


def density_of(masks: np.ndarray) -> float:
    """Median over frames of labelled cells per px^2 (border cells included: they are in view)."""
    return cells_per_frame(masks) / (masks.shape[1] * masks.shape[2])


def refit_shapes(model: MaskModel, masks: np.ndarray, num_components: int | None = None, min_area: int = 20,
                 progress: bool = False, density: bool = True, tracked: dict[str, float] | None = None,
                 inst: Instances | None = None, touching: bool | float = False) -> MaskModel:
    """Take shapes, sizes, density and spacing from a per-frame segmentation ``[T, H, W]``; keep the rest.

    The lineage, cycle and motion laws need tracks; shapes and sizes need
    only outlines, and should follow the annotation a segmenter will be
    scored against (a tracking result and a segmentation draw boundaries
    differently: on HeLa, 01_RES nuclei have a median area of ~450 px,
    02_ERR_SEG's ~600 px). Ids may be per frame. Interphase shape and size
    come from every whole cell of ``masks``; mitosis and newborn keep their
    own shapes, and their sizes move by the same log-ratio as interphase
    (the convention offset). ``density`` becomes the median cells per px^2 of
    these frames, unless ``density=False`` (a sparse segmentation that
    outlines only some cells, like the CTC's gold ``SEG`` of GOWT1: see
    :func:`labels_every_cell`), which keeps the tracks' density. The spacing
    is the closest approach seen. ``touching=True`` (with ``density``: a sparse
    segmentation cannot show which cells touch) calibrates it so that as many
    simulated cells touch another as in these frames; on HeLa that matches the
    real 0.04 of cells, and cost the real + BVDM segmenter 0.004-0.005 SEG
    (benchmarks/RESULTS.md §1). A share (``touching=0.3``) calibrates it to
    that share of simulated cells, at the segmentation's frame size (on HeLa
    0.26, six times real, scored within the runs' spread of the default).
    Given
    ``tracked`` (:func:`track_targets` of the track-id video the model was fitted on), the motion noise
    and, with ``density=False``, the density are calibrated against it in the
    same simulate-and-compare rounds as the size (see
    :func:`calibrate_by_simulation`). Tracks' measurements stay in
    ``real_statistics``; the segmentation's go to ``real_statistics["segmentation"]``. ``inst``: the
    segmentation's :func:`measure_instances` at the model's ``num_angles``, if already measured.

    Example:
        >>> model = MaskModel.load("hela")  # doctest: +SKIP
        >>> model = refit_shapes(model, segmentation_frames)  # doctest: +SKIP
    """
    if not isinstance(touching, bool) and not 0 < touching < 1:
        raise BVDMDataError(f"touching must be a share in (0, 1) or True (the segmentation's), got {touching}")
    masks = np.asarray(masks)
    if masks.ndim != 3 or not np.issubdtype(masks.dtype, np.integer):
        raise BVDMDataError(f"refit_shapes needs an integer [T, H, W] label video, got {masks.dtype} "
                            f"{list(masks.shape)}")
    if inst is None:
        inst = measure_instances(masks, num_angles=model.num_angles, progress=progress)
    elif inst.radii.shape[1] != model.num_angles:
        raise BVDMDataError(f"inst has {inst.radii.shape[1]} angles; the model {model.num_angles}")
    good = (~inst.border) & (inst.area >= min_area)
    if good.sum() < MIN_SHAPES_PER_PHASE:
        raise BVDMDataError(f"only {int(good.sum())} whole cells of at least {min_area} px in the segmentation; "
                            f"need {MIN_SHAPES_PER_PHASE} to fit shapes")
    c = model.shape_components.shape[1] if num_components is None else num_components
    mean, comp, std = _shape_pca(inst.radii[good], c)
    c = len(std)
    # Other phases keep their modes; where the segmentation has more, theirs are padded with null modes.
    other_comps = np.zeros((len(PHASES) - 1, c, model.num_angles))
    other_stds = np.full((len(PHASES) - 1, c), 1e-6)
    k = min(c, model.shape_components.shape[1])
    other_comps[:, :k] = model.shape_components[1:, :k]
    other_stds[:, :k] = model.shape_std[1:, :k]
    log_area = np.log(inst.area[good])
    # The median, not the mean: small fragments and mitotic cells give log-area a long left tail, and the
    # mean put HeLa's simulated median area 11 % under the segmentation's.
    la_mean = model.log_area_mean + float(np.median(log_area) - model.log_area_mean[0])
    la_std = model.log_area_std.copy()
    la_std[0] = float(log_area.std())
    stats = summarize(label_video_statistics(masks, per_frame_tracks(masks), inst=inst))
    refit = replace(model, shape_mean=np.concatenate([mean[None], model.shape_mean[1:]]),
                   shape_components=np.concatenate([comp[None], other_comps]),
                   shape_std=np.maximum(np.concatenate([std[None], other_stds]), 1e-6),
                   log_area_mean=la_mean, log_area_std=la_std,
                   density=density_of(masks) if density else model.density,
                   min_separation=_min_separation(inst),
                   real_statistics={**{k: v for k, v in model.real_statistics.items() if k != "segmentation"},
                                    "segmentation": stats})
    targets = dict(tracked or {})
    if density:
        targets["density"] = density_of(masks)
        if touching is True:  # only a segmentation that outlines every cell shows which cells touch
            targets["touching"] = touching_share(masks)
    if not isinstance(touching, bool):
        targets["touching"] = float(touching)
    return calibrated(refit, masks.shape[1:], area=float(np.median(inst.area[good])), **targets)


def labels_every_cell(segmentation: np.ndarray, tracked: np.ndarray, share: float = 0.8) -> bool:
    """Whether a segmentation outlines (nearly) every cell that the tracks mark in the same frames.

    ``segmentation`` and ``tracked`` are ``[T, H, W]`` label videos of the
    same frames; the segmentation counts as complete when its median cells
    per frame reach ``share`` of the tracks'. The CTC's gold ``SEG`` often
    outlines a subset only (GOWT1 01: about a tenth), so its density is not
    the scene's.

    Example:
        >>> full = np.zeros((1, 8, 8), np.int32); full[0, 1, 1], full[0, 5, 5] = 1, 2
        >>> some = full.copy(); some[some == 2] = 0
        >>> labels_every_cell(full, full), labels_every_cell(some, full)
        (True, False)
    """
    return cells_per_frame(segmentation) >= share * cells_per_frame(tracked)


def calibrate_by_simulation(model: MaskModel, size: tuple[int, int], *, area: float | None = None,
                            density: float | None = None, step: float | None = None, touching: float | None = None,
                            fields: int = 8, frames: int = 4, rounds: int = 3, seed: int = 0) -> MaskModel:
    """Move the size law, density, motion noise and spacing until simulated frames of ``size`` show the targets.

    What a frame shows is not the laws alone: cells that overlap hide each
    other, mitotic and newborn cells are smaller, outlines lose area when
    drawn on pixels, cells cut by the border count as cells, and a cell's
    centroid moves with its shape and rotation as well as its AR(1) walk.
    Each round simulates ``fields`` independent ``frames``-frame videos and
    moves, by the ratio of real to simulated, ``log_area_mean`` towards
    ``area`` (median px of whole cells), ``density`` towards ``density``
    (cells in view per px^2) and ``velocity_noise`` towards ``step`` (median
    centroid step of whole cells, px/frame). Independent fields, because one
    field's count is one draw: GOWT1's ~25 cells per 1024^2 frame vary by
    ~20 % from field to field. A target left ``None`` is not touched. The
    three interact on dense fields (fewer cells, fewer hidden pixels), so
    they move together. Then ``min_separation`` is bisected until the share
    of cells that touch another (:func:`~bvdm_data.masks.coverage.touching_share`) is ``touching``: the
    closest approach seen (the 1st percentile) lets three times as many simulated
    HeLa cells touch as in the segmentation (0.13 vs 0.04).

    Example:
        >>> model = MaskModel.load("hela")
        >>> bigger = calibrate_by_simulation(model, (256, 256), area=900.0, fields=2, frames=2, rounds=1)
        >>> bool(bigger.log_area_mean[0] > model.log_area_mean[0])
        True
    """
    h, w = (int(v) for v in size)
    for k in range(rounds):
        videos = [simulate_masks(model, frames, (h, w), seed=np.random.SeedSequence([seed, 100 + k, f]))["masks"]
                  .numpy() for f in range(fields)]
        inst = [measure_instances(v) for v in videos]
        areas = np.concatenate([i.area[~i.border] for i in inst])
        steps = np.concatenate([displacements(i) for i in inst])
        count = float(np.mean([len(i.label) / v.shape[0] for i, v in zip(inst, videos)]))
        changes = {}
        if area is not None and areas.size >= 10:
            changes["log_area_mean"] = model.log_area_mean + np.log(area / np.median(areas))
        if density is not None:
            changes["density"] = model.density * density * h * w / max(count, 1.0)
        if step is not None and steps.size >= 10:
            shown = float(np.median(steps))
            # A still model cannot be scaled: start from the Rayleigh median of a 2-D Gaussian step (1.177 sigma).
            changes["velocity_noise"] = model.velocity_noise * step / shown if shown > 0 else step / 1.1774
        if not changes:
            break
        model = replace(model, **changes)
    if touching is not None:
        model = _calibrate_spacing(model, (h, w), touching, fields, frames, seed)
    return model


def _calibrate_spacing(model: MaskModel, size: tuple[int, int], touching: float, fields: int, frames: int,
                       seed: int, rounds: int = 8) -> MaskModel:
    """Bisect ``min_separation`` in [0.5, 1.5] (fewer cells touch as it grows) on the same simulated fields."""
    def shown(separation: float) -> float:
        m = replace(model, min_separation=separation)
        return touching_share(np.stack([simulate_masks(m, frames, size, seed=np.random.SeedSequence([seed, 200, f]))
                                        ["masks"].numpy() for f in range(fields)]))

    low, high = 0.5, 1.5
    for _ in range(rounds):
        middle = (low + high) / 2
        low, high = (middle, high) if shown(middle) > touching else (low, middle)
    return replace(model, min_separation=(low + high) / 2)


def calibrated(model: MaskModel, size: tuple[int, int], **targets: float) -> MaskModel:
    """:func:`calibrate_by_simulation`, recording targets and the laws before and after in ``real_statistics``."""
    def laws(m: MaskModel) -> dict[str, float]:
        return {"log_area_mean": float(m.log_area_mean[0]), "density": m.density, "velocity_noise": m.velocity_noise,
                "min_separation": m.min_separation}

    out = calibrate_by_simulation(model, size, **targets)
    note = {"frame_size": [int(v) for v in size], "targets": targets, "before": laws(model), "after": laws(out)}
    return replace(out, real_statistics={**out.real_statistics, "calibration": note})


def calibrate_division_rate(model: MaskModel, rate: float, size: tuple[int, int] = (512, 512), frames: int = 60,
                            fields: int = 6, rounds: int = 5, seed: int = 0) -> MaskModel:
    """Let part of the not-seen-to-divide mass divide, so that simulated videos divide at ``rate`` per cell-frame.

    The Kaplan-Meier law leaves undetermined the mass of cells followed past
    the longest observed cycle without dividing (lost tracks, restarts, the
    video's end). Keeping it all as non-dividing cells undershoots the
    observed rate (HeLa 01_RES: 0.0076 vs 0.0106 divisions per cell-frame);
    spreading it all over the observed lengths overshoots. A share ``q`` of
    it is spread in proportion to the observed law, ``q`` found by bisection
    on the division rate of ``fields`` simulated ``frames``-frame videos
    (the same seeds at every ``q``). No residual mass: the model is returned as it is.

    Example:
        >>> model = calibrate_division_rate(model, 0.0106)  # doctest: +SKIP
    """
    base = model.cycle_probabilities
    residual = 1.0 - float(base.sum())
    if residual <= 1e-6 or base.sum() <= 0 or not rate > 0:
        return model
    min_cycle = model.mitosis_frames + model.newborn_frames

    def share(q: float) -> MaskModel:
        return replace(model, cycle_probabilities=base * (1 + q * residual / base.sum()))

    def simulated_rate(m: MaskModel) -> float:
        events = exposure = 0
        for f in range(fields):
            tracks = simulate_masks(m, frames, size, seed=np.random.SeedSequence([seed, 300, f]))["tracks"].numpy()
            events += divisions_in_view(tracks, frames, min_cycle)
            exposure += cell_frames(tracks)
        return events / max(exposure, 1)

    low, high = 0.0, 1.0
    rates = {low: simulated_rate(share(low))}
    if rates[low] < rate:
        rates[high] = simulated_rate(share(high))
        if rates[high] <= rate:
            low = high
        else:
            for _ in range(rounds):
                middle = (low + high) / 2
                rates[middle] = simulated_rate(share(middle))
                low, high = (middle, high) if rates[middle] < rate else (low, middle)
            # The end of the bracket whose simulated rate is closer to the target.
            low = low if abs(rates[low] - rate) <= abs(rates[high] - rate) else high
    note = {"target": rate, "share_of_residual": low, "residual": residual, "simulated": rates[low],
            "tried": {f"{q:.4f}": r for q, r in sorted(rates.items())}}
    return replace(share(low), real_statistics={**model.real_statistics, "division_calibration": note})


def track_targets(masks: np.ndarray, inst: Instances | None = None) -> dict[str, float]:
    """What a tracked ``[T, H, W]`` video (ids = track ids) shows: cells in view per px^2 and the median step.

    Targets of :func:`calibrate_by_simulation` for the laws that come from
    tracks; ``step`` (median centroid step of whole cells, px/frame) is left
    out when fewer than 10 steps are seen. Pass ``inst`` (:func:`measure_instances`
    of ``masks``) when it is at hand.

    Example:
        >>> video = np.zeros((2, 32, 32), np.int32); video[:, 10:14, 10:14] = 1
        >>> track_targets(video)["density"] == 1 / 32 ** 2
        True
    """
    masks = np.asarray(masks)
    out = {"density": density_of(masks)}
    steps = displacements(measure_instances(masks) if inst is None else inst)
    if steps.size >= 10:
        out["step"] = float(np.median(steps))
    return out


def per_frame_tracks(masks: np.ndarray) -> np.ndarray:
    """Lineage rows for a per-frame segmentation: every (frame, label) its own one-frame track."""
    rows = []
    for t, frame in enumerate(masks):
        for label in np.unique(frame[frame > 0]):
            rows.append((int(label), t, t, 0))
    return np.asarray(rows, dtype=np.int64).reshape(-1, 4)


CROP_MULTIPLE = 16   # texture U-Net and flow net both take multiples of 16
CROP_MARGIN = 20     # px beyond a large cell: the measured edge reaches 6 px each side, plus motion between frames


def crop_size_for(model: MaskModel, minimum: int = 64) -> int:
    """Texture and flow crop size for cells of this model: a large (95th percentile) interphase cell plus margin.

    Crops that cut a cell teach the texture model cut cells, and cells that do
    not fit are skipped when crops are extracted. HeLa (median 600 px) gets 64,
    GOWT1 (median ~2 850 px) 112.

    Example:
        >>> crop_size_for(MaskModel.load("hela"))
        64
    """
    area = float(np.exp(model.log_area_mean[0] + 1.645 * model.log_area_std[0]))
    diameter = 2 * np.sqrt(area / np.pi)
    return max(minimum, int(np.ceil((diameter + CROP_MARGIN) / CROP_MULTIPLE)) * CROP_MULTIPLE)
