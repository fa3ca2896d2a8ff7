"""MixedStream: ratio, determinism, sharding without duplicate synthetic clips, the same contract."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader

from bvdm_data import CTCClips, check_clip, collate_clips
from bvdm_data.mix import MixedStream
from bvdm_data.stream import BVDMStream


@pytest.fixture(scope="module")
def real(hela_root):
    return CTCClips(hela_root, ["02"], labels="ERR_SEG", clip_len=3, size=(64, 64), per_frame_ids=True)


def test_ratio_and_determinism(real):
    other = CTCClips(real.sequences[0].images.folder.parent, ["02"], labels="ERR_SEG", clip_len=3, size=(64, 64),
                     per_frame_ids=True, percentiles=(5.0, 99.0))
    mixed = MixedStream(real, other, p_real=0.3, seed=1, num_clips=400)
    sources = [c["meta"]["mixed_from"] for c in mixed]
    assert abs(sources.count("real") / 400 - 0.3) < 0.06
    again = [c["meta"]["mixed_from"] for c in MixedStream(real, other, p_real=0.3, seed=1, num_clips=400)]
    assert sources == again
    shifted = [c["meta"]["mixed_from"] for c in MixedStream(real, other, p_real=0.3, seed=2, num_clips=400)]
    assert sources != shifted


def test_half_of_the_clips_are_real_by_default(real):
    # the share every mixed downstream number of benchmarks/RESULTS.md was measured with
    sources = [c["meta"]["mixed_from"] for c in MixedStream(real, real, seed=4, num_clips=400)]
    assert abs(sources.count("real") / 400 - 0.5) < 0.07


def test_mixing_with_the_stream_over_workers(real, tiny_bundle):
    synth = BVDMStream(str(tiny_bundle), clip_len=3, size=(64, 64), t_s=10, t_f=2, density=4e-4, num_clips=50)
    mixed = MixedStream(real, synth, p_real=0.5, seed=3, num_clips=12)
    batches = list(DataLoader(mixed, batch_size=2, num_workers=2, collate_fn=collate_clips))
    metas = [m for b in batches for m in b["meta"]]
    assert sorted(m["mix_index"] for m in metas) == list(range(12))
    synthetic = [m["index"] for m in metas if m["mixed_from"] == "synthetic"]
    assert synthetic and len(set(synthetic)) == len(synthetic)
    assert {m["source"] for m in metas} == {"ctc", "bvdm"}
    for b in batches:
        for i in range(len(b["tracks"])):
            check_clip({"video": b["video"][i], "masks": b["masks"][i], "tracks": b["tracks"][i], "meta": {}})


def test_bad_arguments(real):
    with pytest.raises(ValueError, match="p_real"):
        MixedStream(real, real, p_real=1.5)
    with pytest.raises(ValueError, match="empty"):
        MixedStream([], real)
    with pytest.raises(TypeError, match="no length"):
        len(MixedStream(real, real))
    one = next(iter(MixedStream(real, real, p_real=1.0, num_clips=1)))
    assert one["meta"]["mixed_from"] == "real" and isinstance(one["video"], torch.Tensor)


def test_transform_is_applied_to_every_mixed_clip(real):
    seen = []
    mixed = MixedStream(real, real, p_real=0.5, seed=1, num_clips=3,
                        transform=lambda clip: seen.append(clip["meta"]["mixed_from"]) or {**clip, "tag": 1})
    out = list(mixed)
    assert len(out) == 3 and all(c["tag"] == 1 for c in out) and len(seen) == 3
