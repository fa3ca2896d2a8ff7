"""Texture DDPM: schedule, network, crops, training with exact resume, batched sampling."""

from __future__ import annotations

import kornia
import numpy as np
import pytest
import torch

from bvdm_data.bundle import Bundle
from bvdm_data.ctc import open_sequence
from bvdm_data.diffusion import (
    CosineSchedule,
    Denoiser,
    TextureModel,
    TrainConfig,
    UNet,
    UNetConfig,
    export_texture,
    extract_cell_crops,
    flat_cells,
    sdedit,
    train_texture,
)
from bvdm_data.diffusion.edges import mean_inside
from bvdm_data.diffusion.noise import derive_key
from bvdm_data.diffusion.train import texture_model
from bvdm_data.training import ema_decay, load_checkpoint
from bvdm_data.errors import BVDMDataError

TINY = UNetConfig(channels=4, multipliers=(1, 2), time_dim=16)


@pytest.fixture(scope="module")
def crops(hela_root):
    return extract_cell_crops(open_sequence(hela_root, "02", labels="ERR_SEG"), size=32)


def keys(*seeds):
    return [derive_key(s) for s in seeds]


def test_schedule_properties():
    s = CosineSchedule(1000)
    ab = s.alpha_bar
    assert (ab[1:] < ab[:-1]).all() and 0.999 < ab[0] < 1 and 0 < ab[-1] < 1e-3
    x0, noise = torch.rand(3, 1, 8, 8) * 2 - 1, torch.randn(3, 1, 8, 8)
    t = torch.tensor([0, 500, 900])  # near T the inverse divides by sqrt(alpha_bar) ~ 0: float32 noise
    xt = s.add_noise(x0, t, noise)
    assert torch.allclose(s.predict_x0(xt, t, noise), x0, atol=1e-3)
    assert torch.allclose(xt[0], x0[0], atol=0.05)


def test_unet_shapes_and_size_check():
    net = UNet()
    assert 0.8e6 < sum(p.numel() for p in net.parameters()) < 1.0e6  # paper: ~0.9 M
    assert net(torch.zeros(1, 1, 96, 96), torch.tensor([5])).shape == (1, 1, 96, 96)
    with pytest.raises(ValueError, match="multiple of 16"):
        net(torch.zeros(1, 1, 40, 40), torch.tensor([5]))


def test_crops_are_whole_cells_in_range(crops):
    assert len(crops) > 30 and crops.images.shape[1:] == (1, 32, 32)
    assert float(crops.images.min()) >= -1 and float(crops.images.max()) <= 1
    centre = crops.masks[:, 16, 16]
    assert centre.float().mean() > 0.95, "crops are centred on their cell"
    edge = crops.masks[:, 0].any(1) | crops.masks[:, -1].any(1)
    assert not edge.all()
    stats = crops.statistics()
    assert stats["cell_mean"] > stats["background_mean"] + 0.3
    # The background is measured where no cell is: neighbours must not brighten it or inflate its noise.
    assert torch.equal(crops.empty, torch.stack([~m for m in crops.masks]) & crops.empty)
    empty_pixels = crops.images[:, 0][crops.empty]
    assert abs(stats["background_mean"] - float(empty_pixels.median())) < 1e-6
    assert stats["background_std"] < float(crops.images[:, 0][~crops.masks].std())


def test_painted_cells_keep_their_drawn_brightness():
    from bvdm_data.diffusion.sample import calibrate_brightness

    masks = torch.zeros(3, 16, 16, dtype=torch.bool)
    masks[:, 4:12, 4:12] = True
    painted = flat_cells(masks, torch.tensor([0.1, 0.3, -0.2]), -0.9) + 0.05 * torch.randn(3, 1, 16, 16)
    target = torch.tensor([0.2, 0.2, -0.5])
    out = calibrate_brightness(painted, masks, target, -0.9)
    means = torch.stack([out[i, 0][masks[i]].mean() for i in range(3)])
    assert torch.allclose(means, target, atol=2e-2)
    # A near-empty painting is not blown up: the gain is bounded.
    dark = calibrate_brightness(torch.full((1, 1, 16, 16), -0.9), masks[:1], torch.tensor([0.5]), -0.9)
    assert float(dark.max()) <= -0.9 + 1e-6


