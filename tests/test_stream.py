"""BVDMStream: contract, determinism over workers and batches, sharding, resume, epochs, bad input."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader

import bvdm_data.stream as stream_module
from bvdm_data import check_clip, collate_clips
from bvdm_data.errors import BVDMDataError
from bvdm_data.stream import BVDMStream

FAST = dict(clip_len=3, size=(64, 64), t_s=10, t_f=2, density=4e-4)


def by_index(clips):
    return {c["meta"]["index"]: c for c in clips}


def collect(stream, workers=0):
    return list(DataLoader(stream, batch_size=None, num_workers=workers))


def test_clips_meet_the_contract_and_batch(tiny_bundle):
    stream = BVDMStream(str(tiny_bundle), num_clips=4, seed=1, **FAST)
    clips = collect(stream)
    assert [c["meta"]["index"] for c in clips] == [0, 1, 2, 3] and len(stream) == 4
    for clip in clips:
        check_clip(clip)
    batch = next(iter(DataLoader(stream, batch_size=2, collate_fn=collate_clips)))
    assert batch["video"].shape == (2, 3, 1, 64, 64)
    # the image formation each clip draws by default is in plain sight
    assert "formation=Photometric(contrast=(0.5, 2.0), blur=(0.3, 2.0), noise=(1.0, 4.0), p=0.5)" in repr(stream)
    assert "formation=None" in repr(BVDMStream(str(tiny_bundle), num_clips=1, formation=None, **FAST))
    assert "magnification" not in repr(stream)  # off by default; named when drawn
    zoomed = BVDMStream(str(tiny_bundle), num_clips=1, magnification=(0.8, 1.25), **FAST)
    assert "magnification=(0.8, 1.25)" in repr(zoomed)
    assert 0.8 <= collect(zoomed)[0]["meta"]["synth_magnification"] <= 1.25


@pytest.mark.parametrize("workers, gen_batch", [(1, 1), (2, 2), (0, 3)])
def test_same_clips_for_any_worker_count_and_gen_batch(tiny_bundle, workers, gen_batch):
    reference = by_index(collect(BVDMStream(str(tiny_bundle), num_clips=5, seed=2, **FAST)))
    other = by_index(collect(BVDMStream(str(tiny_bundle), num_clips=5, seed=2, gen_batch=gen_batch, **FAST), workers))
    assert sorted(other) == sorted(reference)
    for k, clip in reference.items():
        assert torch.equal(clip["masks"], other[k]["masks"]) and torch.equal(clip["tracks"], other[k]["tracks"])
        assert torch.allclose(clip["video"], other[k]["video"], atol=1e-4)


def test_worker_processes_overlap_batches_and_change_no_clip(tiny_bundle):
    """With worker processes (an accelerator's default) a batch's labels are redrawn while the next one paints:
    the same clips, in the same order, as inline work."""
    from bvdm_data.synth import SynthesisSettings, Synthesizer

    settings = SynthesisSettings(t_s=FAST["t_s"], t_f=FAST["t_f"], density=FAST["density"])
    inline, pooled = (Synthesizer(tiny_bundle, settings=settings, cpu_workers=n) for n in (0, 2))
    assert not inline.uses_worker_processes and pooled.uses_worker_processes
    a = list(stream_module.paint_indices(inline, range(5), 3, 0, FAST["clip_len"], FAST["size"], gen_batch=2))
    b = list(stream_module.paint_indices(pooled, range(5), 3, 0, FAST["clip_len"], FAST["size"], gen_batch=2))
    assert [c["meta"]["index"] for c in b] == list(range(5))
    for x, y in zip(a, b):
        assert torch.equal(x["video"], y["video"]) and torch.equal(x["masks"], y["masks"])
        assert torch.equal(x["tracks"], y["tracks"])


def test_no_duplicates_across_workers_and_ranks(tiny_bundle, monkeypatch):
    seen = []
    for rank in range(2):
        monkeypatch.setattr(stream_module.dist, "is_initialized", lambda: True)
        monkeypatch.setattr(stream_module.dist, "get_rank", lambda r=rank: r)
        monkeypatch.setattr(stream_module.dist, "get_world_size", lambda: 2)
        seen += [c["meta"]["index"] for c in collect(BVDMStream(str(tiny_bundle), num_clips=9, **FAST), workers=2)]
    assert sorted(seen) == list(range(9))


def test_stateful_dataloader_resumes_the_same_continuation(tiny_bundle):
    from torchdata.stateful_dataloader import StatefulDataLoader

    make = lambda: StatefulDataLoader(BVDMStream(str(tiny_bundle), num_clips=6, seed=4, **FAST),  # noqa: E731
                                      batch_size=1, num_workers=2, collate_fn=collate_clips)
    straight = [b["meta"][0]["index"] for b in make()]
    loader = make()
    it = iter(loader)
    head = [next(it)["meta"][0]["index"] for _ in range(3)]
    state = loader.state_dict()
    resumed = make()
    resumed.load_state_dict(state)
    tail = [b["meta"][0]["index"] for b in resumed]
    assert head + tail == straight


def test_epochs_draw_new_clips(tiny_bundle):
    stream = BVDMStream(str(tiny_bundle), num_clips=2, **FAST)
    first = collect(stream)
    stream.set_epoch(1)
    second = collect(stream)
    assert second[0]["meta"]["epoch"] == 1
    assert not torch.equal(first[0]["masks"], second[0]["masks"])


def test_tv_tensors_work_with_transforms_v2(tiny_bundle):
    from torchvision import tv_tensors
    from torchvision.transforms import v2

    clip = next(iter(BVDMStream(str(tiny_bundle), num_clips=1, tv_tensors=True, **FAST)))
    assert isinstance(clip["video"], tv_tensors.Video) and isinstance(clip["masks"], tv_tensors.Mask)
    flipped = v2.RandomHorizontalFlip(p=1.0)(clip)
    assert torch.equal(flipped["masks"], clip["masks"].flip(-1))
    assert torch.equal(flipped["video"], clip["video"].flip(-1))


def test_transform_crops_and_restore_contract_makes_the_clip_valid_again(tiny_bundle):
    from torchvision.transforms import v2

    from bvdm_data import check_clip, restore_contract
    from bvdm_data.errors import ClipError

    crop = v2.Compose([v2.CenterCrop(24)])
    raw = next(iter(BVDMStream(str(tiny_bundle), num_clips=1, tv_tensors=True, transform=crop, **FAST)))
    assert raw["video"].shape[-2:] == (24, 24) and raw["masks"].shape[-2:] == (24, 24)
    full = next(iter(BVDMStream(str(tiny_bundle), num_clips=1, **FAST)))
    assert len(full["tracks"]) > len(torch.unique(raw["masks"][raw["masks"] > 0])), "no cell left the view"
    with pytest.raises(ClipError):
        check_clip(raw)
    fixed = next(iter(BVDMStream(str(tiny_bundle), num_clips=1, tv_tensors=True,
                                 transform=v2.Compose([crop, restore_contract]), **FAST)))
    check_clip(fixed)
    assert type(fixed["masks"]).__name__ == "Mask"
    assert torch.equal(fixed["masks"] > 0, raw["masks"] > 0)  # the same cells, relabelled


def test_endless_stream_has_no_length(tiny_bundle):
    stream = BVDMStream(str(tiny_bundle), **FAST)
    with pytest.raises(TypeError, match="no length"):
        len(stream)
    it = iter(stream)
    assert [next(it)["meta"]["index"] for _ in range(2)] == [0, 1]


@pytest.mark.parametrize("kwargs, match", [
    ({"bundle": "no-such-bundle"}, "unknown bundle 'no-such-bundle'; known bundles"),
    ({"t_s": 10, "t_f": 20}, "t_f must lie in 0..t_s"),
    ({"clip_len": 0}, "clip_len"),
    ({"size": (8, 8)}, "smaller than one cell"),
    ({"num_clips": -1}, "num_clips"),
    ({"gen_batch": 0}, "gen_batch"),
    ({"pressed": -0.1}, "pressed must lie in 0..1"),
])
def test_bad_input_fails_before_any_work(tiny_bundle, kwargs, match):
    args = {**FAST, "bundle": str(tiny_bundle), **kwargs}
    with pytest.raises(BVDMDataError, match=match):
        BVDMStream(**args)
