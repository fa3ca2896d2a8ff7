"""CTC metrics: ground truth scores 1 against itself; planted errors lower the right score."""

from __future__ import annotations

import sys

import numpy as np
import pytest


from bvdm_data.cli import main
from bvdm_data.ctc import write_ctc_result, write_ctc_sequence
from bvdm_data.errors import BVDMDataError
from bvdm_data.evaluate import evaluate_ctc
from scipy import ndimage


@pytest.fixture()
def gt(tmp_path, real_clip):
    write_ctc_sequence(real_clip, tmp_path, "01")
    return tmp_path


def test_ground_truth_against_itself_scores_one(gt, real_clip):
    write_ctc_result(real_clip["masks"], real_clip["tracks"], gt / "01_RES")
    scores = evaluate_ctc(gt / "01_RES", gt / "01_GT")
    assert scores == pytest.approx({"SEG": 1.0, "DET": 1.0, "TRA": 1.0})


def test_eroded_masks_lower_seg(gt, real_clip):
    from bvdm_data.clip import relabel_tracks

    masks = real_clip["masks"].numpy()
    eroded = np.stack([np.where(ndimage.binary_erosion(m > 0, iterations=2), m, 0) for m in masks])
    new, tracks = relabel_tracks(eroded, {int(l): int(p) for l, _, _, p in real_clip["tracks"].tolist()})
    write_ctc_result(new, tracks, gt / "01_RES")
    scores = evaluate_ctc(gt / "01_RES", gt / "01_GT")
    assert scores["SEG"] < 0.85 and scores["DET"] > scores["SEG"]


def test_invalid_result_is_named(gt, real_clip):
    masks = real_clip["masks"].numpy().copy()
    masks[3][masks[3] == int(real_clip["tracks"][0, 0])] = 0  # a hole in a track: not a valid CTC result
    write_ctc_result(masks, real_clip["tracks"], gt / "01_RES")
    with pytest.raises(BVDMDataError, match="01_RES: frame 3: label 1: \\[present from begin to end\\]"):
        evaluate_ctc(gt / "01_RES", gt / "01_GT")


def test_missed_cells_lower_det_and_tra(gt, real_clip):
    from bvdm_data.clip import relabel_tracks

    masks = real_clip["masks"].numpy().copy()
    parents = {int(l): int(p) for l, _, _, p in real_clip["tracks"].tolist()}
    for label in list(parents)[:4]:
        masks[masks == label] = 0  # four whole tracks missed
    new, tracks = relabel_tracks(masks, parents)
    write_ctc_result(new, tracks, gt / "01_RES")
    scores = evaluate_ctc(gt / "01_RES", gt / "01_GT")
    assert scores["DET"] < 0.95 and scores["TRA"] < 0.95