def test_crops_bad_input(hela_root):
    seq = open_sequence(hela_root, "02", labels="ERR_SEG")
    with pytest.raises(BVDMDataError, match="no whole cell fits a 8x8 crop"):
        extract_cell_crops(seq, size=8)
    with pytest.raises(BVDMDataError, match="no labelled frame"):
        extract_cell_crops(seq, size=32, frames=[99])


def test_tiny_model_overfits_a_few_crops(tmp_path, crops):
    few = crops.select(np.arange(8))
    result = train_texture(few, tmp_path, TrainConfig(iterations=300, batch_size=8, lr=3e-3, checkpoint_every=1000),
                           unet=TINY, progress=False)
    first, last = np.mean(result.losses[:30]), np.mean(result.losses[-30:])
    assert last < first / 2, (first, last)


def test_resume_reproduces_the_uninterrupted_run(tmp_path, crops):
    config = TrainConfig(iterations=12, batch_size=4, checkpoint_every=5)
    straight = train_texture(crops, tmp_path / "a", config, unet=TINY, progress=False)
    train_texture(crops, tmp_path / "b", TrainConfig(iterations=7, batch_size=4, checkpoint_every=5),
                  unet=TINY, progress=False)
    resumed = train_texture(crops, tmp_path / "b", config, unet=TINY, progress=False)
    assert resumed.step == straight.step == 12
    a, b = load_checkpoint(straight.checkpoint), load_checkpoint(resumed.checkpoint)
    for key in ("model", "ema"):
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), (key, name)
    assert a["losses"] == b["losses"]


def test_ema_warmup_follows_the_weights_of_a_short_run(tmp_path, crops):
    """A fixed 0.999 EMA of a 20-step run is still ~98 % the random initial weights; the warmed-up one is not."""
    def distance_to_model(warmup: bool) -> float:
        config = TrainConfig(iterations=20, batch_size=4, lr=1e-2, ema_warmup=warmup)
        state = load_checkpoint(train_texture(crops, tmp_path / str(warmup), config, unet=TINY,
                                              progress=False).checkpoint)
        return sum(float((state["ema"][k] - state["model"][k]).float().norm()) for k in state["model"])

    assert distance_to_model(True) < 0.5 * distance_to_model(False)
    decays = [ema_decay(TrainConfig(), step) for step in range(0, 20_000, 7)]
    assert decays[0] == 0.1 and np.all(np.diff(decays) >= 0) and decays[-1] == 0.999
    assert ema_decay(TrainConfig(ema_warmup=False), 0) == 0.999


def test_time_budget_leaves_a_checkpoint(tmp_path, crops):
    result = train_texture(crops, tmp_path, TrainConfig(iterations=10_000, batch_size=2), unet=TINY,
                           time_budget_s=0.0, progress=False)
    assert result.step == 0 and result.checkpoint.is_file()


def test_mismatched_checkpoints_are_refused(tmp_path, crops):
    train_texture(crops, tmp_path, TrainConfig(iterations=2, batch_size=2), unet=TINY, progress=False)
    other = UNetConfig(channels=8, multipliers=(1, 2), time_dim=16)
    with pytest.raises(BVDMDataError, match="was trained with.*Use another folder"):
        train_texture(crops, tmp_path, TrainConfig(iterations=4, batch_size=2), unet=other, progress=False)
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    with pytest.raises(BVDMDataError, match="ckpt: weights do not fit the stored architecture"):
        texture_model({"unet": other.to_dict()}, state["ema"], source="ckpt")
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(BVDMDataError, match="not a bvdm-data checkpoint"):
        load_checkpoint(tmp_path / "bad.pt")
    torch.save({"format": 99}, tmp_path / "future.pt")
    with pytest.raises(BVDMDataError, match="format 99"):
        load_checkpoint(tmp_path / "future.pt")


@pytest.fixture(scope="module")
def denoiser():
    torch.manual_seed(0)
    return Denoiser(UNet(TINY), CosineSchedule(1000))


def _starts(n):
    masks = torch.zeros(n, 32, 32, dtype=torch.bool)
    masks[:, 10:22, 8:24] = True
    return flat_cells(masks, torch.linspace(-0.2, 0.4, n), -0.9)


