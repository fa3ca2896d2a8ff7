"""The train-on-synthetic / test-on-real protocol: targets, instances, tracker, and a tiny end-to-end run."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from scipy import ndimage

from bvdm_data.clip import check_clip, relabel_per_frame
from bvdm_data.ctc import open_sequence, write_ctc_result, write_ctc_sequence
from bvdm_data.errors import BVDMDataError
from bvdm_data.evaluate import evaluate_ctc
from bvdm_data.evaluate.downstream import (BOUNDARY, INTERIOR, FramePool, ProtocolConfig, SegNet, batch_shares,
                                           boundary_offset, instances, load_segmenter, per_frame_clip, run_protocol,
                                           seg_targets, track_by_overlap, train_segmenter)


def two_touching_cells() -> torch.Tensor:
    m = torch.zeros(1, 12, 12, dtype=torch.int32)
    m[0, 2:10, 1:6] = 1
    m[0, 2:10, 6:11] = 2
    return m


def test_targets_mark_the_border_between_touching_cells():
    target = seg_targets(two_touching_cells())[0]
    assert (target[4:8, 5] == BOUNDARY).all() and (target[4:8, 6] == BOUNDARY).all()
    assert (target[4:8, 3] == INTERIOR).all() and target[0, 0] == 0


def test_ignored_pixels_are_skipped_by_the_loss():
    from bvdm_data.evaluate.downstream import IGNORE

    masks = two_touching_cells().clone()
    masks[0, :2, :2] = IGNORE
    target = seg_targets(masks)[0]
    assert (target[:2, :2] == IGNORE).all() and (target[4:8, 3] == INTERIOR).all()
    # A frame known only where it is ignored gives no training signal: the net is left as it was initialised.
    clip = {"video": torch.rand(1, 1, 32, 32), "masks": torch.full((1, 32, 32), IGNORE, dtype=torch.int32)}
    config = ProtocolConfig(steps=3, batch_size=2, crop=32, width=8)
    trained = train_segmenter([FramePool([clip], "ignored")], config, progress=False)
    torch.manual_seed(config.seed)
    fresh = SegNet(config.width)
    assert all(torch.equal(a, b) for a, b in zip(trained.state_dict().values(), fresh.state_dict().values()))


def test_a_pool_can_leave_its_outlines_untaught_but_not_where_cells_touch():
    from bvdm_data.evaluate.downstream import IGNORE

    masks = two_touching_cells()
    clip = {"video": torch.rand(1, 1, 12, 12), "masks": masks}
    plain, blind = FramePool([clip], "plain"), FramePool([clip], "blind", outline_ignore=1)
    assert torch.equal(plain.targets(masks), seg_targets(masks))
    target, full = blind.targets(masks)[0], seg_targets(masks)[0]
    cells = (masks[0] > 0).numpy()
    # The band: pixels within one 3x3 step of a cell and of the background; nothing else changes.
    square = np.ones((3, 3), bool)
    band = torch.from_numpy(ndimage.binary_dilation(cells, square) & ndimage.binary_dilation(~cells, square))
    assert 0 < int(band.sum()) < 144 and torch.equal(target == IGNORE, band)
    assert torch.equal(target[~band], full[~band])
    # Where the two cells touch, inside the band's reach of the background only at the ends, the boundary stays.
    assert (target[3:9, 5] == BOUNDARY).all() and (target[3:9, 6] == BOUNDARY).all()
    # A width of 0 is off; a negative one is refused.
    assert torch.equal(FramePool([clip], "zero", outline_ignore=0).targets(masks), full[None])
    with pytest.raises(BVDMDataError, match="outline_ignore is a width"):
        FramePool([clip], "negative", outline_ignore=-1)
    # Training with the band ignored runs, and differs from training without it.
    config = ProtocolConfig(steps=2, batch_size=2, crop=12, width=8)
    a = train_segmenter([plain], config, progress=False).state_dict()
    b = train_segmenter([blind], config, progress=False).state_dict()
    assert not all(torch.equal(a[k], b[k]) for k in a)


def test_instances_split_touching_cells_at_the_predicted_boundary():
    target = seg_targets(two_touching_cells())[0]
    logits = torch.nn.functional.one_hot(target, 3).permute(2, 0, 1).float()
    labels = instances(logits, min_area=4)
    assert labels.max() == 2
    assert len(np.unique(labels[two_touching_cells()[0].numpy() == 1])) == 1  # the split follows the true border


def test_tracker_recovers_real_lineage_from_per_frame_ids(tmp_path, real_clip):
    per_frame, _ = relabel_per_frame(real_clip["masks"].numpy())
    masks, tracks = track_by_overlap(per_frame)
    check_clip({**real_clip, "masks": torch.from_numpy(masks), "tracks": torch.from_numpy(tracks)})
    assert (tracks[:, 3] > 0).sum() >= 2  # the clip has a division; daughters get their mother as parent
    write_ctc_sequence(real_clip, tmp_path, "01")
    write_ctc_result(masks, tracks, tmp_path / "01_RES")
    assert evaluate_ctc(tmp_path / "01_RES", tmp_path / "01_GT", ["TRA"])["TRA"] > 0.95
    one_frame_tracks = relabel_per_frame(per_frame)[1]
    write_ctc_result(per_frame, one_frame_tracks, tmp_path / "01_RES", overwrite=True)
    assert evaluate_ctc(tmp_path / "01_RES", tmp_path / "01_GT", ["TRA"])["TRA"] < 0.95  # linking matters


def test_training_learns_the_task_and_is_deterministic(real_clip):
    pool = FramePool([real_clip], "clip")
    config = ProtocolConfig(steps=40, batch_size=4, crop=64, width=8, lr=5e-3)
    net = train_segmenter([pool], config, progress=False)
    again = train_segmenter([pool], config, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), again.state_dict().values()))
    with torch.no_grad():
        pred = net(real_clip["video"][:2]).argmax(1)
    truth = seg_targets(real_clip["masks"][:2])
    fg_accuracy = ((pred > 0) == (truth > 0)).float().mean()
    assert fg_accuracy > 0.9  # the rendering is easy: 40 steps are enough


class _StopAfter(FramePool):
    """A pool whose process is stopped (as by the end of a session) after ``n`` batches."""

    def __init__(self, pool: FramePool, n: int) -> None:
        self.__dict__.update(pool.__dict__)
        self.left = n

    def batch(self, *args):
        if self.left == 0:
            raise KeyboardInterrupt
        self.left -= 1
        return super().batch(*args)


@pytest.mark.parametrize("steps", [1, 2, 10, 20])
def test_any_number_of_steps_trains(real_clip, steps):
    config = ProtocolConfig(steps=steps, batch_size=2, crop=32, width=8)
    net = train_segmenter([FramePool([real_clip], "clip")], config, progress=False)
    assert all(torch.isfinite(p).all() for p in net.parameters())


def test_a_segmenter_stopped_mid_training_resumes_to_the_same_weights(tmp_path, real_clip):
    pool = FramePool([real_clip], "clip")
    config = ProtocolConfig(steps=9, batch_size=2, crop=32, width=8)
    whole = train_segmenter([pool], config, progress=False)
    ckpt = tmp_path / "seg.ckpt"
    with pytest.raises(KeyboardInterrupt):
        train_segmenter([_StopAfter(pool, 7)], config, progress=False, checkpoint=ckpt, checkpoint_every=3)
    assert torch.load(ckpt, weights_only=True)["step"] == 6
    first = torch.load(ckpt, weights_only=True)["seconds"]
    resumed = train_segmenter([pool], config, progress=False, checkpoint=ckpt, checkpoint_every=3)
    assert all(torch.equal(a, b) for a, b in zip(whole.state_dict().values(), resumed.state_dict().values()))
    assert resumed.train_seconds > first > 0  # the time of both runs
    assert torch.load(ckpt, weights_only=True)["step"] == 9  # the finished net is kept until its caller is done
    kept = load_segmenter(ckpt)
    assert kept.steps == 9 and not kept.training
    assert all(torch.equal(a, b) for a, b in zip(whole.state_dict().values(), kept.state_dict().values()))
    with pytest.raises(BVDMDataError, match="checkpoint of another run"):
        train_segmenter([pool], ProtocolConfig(steps=9, batch_size=2, crop=32, width=8, seed=1), progress=False,
                        checkpoint=ckpt)



def test_an_augmented_training_resumes_exactly_and_is_told_from_a_plain_one(tmp_path, real_clip):
    pool = FramePool([real_clip], "clip")
    config = ProtocolConfig(steps=6, batch_size=2, crop=32, width=8, augment=True)
    whole = train_segmenter([pool], config, progress=False)
    plain = train_segmenter([pool], ProtocolConfig(steps=6, batch_size=2, crop=32, width=8), progress=False)
    assert not all(torch.equal(a, b) for a, b in zip(whole.state_dict().values(), plain.state_dict().values()))
    ckpt = tmp_path / "seg.ckpt"
    with pytest.raises(KeyboardInterrupt):
        train_segmenter([_StopAfter(pool, 4)], config, progress=False, checkpoint=ckpt, checkpoint_every=2)
    assert torch.load(ckpt, weights_only=True)["identity"]["augment"] is True
    resumed = train_segmenter([pool], config, progress=False, checkpoint=ckpt, checkpoint_every=2)
    assert all(torch.equal(a, b) for a, b in zip(whole.state_dict().values(), resumed.state_dict().values()))
    kept = tmp_path / "plain.ckpt"
    train_segmenter([pool], ProtocolConfig(steps=2, batch_size=2, crop=32, width=8), progress=False, checkpoint=kept)
    assert "augment" not in torch.load(kept, weights_only=True)["identity"]  # as in checkpoints made before it
    with pytest.raises(BVDMDataError, match="checkpoint of another run"):
        train_segmenter([pool], ProtocolConfig(steps=2, batch_size=2, crop=32, width=8, augment=True),
                        progress=False, checkpoint=kept)

def test_protocol_runs_end_to_end_on_real_frames(hela_root, tiny_bundle):
    from bvdm_data import BVDMStream

    seq = open_sequence(hela_root, "02", labels="ERR_SEG")
    frames = seq.images.frames
    lo, hi = np.percentile(np.stack([seq.images.read(f) for f in frames]), (1, 99.9))
    video = torch.from_numpy(np.stack([np.clip((seq.images.read(f) - lo) / (hi - lo), 0, 1) for f in frames])
                             ).float()[:, None]
    labels = np.stack([seq.labels.read(f) for f in frames])
    train = per_frame_clip(video[:-2], labels[:-2], {"source": "real"})
    test = per_frame_clip(video[-2:], labels[-2:], {"source": "real"})
    real = FramePool([train], "real")
    synthetic = FramePool(BVDMStream(str(tiny_bundle), clip_len=2, size=(64, 64), num_clips=2, t_s=5, t_f=1,
                                     density=4e-4),
                          "bvdm")
    assert len(synthetic) == 4
    rows = run_protocol({"real": [real], "bvdm": [synthetic], "mix": [real, synthetic]}, test,
                        ProtocolConfig(steps=2, batch_size=2, crop=64, width=8), progress=False)
    assert [r["arm"] for r in rows] == ["real", "bvdm", "mix"] and rows[2]["frames"] == len(real) + 4
    assert all(0 <= r["SEG"] <= 1 and 0 <= r["DET"] <= 1 for r in rows)
    markers = sum(len(np.unique(m)) - 1 for m in test["masks"].numpy())
    assert all(r["misses"] <= markers and r["false_positives"] >= 0 and r["splits"] >= 0 for r in rows)


def test_a_fading_pool_gives_its_crops_to_the_others_until_none_are_left():
    clip = {"video": torch.rand(1, 1, 16, 16), "masks": torch.zeros(1, 16, 16, dtype=torch.int32)}
    real, synthetic = FramePool([clip], "real"), FramePool([clip], "synthetic", fade=True)
    over_the_run = [batch_shares([real, synthetic], 8, step, 100) for step in range(100)]
    assert over_the_run[0] == [4, 4] and over_the_run[-1] == [8, 0]
    assert all(sum(s) == 8 for s in over_the_run)
    synthetic_crops = [s[1] for s in over_the_run]
    assert synthetic_crops == sorted(synthetic_crops, reverse=True)  # never comes back
    assert abs(sum(synthetic_crops) / (8 * 100) - 0.25) < 0.02  # half falling to none: a quarter on average
    assert batch_shares([real, FramePool([clip], "other")], 8, 99, 100) == [4, 4]  # no fading pool: even
    three = batch_shares([real, FramePool([clip], "other"), synthetic], 9, 99, 100)
    assert three == [5, 4, 0] or three == [4, 5, 0]
    with pytest.raises(BVDMDataError, match="every pool fades"):
        batch_shares([synthetic], 8, 1, 100)


def test_a_kept_net_is_scored_with_another_min_area_without_training_again(tmp_path, real_clip):
    pool = FramePool([real_clip], "real")
    ckpt = tmp_path / "seg.ckpt"
    kept = train_segmenter([pool], ProtocolConfig(steps=3, batch_size=2, crop=32, width=8), progress=False,
                           checkpoint=ckpt)
    again = train_segmenter([_StopAfter(pool, 0)], ProtocolConfig(steps=3, batch_size=2, crop=32, width=8,
                                                                  min_area=320),
                            progress=False, checkpoint=ckpt)  # would stop at its first batch if it trained
    assert all(torch.equal(a, b) for a, b in zip(kept.state_dict().values(), again.state_dict().values()))
    state = torch.load(ckpt, weights_only=True)
    state["identity"]["min_area"] = 40  # checkpoints written before 2026-11-28 hold it
    torch.save(state, ckpt)
    train_segmenter([_StopAfter(pool, 0)], ProtocolConfig(steps=3, batch_size=2, crop=32, width=8), progress=False,
                    checkpoint=ckpt)


def test_a_fading_pool_is_part_of_what_a_checkpoint_remembers(tmp_path, real_clip):
    config = ProtocolConfig(steps=3, batch_size=2, crop=32, width=8)
    ckpt = tmp_path / "seg.ckpt"
    train_segmenter([FramePool([real_clip], "real"), FramePool([real_clip], "bvdm")], config, progress=False,
                    checkpoint=ckpt)
    with pytest.raises(BVDMDataError, match="checkpoint of another run"):
        train_segmenter([FramePool([real_clip], "real"), FramePool([real_clip], "bvdm", fade=True)], config,
                        progress=False, checkpoint=ckpt)


def test_a_pool_can_draw_its_crops_image_formation_and_a_checkpoint_remembers_it(tmp_path, real_clip):
    from bvdm_data.photometric import Photometric, augment_photometric

    blur = Photometric(contrast=None, noise=None, blur=(2.0, 2.0), p=1.0)
    plain, varied = FramePool([real_clip], "bvdm"), FramePool([real_clip], "bvdm", photometric=blur)
    x, y = plain.batch(3, 32, torch.Generator().manual_seed(5))
    xv, yv = varied.batch(3, 32, torch.Generator().manual_seed(5))
    # The same crops, labels untouched, the images changed as augment_photometric changes them after the crop draws.
    assert torch.equal(y, yv) and not torch.equal(x, xv)
    gen = torch.Generator().manual_seed(5)
    plain.batch(3, 32, gen)
    assert torch.equal(xv, augment_photometric(x, gen, blur))
    assert float(xv.std()) < float(x.std())  # a 2-px blur smooths the crops
    # The pool's formation is part of the run: a checkpoint of the plain pool is refused, its own resumes.
    config = ProtocolConfig(steps=3, batch_size=2, crop=32, width=8)
    ckpt = tmp_path / "seg.ckpt"
    train_segmenter([FramePool([real_clip], "real"), plain], config, progress=False, checkpoint=ckpt)
    with pytest.raises(BVDMDataError, match="checkpoint of another run"):
        train_segmenter([FramePool([real_clip], "real"), varied], config, progress=False, checkpoint=ckpt)
    ckpt.unlink()
    once = train_segmenter([FramePool([real_clip], "real"), varied], config, progress=False, checkpoint=ckpt)
    again = train_segmenter([FramePool([real_clip], "real"), _StopAfter(varied, 0)], config, progress=False,
                            checkpoint=ckpt)  # finished: read back, not trained again
    assert all(torch.equal(a, b) for a, b in zip(once.state_dict().values(), again.state_dict().values()))


def test_pools_refuse_what_they_cannot_serve():
    with pytest.raises(BVDMDataError, match="no frames"):
        FramePool([], "empty")
    clip = {"video": torch.rand(1, 1, 16, 16), "masks": torch.zeros(1, 16, 16, dtype=torch.int32)}
    with pytest.raises(BVDMDataError, match="smaller than the 32 px crop"):
        FramePool([clip], "small").batch(1, 32, torch.Generator())


def test_segnet_accepts_any_frame_size_after_padding():
    from bvdm_data.evaluate.downstream import segment

    out = segment(SegNet(width=8).eval(), torch.rand(2, 1, 37, 53))
    assert out.shape == (2, 37, 53) and out.dtype == np.int32


def test_boundary_offset_measures_how_far_outlines_sit_outside():
    from scipy import ndimage

    yy, xx = np.mgrid[:64, :64]
    ref = np.zeros((1, 64, 64), np.int32)
    ref[0][(yy - 20) ** 2 + (xx - 20) ** 2 < 12 ** 2] = 1
    ref[0][(yy - 44) ** 2 + (xx - 44) ** 2 < 10 ** 2] = 2
    grown = np.stack([ndimage.grey_dilation(ref[0], size=3)])
    shrunk = np.where(ndimage.binary_erosion(ref[0] > 0, iterations=1), ref[0], 0)[None]
    assert boundary_offset(ref, ref) == {"offset_px": 0.0, "matched_iou": 1.0, "matched": 1.0}
    assert 0.8 < boundary_offset(grown, ref)["offset_px"] < 1.3
    assert -1.2 < boundary_offset(shrunk, ref)["offset_px"] < -0.65  # perimeters count 8-connected rims
    one_missed = np.where(ref == 2, 0, ref)
    assert boundary_offset(one_missed, ref)["matched"] == 0.5


def test_a_whole_real_sequence_is_scored_against_its_own_sparse_gold_truth(tmp_path):
    """GOWT1-style test data: TRA markers on every frame, SEG outlines of some cells on some frames."""
    from tests.test_outlines import MARKER, RADIUS, gowt1_like

    from bvdm_data.evaluate.downstream import RealSequence, score_segmentation

    root = gowt1_like(tmp_path, frames=3)
    test = RealSequence.load(root, "01")
    assert test.video.shape == (3, 1, 160, 160) and test.seg_index == [0, 2]
    assert 0 <= float(test.video.min()) and float(test.video.max()) <= 1
    # Whole nuclei with per-frame ids: every outlined cell matched exactly, every marker found and linked.
    yy, xx = np.mgrid[:160, :160]
    nuclei = np.zeros((3, 160, 160), np.int32)
    for t in range(3):
        for k, (cy, cx) in enumerate([(40, 40), (40, 120), (120, 40), (120, 120), (80, 80)], start=1):
            nuclei[t][np.hypot(yy - cy - t, xx - cx) <= RADIUS] = 6 - k if t == 1 else k
    scores = score_segmentation(nuclei, test.gt)
    assert scores == pytest.approx({"SEG": 1.0, "DET": 1.0, "TRA": 1.0})
    # One cell, by its marker only (half a nucleus): DET drops, SEG drops more.
    markers = np.stack([np.where(np.hypot(yy - 40 - t, xx - 40) <= MARKER, 1, 0) for t in range(3)])
    worse = score_segmentation(markers.astype(np.int32), test.gt)
    assert worse["SEG"] < 0.5 * scores["SEG"] and worse["DET"] < 1.0
    shutil.rmtree(root / "01_GT" / "SEG")
    with pytest.raises(BVDMDataError, match="no SEG"):
        RealSequence.load(root, "01")
