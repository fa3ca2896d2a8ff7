"""CTCClips: real data as contract clips, windows, crops, determinism, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from bvdm_data import CTCClips, check_clip, collate_clips
from bvdm_data.ctc import write_ctc_sequence
from bvdm_data.errors import CTCFormatError
from tests.conftest import clip_from_labels


@pytest.fixture(scope="module")
def lineage_dataset(tmp_path_factory, res_video):
    """A CTC dataset with GT lineage: 30 real frames of the 01 result, cropped, with rendered images."""
    masks, tracks = res_video
    root = tmp_path_factory.mktemp("gt")
    write_ctc_sequence(clip_from_labels(masks[30:60, 300:556, 200:456], tracks), root, "01")
    return root


def test_per_frame_segmentation_clips(hela_root):
    ds = CTCClips(hela_root, ["02"], labels="ERR_SEG", clip_len=2, size=(64, 64), per_frame_ids=True)
    assert len(ds) == 2 * 16  # two windows of 2 frames x a 4x4 grid of crops
    for k in range(len(ds)):
        clip = ds[k]
        check_clip(clip)
        assert clip["video"].shape == (2, 1, 64, 64)
        assert (clip["tracks"][:, 1] == clip["tracks"][:, 2]).all(), "per-frame ids make one-frame tracks"


def test_intensities_are_normalised_from_the_data(hela_root):
    ds = CTCClips(hela_root, ["02"], labels="ERR_SEG", clip_len=4, per_frame_ids=True)
    clip = ds[0]
    fg = clip["video"][:, 0][clip["masks"] > 0]
    bg = clip["video"][:, 0][clip["masks"] == 0]
    assert float(bg.median()) < 0.2 and float(fg.median()) > float(bg.median()) + 0.2
    lo, hi = ds.ranges[0]
    assert 30000 < lo < hi < 40000  # raw counts of this dataset, found from the data


def test_segmentation_without_lineage_needs_explicit_option(hela_root):
    with pytest.raises(CTCFormatError, match="no lineage file.*per_frame_ids=True"):
        CTCClips(hela_root, ["02"], labels="ERR_SEG")


def test_lineage_clips_meet_contract_and_keep_divisions(lineage_dataset):
    ds = CTCClips(lineage_dataset, ["01"], labels="GT", clip_len=10, size=(128, 128))
    assert len(ds) == 3 * 4
    children = 0
    for k in range(len(ds)):
        clip = ds[k]
        check_clip(clip)
        children += int((clip["tracks"][:, 3] > 0).sum())
        assert clip["meta"]["source"] == "ctc" and clip["meta"]["index"] == k
    assert children > 0


def test_random_windows_are_deterministic_and_vary_by_epoch(lineage_dataset):
    make = lambda seed: CTCClips(lineage_dataset, ["01"], clip_len=5, size=(96, 96), mode="random",
                                 num_clips=6, seed=seed)
    a, b, c = make(1), make(1), make(2)
    for k in range(6):
        assert a.window(k) == b.window(k)
        assert torch.equal(a[k]["masks"], b[k]["masks"])
        check_clip(a[k])
    assert [a.window(k) for k in range(6)] != [c.window(k) for k in range(6)]
    before = [a.window(k) for k in range(6)]
    a.set_epoch(1)
    assert [a.window(k) for k in range(6)] != before


def test_dataloader_with_workers(lineage_dataset):
    ds = CTCClips(lineage_dataset, ["01"], clip_len=4, size=(64, 64), mode="random", num_clips=8, seed=3)
    batches = list(DataLoader(ds, batch_size=4, num_workers=2, collate_fn=collate_clips))
    assert [b["video"].shape for b in batches] == [torch.Size([4, 4, 1, 64, 64])] * 2
    assert torch.equal(batches[1]["masks"][0], ds[4]["masks"])


@pytest.mark.parametrize("kwargs, error, match", [
    ({"clip_len": 31}, ValueError, "fewer than clip_len"),
    ({"size": (300, 64)}, ValueError, "larger than the frames"),
    ({"mode": "shuffled"}, ValueError, "mode must be one of"),
    ({"mode": "random"}, ValueError, "num_clips"),
    ({"percentiles": (50, 10)}, ValueError, "percentiles"),
    ({"labels": "ST"}, CTCFormatError, "no such label folder"),
])
def test_bad_arguments(lineage_dataset, kwargs, error, match):
    with pytest.raises(error, match=match):
        CTCClips(lineage_dataset, ["01"], **kwargs)


def test_index_out_of_range(lineage_dataset):
    ds = CTCClips(lineage_dataset, ["01"], clip_len=10)
    with pytest.raises(IndexError):
        ds[len(ds)]


def test_transform_is_applied(hela_root):
    ds = CTCClips(hela_root, ["02"], labels="ERR_SEG", clip_len=1, per_frame_ids=True,
                  transform=lambda clip: clip["video"].mean())
    assert isinstance(ds[0], torch.Tensor)
    assert np.isfinite(float(ds[0]))


def test_a_frame_range_keeps_other_frames_out(hela_root):
    from bvdm_data.ctc import open_sequence

    all_frames = open_sequence(hela_root, "02", labels="ERR_SEG").images.frames
    keep = all_frames[:-1]
    ds = CTCClips(hela_root, ["02"], labels="ERR_SEG", clip_len=2, size=(64, 64), per_frame_ids=True, frames=keep,
                  stride=1)
    starts = {ds[i]["meta"]["start_frame"] for i in range(len(ds))}
    assert starts == set(keep[:-1])  # no window reaches the held-out last frame
    random = CTCClips(hela_root, ["02"], labels="ERR_SEG", clip_len=2, size=(64, 64), per_frame_ids=True,
                      frames=keep, mode="random", num_clips=20)
    assert all(random[i]["meta"]["start_frame"] + 1 in keep for i in range(20))
    with pytest.raises(ValueError, match="consecutive"):
        CTCClips(hela_root, ["02"], labels="ERR_SEG", per_frame_ids=True, frames=[all_frames[0], all_frames[2]])
    with pytest.raises(CTCFormatError, match="no image for frames"):
        CTCClips(hela_root, ["02"], labels="ERR_SEG", per_frame_ids=True, frames=range(900, 902))
