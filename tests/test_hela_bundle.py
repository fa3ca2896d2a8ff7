"""The shipped hela bundle: complete, verified, and it streams valid clips (tiny settings, real weights)."""

from __future__ import annotations

from bvdm_data import BVDMStream, check_clip
from bvdm_data.bundle import Bundle


def test_hela_bundle_is_complete_and_verified():
    bundle = Bundle.load("hela")
    assert set(bundle.parts) == {"masks", "texture", "flow", "scene"}
    assert (bundle.root / "MODEL_CARD.md").is_file()


def test_hela_streams_valid_clips():
    stream = BVDMStream("hela", clip_len=3, size=(96, 96), t_s=5, t_f=1, density=3e-4, num_clips=2, gen_batch=2)
    clips = list(stream)
    for clip in clips:
        check_clip(clip)
        assert clip["meta"]["bundle"] == "hela" and len(clip["tracks"]) > 0
