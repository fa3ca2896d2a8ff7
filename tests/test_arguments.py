"""Bad arguments get one clear line at construction time (issue 14), in Python and on the command line."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from bvdm_data import BVDMStream, MixedStream
from bvdm_data.arguments import as_device, as_int, as_size
from bvdm_data.cli import main
from bvdm_data.clip import check_clip
from bvdm_data.errors import ArgumentError, BVDMDataError, ClipError


@pytest.mark.parametrize("kwargs, message", [
    ({"seed": -1}, "seed must be at least 0"),
    ({"seed": 1.5}, "seed must be an integer"),
    ({"clip_len": 2.5}, "clip_len must be an integer"),
    ({"clip_len": 0}, "clip_len must be at least 1"),
    ({"size": (64.7, 64.2)}, "size H must be an integer"),
    ({"size": (64, 64, 1)}, "size must be an int or"),
    ({"density": math.nan}, "density must be a finite"),
    ({"density": math.inf}, "density must be a finite"),
    ({"density": 1.0}, "does not fit"),
    ({"gen_batch": 0}, "gen_batch must be at least 1"),
])
def test_stream_refuses_bad_arguments_when_built(kwargs, message):
    with pytest.raises(ArgumentError, match=message):
        BVDMStream("hela", **kwargs)


def test_stream_accepts_an_int_size_as_a_square_and_integral_floats():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stream = BVDMStream("hela", size=64, clip_len=2.0)
    assert stream.size == (64, 64) and stream.clip_len == 2


def test_stream_warns_when_frames_would_be_mostly_empty():
    with pytest.warns(UserWarning, match="of clips will start empty"):
        BVDMStream("hela", size=(48, 48))


def test_epochs_and_states_are_checked():
    stream = BVDMStream("hela", size=(128, 128))
    with pytest.raises(ArgumentError, match="epoch must be at least 0"):
        stream.set_epoch(-1)
    with pytest.raises(ArgumentError, match="lacks \\['epoch', 'yielded'\\]"):
        stream.load_state_dict({})
    stream.load_state_dict({"epoch": 2, "yielded": 3})
    assert stream.epoch == 2


def test_mixed_stream_names_a_missing_source():
    with pytest.raises(ValueError, match="the real source must be a dataset"):
        MixedStream(real=None, synthetic=BVDMStream("hela", size=(128, 128)))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_without_a_gpu_is_one_line():
    with pytest.raises(ArgumentError, match="no CUDA device is available"):
        as_device("cuda")
    with pytest.raises(ArgumentError, match="no CUDA device is available"):
        BVDMStream("hela", device="cuda")


def test_helpers():
    assert as_int("n", 3.0) == 3 and as_size((5, 6)) == (5, 6)
    with pytest.raises(ArgumentError):
        as_int("n", True)
    with pytest.raises(ArgumentError, match="not a torch device"):
        as_device("gpu0")
    assert issubclass(ArgumentError, ValueError) and issubclass(ArgumentError, BVDMDataError)


def test_check_clip_rejects_empty_frames():
    clip = {"video": torch.zeros(1, 1, 0, 0), "masks": torch.zeros(1, 0, 0, dtype=torch.int32),
            "tracks": torch.zeros(0, 4, dtype=torch.int64), "meta": {}}
    with pytest.raises(ClipError, match="at least one pixel"):
        check_clip(clip)


@pytest.mark.parametrize("argv, message", [
    (["cache", "--out", "x.lmdb", "--clips", "4", "--size", "0", "0"], "--size: must be at least 1"),
    (["cache", "--out", "x.lmdb", "--clips", "4", "--gen-batch", "-1"], "--gen-batch: must be at least 1"),
    (["cache", "--out", "x.lmdb", "--clips", "4", "--gen-batch", "0"], "--gen-batch: must be at least 1"),
    (["cache", "--out", "x.lmdb", "--clips", "4", "--commit-every", "0"], "--commit-every: must be at least 1"),
    (["cache", "--out", "x.lmdb", "--clips", "-1"], "--clips: must be at least 1"),
    (["generate", "--out", "x", "--density", "nan"], "--density: density must be a finite"),
    (["cache", "--out", "x.lmdb", "--clips", "4", "--pressed", "1.5"], "--pressed: expected a share between 0 and 1"),
    (["validate", "x", "--max-problems", "-1"], "--max-problems: must be at least 0"),
    (["fit-masks", "--labels", "x", "--out", "y", "--min-separation", "0"], "--min-separation: expected a ratio"),
])
def test_cli_refuses_bad_numbers_in_one_line(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1] and "Traceback" not in "\n".join(err)
    assert not (tmp_path / "x.lmdb").exists()


def test_cli_refuses_a_density_that_does_not_fit(capsys, tmp_path):
    code = main(["generate", "--out", str(tmp_path / "x"), "--density", "1", "--size", "64", "64"])
    assert code != 0
    err = capsys.readouterr().err.strip()
    assert "does not fit" in err and len(err.splitlines()) == 1


def test_cli_refuses_tiny_frames(capsys, tmp_path):
    code = main(["cache", "--out", str(tmp_path / "x.lmdb"), "--clips", "2", "--size", "7", "7"])
    assert code != 0 and "smaller than one cell" in capsys.readouterr().err
    assert not (tmp_path / "x.lmdb").exists()  # refused before anything is written


def test_set_epoch_reaches_persistent_workers(tiny_bundle):
    from torch.utils.data import DataLoader

    from bvdm_data import collate_clips

    stream = BVDMStream(str(tiny_bundle), clip_len=1, size=(96, 96), num_clips=1, t_s=5, t_f=1, density=4e-4)
    loader = DataLoader(stream, batch_size=1, num_workers=1, persistent_workers=True, collate_fn=collate_clips)
    epochs = []
    for epoch in range(3):
        stream.set_epoch(epoch)
        epochs += [batch["meta"][0]["epoch"] for batch in loader]
    assert epochs == [0, 1, 2]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cli_device_cuda_without_a_gpu(capsys, tmp_path):
    assert main(["generate", "--out", str(tmp_path / "x"), "--device", "cuda"]) != 0
    err = capsys.readouterr().err.strip()
    assert "no CUDA device is available" in err and len(err.splitlines()) == 1


def test_datasets_and_bundles_say_what_they_are(tmp_path, hela_root):
    from bvdm_data import CTCClips
    from bvdm_data.bundle import Bundle

    stream = BVDMStream("hela", size=(128, 128), seed=3)
    assert repr(stream).startswith("BVDMStream(") and "seed=3" in repr(stream) and "size=(128, 128)" in repr(stream)
    assert "parts ['flow', 'masks', 'scene', 'texture']" in repr(Bundle.load("hela"))
    real = CTCClips(hela_root, ["02"], labels="ERR_SEG", per_frame_ids=True, clip_len=1)
    assert "sequences=['Fluo-N2DL-HeLa/02']" in repr(real) and "4 clips" in repr(real)
    assert "MixedStream(real=CTCClips, synthetic=BVDMStream" in repr(MixedStream(real=real, synthetic=stream))
