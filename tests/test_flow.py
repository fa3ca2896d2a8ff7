"""Flow model: Kornia warping, pairs from real tracks, a tiny net learns a shift, resume, bundle part."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bvdm_data.errors import BVDMDataError
from bvdm_data.flow import (
    FlowConfig,
    FlowNet,
    export_flow,
    extract_flow_pairs,
    integrate_velocity,
    load_flow,
    registration_dice,
    smoothness,
    train_flow,
    warp,
)
from bvdm_data.flow.pairs import DIVISION, FlowPairs
from bvdm_data.training import TrainConfig, load_checkpoint

TINY = FlowConfig(channels=(8, 8, 8))


def blob(cy: float, cx: float, size: int = 32, r: float = 6.0) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    return (((yy - cy) ** 2 + (xx - cx) ** 2) <= r * r).float()[None, None]


def test_identity_flow_leaves_a_texture_unchanged():
    tex = torch.rand(3, 1, 24, 24, generator=torch.Generator().manual_seed(0))
    # bilinear sampling goes through normalised coordinates and back: float32 rounding, not a shift
    assert torch.allclose(warp(tex, torch.zeros(3, 2, 24, 24)), tex, atol=1e-5)
    assert torch.equal(warp(tex, torch.zeros(3, 2, 24, 24), mode="nearest"), tex)


def test_known_translation_is_recovered():
    moving = blob(16, 16)
    fixed = blob(16, 19)  # the cell moved 3 px right
    flow = torch.zeros(1, 2, 32, 32)
    flow[:, 1] = -3.0     # fixed(x) = moving(x - 3)
    assert torch.equal(warp(moving, flow, mode="nearest"), fixed)
    assert float(smoothness(flow)) == 0.0


def test_scaling_and_squaring_of_a_constant_velocity_is_that_shift():
    v = torch.zeros(1, 2, 16, 16)
    v[:, 0] = 2.0
    assert torch.allclose(integrate_velocity(v), v, atol=1e-4)


def test_warp_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="one size"):
        warp(torch.zeros(1, 1, 8, 8), torch.zeros(1, 2, 9, 9))


def test_pairs_from_real_tracks(res_video):
    masks, tracks = res_video
    pairs = extract_flow_pairs(masks[:20], tracks, size=64)
    assert len(pairs) > 500 and (pairs.kind == DIVISION).any()
    assert pairs.moving.shape[1:] == (1, 64, 64)
    centre = pairs.moving[:, 0, 32, 32]
    assert float(centre.mean()) > 0.95, "crops are centred on the cell"
    with pytest.raises(BVDMDataError, match="consecutive frames"):
        extract_flow_pairs(masks[:1], tracks)


def shifted_pairs(n: int = 64) -> FlowPairs:
    rng = np.random.default_rng(0)
    moving, fixed = [], []
    for _ in range(n):
        cy, cx = rng.uniform(12, 20, 2)
        moving.append(blob(cy, cx))
        fixed.append(blob(cy, cx + 2))
    return FlowPairs(torch.cat(moving), torch.cat(fixed), np.zeros(n, dtype=int), np.tile([0.0, 2.0], (n, 1)),
                     np.zeros(n, dtype=int))


def test_tiny_flow_net_learns_a_shift(tmp_path):
    pairs = shifted_pairs()
    result = train_flow(pairs, tmp_path, TrainConfig(iterations=150, batch_size=16, lr=3e-3, checkpoint_every=1000),
                        flow=TINY, progress=False)
    model = FlowNet(TINY)
    model.load_state_dict(load_checkpoint(result.checkpoint)["model"])
    scores = registration_dice(model, pairs)
    assert scores["flow"] > scores["centroid"] + 0.1, scores
    assert np.mean(result.losses[-20:]) < np.mean(result.losses[:20]) / 2


def test_flow_resume_is_exact_and_part_round_trips(tmp_path):
    pairs = shifted_pairs(16)
    config = TrainConfig(iterations=6, batch_size=4, checkpoint_every=3)
    a = train_flow(pairs, tmp_path / "a", config, flow=TINY, progress=False)
    train_flow(pairs, tmp_path / "b", TrainConfig(iterations=4, batch_size=4, checkpoint_every=3), flow=TINY,
               progress=False)
    b = train_flow(pairs, tmp_path / "b", config, flow=TINY, progress=False)
    sa, sb = load_checkpoint(a.checkpoint), load_checkpoint(b.checkpoint)
    assert all(torch.equal(sa["ema"][k], sb["ema"][k]) for k in sa["ema"])
    export_flow(a.checkpoint, tmp_path / "bundle", metrics={"flow": 0.9})
    model, crop = load_flow(str(tmp_path / "bundle"))
    assert crop == 32
    x = pairs.moving[:2]
    expected = FlowNet(TINY)
    expected.load_state_dict(sa["ema"])
    assert torch.allclose(model(x, pairs.fixed[:2]), expected.eval()(x, pairs.fixed[:2]))
    with pytest.raises(BVDMDataError, match="was trained with"):
        train_flow(pairs, tmp_path / "a", config, flow=FlowConfig(channels=(4, 4)), progress=False)


def test_diffeomorphic_variant_runs():
    net = FlowNet(FlowConfig(channels=(8, 8), diffeomorphic=True))
    out = net(blob(16, 16), blob(16, 18))
    assert out.shape == (1, 2, 32, 32) and torch.isfinite(out).all()


def test_cli_fit_flow_holds_out_frames_and_writes_the_part(tmp_path, res_video, capsys):
    from bvdm_data.bundle import Bundle
    from bvdm_data.cli import main
    from bvdm_data.clip import relabel_tracks
    from bvdm_data.ctc import write_ctc_result

    masks, tracks = res_video
    window, rows = relabel_tracks(masks[:12, :300, :400], {int(l): int(p) for l, _, _, p in tracks})
    write_ctc_result(window, rows, tmp_path / "01_RES")
    args = ["fit-flow", "--labels", str(tmp_path / "01_RES"), "--frames", "0:8", "--iterations", "3",
            "--batch-size", "4", "--out", str(tmp_path / "b")]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "held out" in out and "held-out mean Dice" in out and "wrote the flow part" in out
    metrics = Bundle.load(tmp_path / "b").part("flow")["config"]["metrics"]
    assert {"dice_identity", "dice_centroid", "dice_flow"} <= set(metrics)
    model, crop = load_flow(str(tmp_path / "b"))
    assert crop == 64
