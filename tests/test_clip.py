"""The clip contract: check_clip rules, relabelling of windows and crops, collate."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from bvdm_data.clip import check_clip, collate_clips, relabel_per_frame, relabel_tracks
from bvdm_data.errors import ClipError


def test_real_clip_passes(real_clip):
    check_clip(real_clip)
    assert (real_clip["tracks"][:, 3] > 0).any(), "the fixture should hold a division"


def _edit(clip, **changes):
    out = {k: (v.clone() if isinstance(v, torch.Tensor) else dict(v)) for k, v in clip.items()}
    out.update(changes)
    return out


def _first_track_with_span(clip, min_len=3):
    for row in clip["tracks"].tolist():
        if row[2] - row[1] + 1 >= min_len:
            return row
    raise AssertionError("no long track")


def test_missing_key(real_clip):
    clip = dict(real_clip)
    del clip["tracks"]
    with pytest.raises(ClipError, match="keys.*missing \\['tracks'\\]"):
        check_clip(clip)


@pytest.mark.parametrize(
    "key, value, rule",
    [
        ("video", lambda c: c["video"].double(), "video dtype"),
        ("video", lambda c: c["video"][:, 0], "video shape"),
        ("video", lambda c: c["video"] * 3, "video range"),
        ("video", lambda c: c["video"].masked_fill(torch.zeros_like(c["video"], dtype=torch.bool).index_fill(0, torch.tensor([0]), True), float("nan")), "video range"),
        ("masks", lambda c: c["masks"].long(), "masks dtype"),
        ("masks", lambda c: c["masks"][:-1], "video and masks agree"),
        ("tracks", lambda c: c["tracks"].int(), "tracks dtype"),
        ("tracks", lambda c: c["tracks"][:, :3], "tracks shape"),
        ("video", lambda c: c["video"].numpy(), "types"),
        ("meta", lambda c: {"bad": [1, 2]}, "meta"),
    ],
)
def test_type_and_shape_rules(real_clip, key, value, rule):
    with pytest.raises(ClipError, match=f"rule '{rule}'"):
        check_clip(_edit(real_clip, **{key: value(real_clip)}))


def test_id_in_masks_without_row(real_clip):
    masks = real_clip["masks"].clone()
    masks[0, :2, :2] = 999
    with pytest.raises(ClipError, match="masks ids have rows.*id 999"):
        check_clip(_edit(real_clip, masks=masks))


def test_row_without_mask(real_clip):
    tracks = torch.cat([real_clip["tracks"], torch.tensor([[999, 0, 0, 0]])])
    with pytest.raises(ClipError, match="rows have masks.*track 999"):
        check_clip(_edit(real_clip, tracks=tracks))


def test_track_missing_inside_span(real_clip):
    tid, first, last, _ = _first_track_with_span(real_clip)
    masks = real_clip["masks"].clone()
    frame = masks[first + 1]
    frame[frame == tid] = 0
    with pytest.raises(ClipError, match=f"present from first to last.*track {tid} is missing from frame {first + 1}"):
        check_clip(_edit(real_clip, masks=masks))


def test_track_outside_span(real_clip):
    tid, first, last, _ = _first_track_with_span(real_clip)
    tracks = real_clip["tracks"].clone()
    tracks[tracks[:, 0] == tid, 2] = last - 1
    with pytest.raises(ClipError, match=f"track {tid} appears in frame {last}, outside its span"):
        check_clip(_edit(real_clip, tracks=tracks))


def test_unknown_parent_and_child_before_parent(real_clip):
    tracks = real_clip["tracks"].clone()
    child = int(torch.nonzero(tracks[:, 3] > 0)[0, 0])
    bad = tracks.clone()
    bad[child, 3] = 12345
    with pytest.raises(ClipError, match="parent known.*parent 12345"):
        check_clip(_edit(real_clip, tracks=bad))
    # A parent that lasts as long as its child is a contradiction.
    parent_row = int(torch.nonzero(tracks[:, 0] == tracks[child, 3])[0, 0])
    bad = tracks.clone()
    bad[parent_row, 2] = bad[child, 1]
    with pytest.raises(ClipError, match="child after parent|present from first to last"):
        check_clip(_edit(real_clip, tracks=bad))


def test_child_starts_before_parent_ends():
    masks = torch.zeros(3, 4, 4, dtype=torch.int32)
    masks[:, 0, 0] = 1
    masks[1:, 3, 3] = 2
    clip = {"video": torch.zeros(3, 1, 4, 4), "masks": masks,
            "tracks": torch.tensor([[1, 0, 2, 0], [2, 1, 2, 1]]), "meta": {}}
    with pytest.raises(ClipError, match="child after parent.*track 2 starts in frame 1 but its parent 1 lasts until frame 2"):
        check_clip(clip)


def test_duplicate_and_nonpositive_ids(real_clip):
    tracks = real_clip["tracks"]
    with pytest.raises(ClipError, match="ids unique"):
        check_clip(_edit(real_clip, tracks=torch.cat([tracks, tracks[:1]])))
    with pytest.raises(ClipError, match="ids positive"):
        check_clip(_edit(real_clip, tracks=torch.cat([tracks, torch.tensor([[0, 0, 0, 0]])])))


def test_relabel_random_windows_always_meet_contract(res_video):
    masks, tracks = res_video
    parents = {int(l): int(p) for l, _, _, p in tracks}
    rng = np.random.default_rng(0)
    divisions = 0
    for _ in range(12):
        t0 = int(rng.integers(0, 80))
        y, x = int(rng.integers(0, 600)), int(rng.integers(0, 1000))
        window = masks[t0 : t0 + 12, y : y + 100, x : x + 100]
        new, rows = relabel_tracks(window, parents)
        clip = {"video": torch.zeros(window.shape[0], 1, *window.shape[1:]), "masks": torch.from_numpy(new),
                "tracks": torch.from_numpy(rows), "meta": {}}
        check_clip(clip)
        divisions += int((rows[:, 3] > 0).sum())
        # Relabelling keeps the segmentation: same foreground, same partition.
        assert np.array_equal(new > 0, window > 0)
    assert divisions > 0


def test_relabel_splits_a_track_that_leaves_and_returns():
    masks = np.zeros((4, 1, 2), dtype=np.int64)
    masks[[0, 1, 3], 0, 0] = 7  # absent in frame 2
    masks[3, 0, 1] = 9          # child of 5, which is not in the clip
    new, tracks = relabel_tracks(masks, {9: 5})
    assert tracks.tolist() == [[1, 0, 1, 0], [2, 3, 3, 1], [3, 3, 3, 0]]
    assert new[:, 0, 0].tolist() == [1, 1, 0, 2]


def test_relabel_per_frame():
    masks = np.array([[[4, 4, 0]], [[4, 0, 6]]])
    new, tracks = relabel_per_frame(masks)
    assert tracks.tolist() == [[1, 0, 0, 0], [2, 1, 1, 0], [3, 1, 1, 0]]
    assert new.tolist() == [[[1, 1, 0]], [[2, 0, 3]]]
    empty_new, empty_tracks = relabel_per_frame(np.zeros((2, 3, 3), dtype=np.int64))
    assert empty_tracks.shape == (0, 4) and not empty_new.any()


def test_collate_batches_and_dataloader(real_clip):
    other = _edit(real_clip, tracks=real_clip["tracks"][:0], masks=torch.zeros_like(real_clip["masks"]))
    batch = next(iter(DataLoader([real_clip, other], batch_size=2, collate_fn=collate_clips)))
    assert batch["video"].shape == (2, *real_clip["video"].shape)
    assert batch["masks"].dtype == torch.int32
    assert [t.shape[0] for t in batch["tracks"]] == [real_clip["tracks"].shape[0], 0]
    assert batch["meta"][0]["source"] == "test"


def test_collate_refuses_mixed_shapes(real_clip):
    small = {k: (v[:, ..., :8, :8] if k in ("video", "masks") else v) for k, v in real_clip.items()}
    with pytest.raises(ClipError, match="one shape"):
        collate_clips([real_clip, small])
    with pytest.raises(ClipError, match="empty batch"):
        collate_clips([])
