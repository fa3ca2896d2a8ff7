"""Sparse outlines completed by markers (GOWT1's gold SEG + TRA): the labels that edge statistics are measured on."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from bvdm_data.ctc import open_sequence
from bvdm_data.ctc.outlines import OutlinedLabels, grow_labels, marker_rim, with_outlines
from bvdm_data.diffusion.crops import extract_cell_crops
from bvdm_data.errors import CTCFormatError

RADIUS, MARKER = 14, 10  # nucleus and marker radii: markers cover ~half a nucleus, like GOWT1's TRA


def gowt1_like(root, frames=3, size=160, outlined=2, seed=0):
    """A CTC dataset whose TRA marks every nucleus with a small disc and whose SEG outlines a few per frame."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    centres = [(40, 40), (40, 120), (120, 40), (120, 120), (80, 80)]
    for sub in ("01", "01_GT/TRA", "01_GT/SEG"):
        (root / sub).mkdir(parents=True)
    rows = []
    for t in range(frames):
        image = rng.normal(10, 2, (size, size))
        tra = np.zeros((size, size), np.uint16)
        seg = np.zeros((size, size), np.uint16)
        for k, (cy, cx) in enumerate(centres, start=1):
            d = np.hypot(yy - cy - t, xx - cx)
            image += 100 / (1 + np.exp(d - RADIUS))  # a bright disc with a soft edge at RADIUS
            tra[d <= MARKER] = k
            if k <= outlined:
                seg[d <= RADIUS] = 10 * k  # SEG ids are per frame, not track ids
        tifffile.imwrite(root / "01" / f"t{t:03d}.tif", np.clip(image, 0, 255).astype(np.uint8))
        tifffile.imwrite(root / "01_GT/TRA" / f"man_track{t:03d}.tif", tra)
        if t != 1:  # SEG covers some frames only
            tifffile.imwrite(root / "01_GT/SEG" / f"man_seg{t:03d}.tif", seg)
    rows = [(k, 0, frames - 1, 0) for k in range(1, len(centres) + 1)]
    (root / "01_GT/TRA/man_track.txt").write_text("".join(" ".join(map(str, r)) + "\n" for r in rows))
    return root


def test_grow_labels_gives_each_pixel_to_its_nearest_label():
    f = np.zeros((5, 11), np.int32)
    f[2, 2], f[2, 8] = 1, 2
    grown = grow_labels(f, 2.0)
    assert grown[2, 0] == 1 and grown[2, 10] == 2 and grown[2, 5] == 0  # the middle is 3 px from both
    assert (grown[f > 0] == f[f > 0]).all()
    assert np.array_equal(grow_labels(f, 0), f)


def test_outlined_labels_keep_outlines_and_mask_the_other_cells(tmp_path):
    root = gowt1_like(tmp_path)
    labels = OutlinedLabels(root / "01_GT/SEG", root / "01_GT/TRA")
    assert labels.frames == [0, 2]  # frames with both outlines and markers
    assert labels.rim_px == pytest.approx(RADIUS - MARKER, abs=1.0)
    frame = labels.read(0)
    n = labels.last_outlined(0)
    assert n == 2 and frame.max() == 5
    # Outlines are kept as drawn; each of the three cells without one is its marker grown by the rim.
    seg = tifffile.imread(root / "01_GT/SEG/man_seg000.tif")
    assert np.array_equal(frame[:, :][frame <= n] > 0, seg[frame <= n] > 0)
    areas = np.bincount(frame.ravel())[n + 1:]
    assert len(areas) == 3 and np.allclose(areas, np.pi * RADIUS ** 2, rtol=0.15)
    with pytest.raises(CTCFormatError, match="frame 1"):
        labels.read(1)


def test_with_outlines_completes_the_markers_of_a_sequence(tmp_path):
    root = gowt1_like(tmp_path)
    seq = with_outlines(open_sequence(root, "01", labels="GT"), root / "01_GT/SEG")
    assert isinstance(seq.labels, OutlinedLabels) and seq.labels.frames == [0, 2] and seq.images.frames == [0, 1, 2]
    with pytest.raises(CTCFormatError, match="without labels"):
        with_outlines(open_sequence(root, "01", labels=None), root / "01_GT/SEG")


def test_marker_rim_measures_how_far_outlines_reach_beyond_markers():
    yy, xx = np.mgrid[:64, :64]
    d = np.hypot(yy - 32, xx - 32)
    rim = marker_rim((d <= 20).astype(np.int32), (d <= 12).astype(np.int32))
    assert rim == pytest.approx([8.0], abs=0.3)


def test_crops_and_edge_statistics_follow_the_outlines_not_the_markers(tmp_path):
    root = gowt1_like(tmp_path)
    seq = open_sequence(root, "01", labels="GT")
    by_markers = extract_cell_crops(seq, size=48)
    outlined = extract_cell_crops(with_outlines(seq, root / "01_GT/SEG"), size=48, intensity=by_markers.intensity_range)
    assert len(by_markers) == 5 * 3 and len(outlined) == 2 * 2  # two outlined cells in two frames
    assert outlined.masks.sum((1, 2)).float().mean() == pytest.approx(np.pi * RADIUS ** 2, rel=0.1)
    # Inside a marker the nucleus is uniformly bright; the outline includes the soft edge, so its mean is lower,
    # and the background is not lifted by the rims of cells that have only a marker.
    assert outlined.statistics()["cell_mean"] < by_markers.statistics()["cell_mean"]
    assert outlined.statistics()["background_mean"] <= by_markers.statistics()["background_mean"]


def test_fit_measures_edges_on_the_gold_outlines_when_tra_only_marks_cells(tmp_path, capsys):
    """`fit` on GOWT1-style data: shapes and edge statistics from the sparse gold SEG, lineage from TRA."""
    import json

    from bvdm_data.cli import main

    root = gowt1_like(tmp_path / "ds", frames=12, outlined=3)
    out = tmp_path / "bundle"
    assert main(["fit", "--ctc", str(root), "--seq", "01", "--out", str(out), "--texture-iterations", "2",
                 "--flow-iterations", "2"]) == 0
    text = capsys.readouterr().out
    assert "shapes and sizes from" in text and "cells' edges from" in text and "markers grown by" in text
    source = json.loads((out / "manifest.json").read_text())["parts"]["texture"]["provenance"]["statistics_from"]
    # 3 outlined cells in 11 SEG frames, but the third drifts out of a whole 64-px crop after frame 8.
    assert "OutlinedLabels" in source["labels"] and source["crops"] == 11 + 11 + 8
    # The shape law's sizes are the outlines', not the markers' (a marker covers half a nucleus here).
    from bvdm_data.masks import MaskModel

    area = MaskModel.load(out).real_statistics["segmentation"]["area"]["median"]
    assert area == pytest.approx(np.pi * RADIUS ** 2, rel=0.1)