@pytest.mark.parametrize("sampler, stride", [("ddpm", 1), ("ddim", 5)])
def test_sampling_is_deterministic_and_batch_invariant(denoiser, sampler, stride):
    a, b = _starts(3), _starts(2) * 0.5
    alone = sdedit(denoiser, a, 20, keys(7, 8, 9), sampler, stride)
    again = sdedit(denoiser, a, 20, keys(7, 8, 9), sampler, stride)
    assert torch.equal(alone, again)
    together = sdedit(denoiser, torch.cat([b, a]), 20, keys(1, 2, 7, 8, 9), sampler, stride)
    assert torch.allclose(together[2:], alone, atol=1e-5)
    # Each image's noise is its own: reordered and split calls give the same images.
    reordered = sdedit(denoiser, a.flip(0), 20, keys(9, 8, 7), sampler, stride)
    assert torch.allclose(reordered.flip(0), alone, atol=1e-5)
    other_seed = sdedit(denoiser, a, 20, keys(17, 18, 19), sampler, stride)
    assert not torch.allclose(other_seed, alone)
    assert alone.shape == a.shape and float(alone.abs().max()) <= 1


def test_bf16_denoiser_runs_a_bf16_copy_and_leaves_the_callers_network_alone(denoiser):
    half = Denoiser(denoiser.model, denoiser.schedule, bf16=True)
    assert next(denoiser.model.parameters()).dtype == torch.float32
    assert next(half.model.parameters()).dtype == torch.bfloat16
    x, t = _starts(4), torch.tensor([5, 50, 200, 600])
    full, out = denoiser.eps(x, t), half.eps(x, t)
    assert out.dtype == torch.float32 and out.shape == full.shape
    assert 0 < float((out - full).norm() / full.norm()) < 0.05  # float rounding, not another function


def test_compiled_denoiser_pads_batches_to_few_shapes_and_paints_the_same(denoiser):
    """compile=True: a few compilations whatever the batch sizes (padded to quarter-octave steps >= 8: few CUDA
    graphs); the images are the eager ones. The aot_eager backend checks the capture and the padding without a C++
    build (inductor compiles the same graph)."""
    compiled = Denoiser(denoiser.model, denoiser.schedule, compile=True, compile_backend="aot_eager")
    torch._dynamo.reset()
    graphs = []
    for n in (3, 5, 9, 17, 40, 70):
        eager = sdedit(denoiser, _starts(n), 6, keys(*range(n)), "ddim", 2)
        assert torch.allclose(sdedit(compiled, _starts(n), 6, keys(*range(n)), "ddim", 2), eager, atol=1e-5)
        graphs.append(torch._dynamo.utils.counters["stats"]["unique_graphs"])
    # 8 static, then a dynamic batch (once more if its first size sat under a broadcast dimension of the
    # network): no recompile per step or per further batch size.
    assert graphs[0] == graphs[1] == 1 and graphs[-1] == graphs[3] <= 3


def test_sampling_edge_cases_and_errors(denoiser):
    x = _starts(2)
    assert torch.equal(sdedit(denoiser, x, 0, keys(0, 1)), x)
    with pytest.raises(BVDMDataError, match="t must lie in"):
        sdedit(denoiser, x, 1001, keys(0, 1))
    with pytest.raises(BVDMDataError, match="sampler"):
        sdedit(denoiser, x, 5, keys(0, 1), sampler="euler")
    with pytest.raises(BVDMDataError, match=r"\[N, 1, S, S\]"):
        sdedit(denoiser, x[:, 0], 5, keys(0, 1))
    with pytest.raises(BVDMDataError, match="2 images need 2 noise keys"):
        sdedit(denoiser, x, 5, keys(0, 1, 2))
    with pytest.raises(BVDMDataError, match=r"masks must be \[N, S, S\]"):
        flat_cells(torch.zeros(32, 32, dtype=torch.bool), 0.0, -1.0)


