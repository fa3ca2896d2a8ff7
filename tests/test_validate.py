"""Every validator rule, hit by a planted error in an otherwise clean CTC folder."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import tifffile

from bvdm_data.cli import main
from bvdm_data.ctc import read_track_file, validate_path, write_ctc_sequence, write_track_file
from bvdm_data.ctc.validate import ERROR, NOTE


@pytest.fixture()
def dataset(tmp_path, real_clip):
    write_ctc_sequence(real_clip, tmp_path, "01")
    return tmp_path


def tra(root, t):
    return root / "01_GT" / "TRA" / f"man_track{t:03d}.tif"


def edit_tracks(root, fn):
    path = root / "01_GT" / "TRA" / "man_track.txt"
    write_track_file(path, fn(read_track_file(path)))


def edit_frame(path, fn):
    tifffile.imwrite(path, fn(tifffile.imread(path)))


def a_long_track(root, min_len=3):
    rows = read_track_file(root / "01_GT" / "TRA" / "man_track.txt")
    return next(r for r in rows.tolist() if r[2] - r[1] + 1 >= min_len and r[3] == 0)


def rules(problems, severity=ERROR):
    return {p.rule for p in problems if p.severity == severity}


def only(problems, rule):
    hits = [p for p in problems if p.rule == rule]
    assert hits, f"no problem with rule {rule!r} in {[str(p) for p in problems]}"
    return hits[0]


def test_clean_dataset_has_no_errors(dataset):
    assert rules(validate_path(dataset)) == set()


def test_frame_numbering_gap(dataset):
    (dataset / "01" / "t003.tif").unlink()
    tra(dataset, 3).unlink()
    p = only(validate_path(dataset), "frame numbering gap")
    assert p.frame == 3 and "frames 3 are missing" in p.message and p.file.endswith("01")


def test_image_and_mask_shape_mismatch(dataset):
    for t in range(10):
        edit_frame(tra(dataset, t), lambda a: np.pad(a, ((0, 2), (0, 0))))
    p = only(validate_path(dataset), "image and mask shapes agree")
    assert "[130, 160]" in p.message and "[128, 160]" in p.message


def test_shape_change_within_folder(dataset):
    edit_frame(dataset / "01" / "t004.tif", lambda a: a[:-1])
    p = only(validate_path(dataset), "same shape")
    assert p.frame == 4 and p.file.endswith("t004.tif")


def test_dtype_change_within_folder(dataset):
    edit_frame(dataset / "01" / "t002.tif", lambda a: (a // 256).astype(np.uint8))
    assert only(validate_path(dataset), "same dtype").frame == 2


def test_float_labels(dataset):
    edit_frame(tra(dataset, 1), lambda a: a.astype(np.float32))
    p = only(validate_path(dataset), "integer labels")
    assert p.frame == 1 and "float32" in p.message


def test_negative_labels(dataset):
    edit_frame(tra(dataset, 1), lambda a: np.where(a == 0, -1, a.astype(np.int32)))
    assert only(validate_path(dataset), "non-negative labels").frame == 1


def test_label_missing_from_track_file(dataset):
    edit_frame(tra(dataset, 2), lambda a: np.where(np.arange(a.shape[1])[None] < 3, 500, a).astype(a.dtype))
    p = only(validate_path(dataset), "label in lineage file")
    assert p.label == 500 and p.frame == 2 and "man_track.txt" in p.message


def test_track_missing_from_masks(dataset):
    edit_tracks(dataset, lambda r: np.vstack([r, [[77, 1, 2, 0]]]))
    p = only(validate_path(dataset), "track in masks")
    assert p.label == 77 and "never appears" in p.message


def test_track_absent_inside_its_span(dataset):
    label, begin, end, _ = a_long_track(dataset)
    edit_frame(tra(dataset, begin + 1), lambda a: np.where(a == label, 0, a).astype(a.dtype))
    p = only(validate_path(dataset), "present from begin to end")
    assert p.label == label and p.frame == begin + 1 and "absent" in p.message


def test_label_outside_its_span(dataset):
    label, begin, end, _ = a_long_track(dataset)
    edit_tracks(dataset, lambda r: np.where((r[:, :1] == label) & (np.arange(4) == 2), end - 1, r))
    p = only(validate_path(dataset), "present from begin to end")
    assert p.label == label and p.frame == end and "outside its span" in p.message


def test_unknown_parent(dataset):
    label = a_long_track(dataset)[0]
    edit_tracks(dataset, lambda r: np.where((r[:, :1] == label) & (np.arange(4) == 3), 4242, r))
    p = only(validate_path(dataset), "parent known")
    assert p.label == label and "4242" in p.message


def test_child_begins_before_parent_ends(dataset):
    rows = read_track_file(dataset / "01_GT" / "TRA" / "man_track.txt")
    child = rows[rows[:, 3] > 0][0]
    parent = int(child[3])
    edit_tracks(dataset, lambda r: np.where((r[:, :1] == parent) & (np.arange(4) == 2), child[1], r))
    problems = validate_path(dataset)
    p = only(problems, "child after parent")
    assert p.label == int(child[0]) and f"parent {parent}" in p.message


def test_duplicate_ids(dataset):
    edit_tracks(dataset, lambda r: np.vstack([r, r[:1]]))
    p = only(validate_path(dataset), "unique labels")
    assert p.label == int(read_track_file(dataset / "01_GT" / "TRA" / "man_track.txt")[0, 0])


@pytest.mark.parametrize("line, rule", [("5 1 2", "malformed line"), ("5 1 two 0", "malformed line"),
                                        ("5 -1 2 0", "malformed line")])
def test_malformed_lines(dataset, line, rule):
    path = dataset / "01_GT" / "TRA" / "man_track.txt"
    path.write_text(path.read_text() + line + "\n")
    p = only(validate_path(dataset), rule)
    assert p.file.endswith(f"man_track.txt:{len(path.read_text().splitlines())}")


def test_unreadable_file(dataset):
    (dataset / "01" / "t005.tif").write_bytes(b"this is not a tiff")
    p = only(validate_path(dataset), "readable file")
    assert p.frame == 5 and p.file.endswith("t005.tif")


def test_duplicate_frame_number(dataset):
    (dataset / "01" / "t0002.tif").write_bytes((dataset / "01" / "t002.tif").read_bytes())
    assert "t0002.tif" in only(validate_path(dataset), "duplicate frame number").message


def test_missing_lineage_file(dataset):
    (dataset / "01_GT" / "TRA" / "man_track.txt").unlink()
    assert only(validate_path(dataset), "lineage file present").severity == ERROR


def test_empty_frames_and_gaps_before_children_are_legal(tmp_path):
    masks = np.zeros((5, 8, 8), np.int32)
    masks[0, :2, :2] = 1
    masks[3:, 5:, 5:] = 2  # child of 1 after a gap of two empty frames
    import torch

    clip = {"video": torch.zeros(5, 1, 8, 8), "masks": torch.from_numpy(masks),
            "tracks": torch.tensor([[1, 0, 0, 0], [2, 3, 4, 1]]), "meta": {}}
    write_ctc_sequence(clip, tmp_path, "01")
    problems = validate_path(tmp_path)
    assert rules(problems) == set()
    assert {"empty frame", "gap before child"} <= rules(problems, NOTE)


def test_validate_accepts_every_folder_level(dataset):
    for sub in ["01", "01_GT", "01_GT/TRA", "01_GT/SEG"]:
        assert rules(validate_path(dataset / sub)) == set(), sub


def test_not_a_ctc_folder(tmp_path):
    assert only(validate_path(tmp_path), "frames present")
    assert only(validate_path(tmp_path / "missing"), "path exists")


def test_cli_validate_exit_codes(dataset, capsys):
    assert main(["validate", str(dataset)]) == 0
    assert "OK" in capsys.readouterr().out
    edit_tracks(dataset, lambda r: np.vstack([r, [[77, 1, 2, 0]]]))
    assert main(["validate", str(dataset)]) == 1
    out = capsys.readouterr().out
    assert "label 77" in out and "[track in masks]" in out and "1 error(s), 2 note(s)" in out.splitlines()[-1]


def test_cli_never_shows_a_traceback(tmp_path):
    (tmp_path / "01").mkdir()
    (tmp_path / "01" / "t000.tif").write_bytes(b"garbage")
    for args in (["validate", str(tmp_path)], ["info", str(tmp_path)], ["info", "no-such-bundle"]):
        run = subprocess.run([sys.executable, "-m", "bvdm_data", *args], capture_output=True, text=True)
        assert run.returncode in (1, 2), args
        assert "Traceback" not in run.stderr + run.stdout, args
        assert "t000.tif" in run.stdout + run.stderr or "no-such-bundle" in run.stderr


def test_a_cut_short_tiff_is_one_unreadable_line(tmp_path, hela_root, capsys):
    import shutil

    from bvdm_data import CTCClips
    from bvdm_data.cli import main
    from bvdm_data.errors import CTCFormatError

    for folder in ("02", "02_ERR_SEG"):
        shutil.copytree(hela_root / folder, tmp_path / folder)
    frame = tmp_path / "02" / "t001.tif"
    frame.write_bytes(frame.read_bytes()[:8])  # tifffile only logs about this one and returns an empty array
    assert main(["validate", str(tmp_path)]) != 0
    out = capsys.readouterr()
    lines = [line for line in (out.out + out.err).splitlines() if line.strip()]
    assert any("t001.tif" in line and "unreadable TIFF" in line for line in lines)
    assert not any("shape [0]" in line or "tifffile" in line.split(":")[0] for line in lines)
    with pytest.raises(CTCFormatError, match="t001.tif: unreadable TIFF"):  # when it normalises, or at the latest
        clips = CTCClips(tmp_path, ["02"], labels="ERR_SEG", per_frame_ids=True, clip_len=1)
        clips[1]
