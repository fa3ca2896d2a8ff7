"""CTC reading and writing: exact round trips, lazy access, atomic writes."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import torch

from bvdm_data.ctc import (
    FrameFolder,
    open_sequence,
    read_track_file,
    validate_path,
    write_ctc_result,
    write_ctc_sequence,
    write_track_file,
)
from bvdm_data.ctc.validate import errors_only
from bvdm_data.errors import BVDMDataError, ClipError, CTCFormatError


def test_track_file_round_trip(tmp_path):
    rows = np.array([[3, 5, 9, 1], [1, 0, 4, 0], [2, 0, 9, 0]])
    write_track_file(tmp_path / "man_track.txt", rows)
    back = read_track_file(tmp_path / "man_track.txt")
    assert back.dtype == np.int64
    assert back.tolist() == sorted(rows.tolist())


@pytest.mark.parametrize("text, reason", [("1 0 4\n", "expected 4 integers"), ("1 0 x 0\n", "not an integer"),
                                          ("1 0 4 -1\n", "negative value")])
def test_track_file_errors_name_file_and_line(tmp_path, text, reason):
    path = tmp_path / "res_track.txt"
    path.write_text("7 0 1 0\n" + text)
    with pytest.raises(CTCFormatError, match=f"res_track.txt: line 2: {reason}"):
        read_track_file(path)


def test_sequence_round_trip_is_exact(tmp_path, real_clip):
    write_ctc_sequence(real_clip, tmp_path, "01")
    seq = open_sequence(tmp_path, "01", labels="GT")
    masks = np.stack([seq.labels.read(t) for t in seq.labels.frames])
    assert np.array_equal(masks, real_clip["masks"].numpy())
    assert np.array_equal(seq.labels.tracks, real_clip["tracks"].numpy())
    images = np.stack([seq.images.read(t) for t in seq.images.frames])
    assert images.dtype == np.uint16
    assert np.abs(images / 65535.0 - real_clip["video"][:, 0].numpy()).max() <= 0.5 / 65535 + 1e-7
    assert seq.seg is not None and len(seq.seg) == len(seq)
    assert errors_only(validate_path(tmp_path)) == []


def test_result_round_trip(tmp_path, real_clip):
    folder = write_ctc_result(real_clip["masks"], real_clip["tracks"], tmp_path / "01_RES")
    labels = FrameFolder(folder)
    assert labels.kind.name == "res"
    assert np.array_equal(np.stack([labels.read(t) for t in labels.frames]), real_clip["masks"].numpy())
    assert errors_only(validate_path(folder)) == []


def test_writer_checks_the_clip_first(tmp_path, real_clip):
    bad = dict(real_clip, tracks=real_clip["tracks"][1:])
    with pytest.raises(ClipError):
        write_ctc_sequence(bad, tmp_path, "01")
    assert not any(tmp_path.iterdir())


def test_writer_refuses_to_overwrite(tmp_path, real_clip):
    write_ctc_sequence(real_clip, tmp_path, "01")
    with pytest.raises(BVDMDataError, match="already exists.*overwrite"):
        write_ctc_sequence(real_clip, tmp_path, "01")
    write_ctc_sequence(real_clip, tmp_path, "01", overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["01", "01_GT"]


def test_interrupted_write_leaves_nothing(tmp_path, real_clip, monkeypatch):
    calls = {"n": 0}
    real_write = tifffile.imwrite

    def failing_write(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:
            raise OSError("disk full")
        return real_write(*args, **kwargs)

    monkeypatch.setattr(tifffile, "imwrite", failing_write)
    with pytest.raises(OSError, match="disk full"):
        write_ctc_sequence(real_clip, tmp_path, "01")
    assert list(tmp_path.iterdir()) == []


def test_reading_is_lazy(hela_root, monkeypatch):
    import bvdm_data.ctc.sequence as sequence

    reads = []
    monkeypatch.setattr(sequence, "read_tiff", lambda path: reads.append(path) or tifffile.imread(path))
    seq = open_sequence(hela_root, "02", labels="ERR_SEG")
    assert len(seq) == 4 and seq.images.shape == (256, 256) and reads == []
    seq.images.read(2)
    assert [p.name for p in reads] == ["t002.tif"]
    with pytest.raises(CTCFormatError, match="has no frame 9"):
        seq.images.read(9)


def test_open_sequence_errors(tmp_path, hela_root):
    with pytest.raises(CTCFormatError, match="no such dataset folder"):
        open_sequence(tmp_path / "nothing", "01")
    with pytest.raises(CTCFormatError, match="02_GT.*no such label folder.*02_ERR_SEG"):
        open_sequence(hela_root, "02", labels="GT")


def test_four_digit_frames_and_float_video_written(tmp_path):
    masks = torch.zeros(1001, 4, 4, dtype=torch.int32)
    clip = {"video": torch.rand(1001, 1, 4, 4), "masks": masks, "tracks": torch.zeros(0, 4, dtype=torch.int64),
            "meta": {}}
    write_ctc_sequence(clip, tmp_path, "01")
    assert (tmp_path / "01" / "t1000.tif").is_file()
    assert (tmp_path / "01_GT" / "TRA" / "man_track0000.tif").is_file()
    assert len(open_sequence(tmp_path, "01")) == 1001


def test_frames_are_written_in_the_given_units(tmp_path, real_clip):
    from bvdm_data.ctc import open_sequence, write_ctc_sequence

    write_ctc_sequence(real_clip, tmp_path, "01", intensity_range=(20.0, 220.0), dtype="uint8")
    frame = open_sequence(tmp_path, "01").images.read(0)
    expected = np.round(20 + real_clip["video"][0, 0].numpy() * 200).astype(np.uint8)
    assert frame.dtype == np.uint8 and np.array_equal(frame, expected)