def test_texture_part_round_trip(tmp_path, crops, denoiser):
    result = train_texture(crops, tmp_path / "run", TrainConfig(iterations=3, batch_size=2), unet=TINY,
                           progress=False)
    export_texture(result.checkpoint, tmp_path / "bundle", crops.statistics())
    texture = TextureModel.load(str(tmp_path / "bundle"))
    assert texture.crop_size == 32 and texture.statistics == crops.statistics()
    ema = load_checkpoint(result.checkpoint)["ema"]
    x, t = _starts(2), torch.tensor([3, 300])
    expected = texture_model({"unet": TINY.to_dict()}, ema)(x, t)
    assert torch.allclose(texture.denoiser.eps(x, t), expected, atol=1e-6)
    assert Bundle.load(tmp_path / "bundle").part("texture")["config"]["training"]["steps_done"] == 3


def test_quality_distances_order_real_flat_and_identical(crops):
    from bvdm_data.evaluate.quality import CropSummary, flat_baseline, summary_distances, texture_distances
    from bvdm_data.evaluate.realism import cell_region

    half = len(crops) // 2
    bg = crops.statistics()["background_mean"]
    a = cell_region(crops.images[:half], crops.masks[:half], bg)
    b = cell_region(crops.images[half:2 * half], crops.masks[half:2 * half], bg)
    same = texture_distances(a, a)
    assert same["intensity"] == 0 and same["spectrum"] == 0 and abs(same["frechet"]) < 1e-4
    real = texture_distances(b, a)
    # The same cells with their texture blurred away are farther in spectrum and random features.
    smooth = texture_distances(kornia.filters.gaussian_blur2d(b, (9, 9), (2.0, 2.0)), a)
    assert smooth["spectrum"] > 2 * real["spectrum"], (smooth, real)
    flat = flat_baseline(crops.masks[:half], crops.statistics())
    assert flat.shape == a.shape and flat.min() >= -1 and flat.max() <= 1
    # A resample scored from the summaries is the distance of the crops it picks.
    pick = np.random.default_rng(0).integers(0, half, half)
    picked = summary_distances(CropSummary(b), CropSummary(a), pick, pick)
    assert picked == pytest.approx(texture_distances(b[pick], a[pick]), rel=1e-6)


def test_frechet_features_see_texture_not_only_brightness():
    from bvdm_data.evaluate.quality import texture_distances

    gen = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.arange(32), torch.arange(32), indexing="ij")
    disc = ((yy - 16) ** 2 + (xx - 16) ** 2 < 100).float()

    def cells(textured: bool) -> torch.Tensor:
        level = 0.3 + 0.2 * torch.rand(300, 1, 1, 1, generator=gen)
        grain = kornia.filters.gaussian_blur2d(torch.randn(300, 1, 32, 32, generator=gen), (5, 5), (1.0, 1.0))
        return (-0.9 + disc * (level + 1.5 * textured * grain)).clamp(-1, 1)

    reference, textured, flat = cells(True), cells(True), cells(False)
    assert texture_distances(flat, reference)["frechet"] > 3 * texture_distances(textured, reference)["frechet"]


def test_cli_fit_texture_resumes_then_writes_the_bundle(tmp_path, hela_root, capsys):
    from bvdm_data.cli import main

    args = ["fit-texture", "--ctc", str(hela_root), "--seq", "02", "--annotation", "ERR_SEG", "--frames", "0:3",
            "--crop-size", "32", "--iterations", "2", "--batch-size", "2", "--out", str(tmp_path / "b")]
    assert main(args + ["--hours", "0"]) == 0
    assert "run the same command again" in capsys.readouterr().out
    assert not (tmp_path / "b").exists()
    assert main(args) == 0
    assert "wrote the texture and scene parts" in capsys.readouterr().out
    assert TextureModel.load(str(tmp_path / "b")).crop_size == 32
    assert main(args[:-2] + ["--frames", "x", "--out", str(tmp_path / "c")]) == 2

    # fine-tuning starts from the bundle's EMA weights: after 0 steps the new texture is the old one
    tune = [*args[:-2], "--out", str(tmp_path / "d"), "--work", str(tmp_path / "d_work"), "--init-from", str(tmp_path / "b")]
    assert main([*tune[:tune.index("--iterations") + 1], "0", *tune[tune.index("--iterations") + 2:]]) == 0
    assert "fine-tuning" in capsys.readouterr().out
    old, new = (Bundle.load(tmp_path / name) for name in ("b", "d"))
    for key, value in old.read_state_dict("texture", "ema.pt").items():
        assert torch.equal(value, new.read_state_dict("texture", "ema.pt")[key]), key
    assert new.read_json("texture", "texture.json")["initialised_from"].startswith("b texture, ema.pt sha256 ")
    assert main([*tune[:tune.index("--crop-size") + 1], "48", *tune[tune.index("--crop-size") + 2:]]) != 0
    assert "trained on 32 px crops, these are 48 px; pass --crop-size 32" in capsys.readouterr().err

    assert main([*args[:-2], "--out", str(tmp_path / "e"), "--work", str(tmp_path / "e_work"), "--channels", "4"]) == 0
    assert Bundle.load(tmp_path / "e").read_json("texture", "texture.json")["unet"]["channels"] == 4
    assert main([*args[:-2], "--out", str(tmp_path / "f"), "--channels", "0"]) != 0
    assert "--channels must be at least 1, got 0" in capsys.readouterr().err


