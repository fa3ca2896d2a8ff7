"""Flicker: zero for a still cell, larger for noisier textures, the same with ids or overlap matching."""

from __future__ import annotations

import numpy as np

from bvdm_data.ctc import open_sequence
from bvdm_data.evaluate import flicker, match_by_overlap


def moving_cell(noise: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    texture = 0.5 + 0.1 * rng.standard_normal((12, 12))
    video = np.zeros((4, 1, 48, 48))
    masks = np.zeros((4, 48, 48), dtype=np.int32)
    for t in range(4):
        y, x = 10 + 2 * t, 12 + 3 * t  # the cell moves; its texture moves with it
        video[t, 0, y:y + 12, x:x + 12] = texture + noise * rng.standard_normal((12, 12))
        masks[t, y:y + 12, x:x + 12] = 5
    return video, masks


def test_motion_is_compensated_and_noise_shows():
    still, m = moving_cell(0.0)
    assert flicker(still, m) < 1e-9
    noisy, m = moving_cell(0.05)
    assert 0.03 < flicker(noisy, m) < 0.08
    relabelled = m.copy()
    relabelled[1::2][relabelled[1::2] > 0] = 9  # per-frame ids: matched by overlap instead
    assert abs(flicker(noisy, relabelled, same_ids=False) - flicker(noisy, m)) < 1e-9


def test_match_by_overlap_on_real_segmentation(hela_root):
    labels = open_sequence(hela_root, "02", labels="ERR_SEG").labels
    a, b = labels.read(0), labels.read(1)
    pairs = match_by_overlap(a, b)
    assert len(pairs) > 0.7 * (len(np.unique(a)) - 1)
    assert len({p[0] for p in pairs}) == len(pairs) and len({p[1] for p in pairs}) == len(pairs)


def test_cli_evaluate_realism_prints_both_tables(tiny_bundle, hela_root, capsys):
    from bvdm_data.cli import main

    args = ["evaluate-realism", "--bundle", str(tiny_bundle), "--ctc", str(hela_root), "--seq", "02",
            "--annotation", "ERR_SEG", "--held-out", "3:4", "--cells", "8", "--t-s", "5", "--t-f", "1",
            "--clips", "1", "--frames", "3", "--size", "64", "48", "--density", "3e-4", "--resamples", "6"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "real vs real (floor)" in out and "flat baseline" in out and "BVDM t_s=5" in out
    header = next(line for line in out.splitlines() if line.startswith("| setting | intensity"))
    assert "frechet_95" in header and "frechet_beats_flat" in header
    assert "independent frames" in out and "real (4 frames)" in out