def test_error_counts_name_what_det_counts(gt, real_clip):
    from bvdm_data.clip import relabel_tracks

    masks = real_clip["masks"].numpy().copy()
    parents = {int(l): int(p) for l, _, _, p in real_clip["tracks"].tolist()}
    gone = list(parents)[0]
    missed_frames = int(sum((m == gone).any() for m in masks))
    masks[masks == gone] = 0  # one whole track missed
    free = np.argwhere(masks[2] == 0)
    y, x = free[len(free) // 2]
    spot = np.zeros_like(masks[2], bool)
    spot[max(0, y - 3):y + 4, max(0, x - 3):x + 4] = True
    masks[2][spot & (masks[2] == 0)] = masks.max() + 1  # one object where no cell is, in one frame
    new, tracks = relabel_tracks(masks, {**parents, int(masks.max()): 0})
    write_ctc_result(new, tracks, gt / "01_RES")
    scores = evaluate_ctc(gt / "01_RES", gt / "01_GT", ["DET"], errors=True)
    assert set(scores) == {"DET", "false_positives", "misses", "splits"}
    assert scores["false_positives"] == 1 and scores["misses"] == missed_frames and scores["splits"] == 0
    empty = np.zeros_like(masks)
    write_ctc_result(empty, np.zeros((0, 4), np.int64), gt / "01_RES", overwrite=True)
    markers = sum(len(np.unique(m)) - 1 for m in real_clip["masks"].numpy())
    assert evaluate_ctc(gt / "01_RES", gt / "01_GT", ["DET"], errors=True) == {
        "DET": 0.0, "false_positives": 0.0, "misses": markers, "splits": 0.0}


def test_a_result_with_no_object_scores_zero(gt, real_clip):
    # A segmenter that finds nothing anywhere (it happens: one real frame of training data on another video).
    empty = np.zeros_like(real_clip["masks"].numpy())
    write_ctc_result(empty, np.zeros((0, 4), np.int64), gt / "01_RES")
    assert evaluate_ctc(gt / "01_RES", gt / "01_GT") == {"SEG": 0.0, "DET": 0.0, "TRA": 0.0}


def test_cli_and_errors(gt, real_clip, capsys, monkeypatch):
    write_ctc_result(real_clip["masks"], real_clip["tracks"], gt / "01_RES")
    assert main(["evaluate", "--res", str(gt / "01_RES"), "--gt", str(gt / "01_GT"), "--metrics", "DET"]) == 0
    assert capsys.readouterr().out.strip() == "DET 1.0000"
    assert main(["evaluate", "--res", str(gt / "01_RES"), "--gt", str(gt / "01_GT"), "--metrics", "DET",
                 "--errors"]) == 0
    assert capsys.readouterr().out.strip() == "DET 1.0000 false_positives 0 misses 0 splits 0"
    with pytest.raises(BVDMDataError, match="no such result folder"):
        evaluate_ctc(gt / "missing", gt / "01_GT")
    with pytest.raises(BVDMDataError, match="unknown metrics"):
        evaluate_ctc(gt / "01_RES", gt / "01_GT", ["FOO"])
    monkeypatch.setitem(sys.modules, "ctc_metrics", None)
    with pytest.raises(BVDMDataError, match=r"\[eval\] extra"):
        evaluate_ctc(gt / "01_RES", gt / "01_GT")



def test_gt_without_seg_scores_what_it_can(gt, real_clip):
    import shutil

    write_ctc_result(real_clip["masks"], real_clip["tracks"], gt / "01_RES")
    shutil.rmtree(gt / "01_GT" / "SEG")
    with pytest.warns(UserWarning, match="no SEG folder, SEG skipped"):
        scores = evaluate_ctc(gt / "01_RES", gt / "01_GT")
    assert set(scores) == {"DET", "TRA"} and scores["TRA"] == pytest.approx(1.0)


@pytest.mark.parametrize("damage, message", [
    ("drop_mask", "frames 4 are missing"),
    ("drop_last", "no mask for ground-truth frame"),
    ("empty", "01_RES"),
    ("no_track_file", "res_track.txt"),
    ("bad_line", "res_track.txt"),
    ("float_mask", "mask001.tif"),
    ("wrong_shape", "mask002.tif"),
])
def test_damaged_results_are_named_before_scoring(gt, real_clip, damage, message, capsys):
    import tifffile

    res = gt / "01_RES"
    write_ctc_result(real_clip["masks"], real_clip["tracks"], res)
    if damage == "drop_mask":
        (res / "mask004.tif").unlink()
    elif damage == "drop_last":
        (res / "mask009.tif").unlink()
        rows = [r for r in real_clip["tracks"].tolist() if r[1] <= 8]
        (res / "res_track.txt").write_text("".join(f"{l} {b} {min(e, 8)} {p}\n" for l, b, e, p in rows))
    elif damage == "empty":
        for f in res.iterdir():
            f.unlink()
    elif damage == "no_track_file":
        (res / "res_track.txt").unlink()
    elif damage == "bad_line":
        (res / "res_track.txt").write_text("1 0 x 0\n")
    elif damage == "wrong_shape":
        tifffile.imwrite(res / "mask002.tif", real_clip["masks"][2].numpy()[:20, :20])
    elif damage == "float_mask":
        tifffile.imwrite(res / "mask001.tif", real_clip["masks"][1].numpy().astype(np.float32))
    with pytest.raises(BVDMDataError, match=message):
        evaluate_ctc(res, gt / "01_GT")
    assert main(["evaluate", "--res", str(res), "--gt", str(gt / "01_GT")]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