def test_brightness_follows_the_real_law(crops):
    from bvdm_data.diffusion.crops import sample_brightness

    stats = crops.statistics()
    values = sample_brightness(stats, 20_000, torch.Generator().manual_seed(0)).numpy()
    q = np.asarray(stats["cell_mean_quantiles"])
    assert values.min() >= q[0] - 1e-6 and values.max() <= q[-1] + 1e-6
    assert abs(np.median(values) - q[50]) < 0.02 and abs(np.percentile(values, 10) - q[10]) < 0.03
    # the inverse CDF of the stored quantiles, from the generator's uniform draws
    u = torch.rand(5, generator=torch.Generator().manual_seed(3), dtype=torch.float64).numpy() * 100
    expected = np.interp(u, np.arange(101), q)
    assert np.allclose(sample_brightness(stats, 5, torch.Generator().manual_seed(3)).numpy(), expected, atol=1e-6)


def test_brightness_by_area_draws_each_cell_from_its_size_class(crops):
    from bvdm_data.diffusion.crops import AREA_BINS, brightness_by_area, sample_brightness

    stats = crops.statistics()
    assert len(crops) < AREA_BINS * 20 and stats["cell_mean_by_area"] is None  # too few cells for five classes
    areas = crops.masks.flatten(1).sum(1).numpy()
    means = mean_inside(crops.images, crops.masks).numpy()
    law = brightness_by_area(means, areas, bins=3, min_cells=10)
    stats["cell_mean_by_area"] = law
    assert len(law["area_edges"]) == 2 and len(law["quantiles"]) == 3
    assert law["area_edges"] == sorted(law["area_edges"])
    for k, (low, high) in enumerate(zip([0.0, *law["area_edges"]], [*law["area_edges"], np.inf])):
        inside = means[(areas > low) & (areas < high)]
        assert np.isclose(law["quantiles"][k][50], np.median(inside), atol=0.05), k
    # cells of the smallest and of the largest class come from their class's law alone
    for k, area in ((0, law["area_edges"][0] - 1), (2, law["area_edges"][-1] + 1)):
        q = np.asarray(law["quantiles"][k])
        drawn = sample_brightness(stats, 4000, torch.Generator().manual_seed(k), np.full(4000, area)).numpy()
        assert q[0] - 1e-6 <= drawn.min() and drawn.max() <= q[-1] + 1e-6
        assert abs(np.median(drawn) - q[50]) < 0.03
    # the same uniform draws either way: a marginal draw and a draw by area differ only through the tables
    g = lambda: torch.Generator().manual_seed(9)  # noqa: E731
    assert not torch.equal(sample_brightness(stats, 50, g()), sample_brightness(stats, 50, g(), np.full(50, 1.0)))
    assert torch.equal(sample_brightness({**stats, "cell_mean_by_area": None}, 50, g(), np.full(50, 1.0)),
                       sample_brightness(stats, 50, g()))
    with pytest.raises(BVDMDataError, match="3 areas for 4 cells"):
        sample_brightness(stats, 4, g(), [1.0, 2.0, 3.0])
    assert brightness_by_area(means[:29], areas[:29], bins=3, min_cells=10) is None
