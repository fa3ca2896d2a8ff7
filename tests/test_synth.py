"""The pipeline: contract, determinism, batch invariance, settings checks, scene composition."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bvdm_data import check_clip
from bvdm_data.errors import BVDMDataError
from bvdm_data.synth import SynthesisSettings, Synthesizer, compose

FAST = SynthesisSettings(t_s=20, t_f=3, density=4e-4)
PLAIN = SynthesisSettings(t_s=20, t_f=3, density=4e-4, formation=None)  # as painted: no image formation drawn


def seeds(*values):
    return [np.random.SeedSequence(v) for v in values]


def test_clips_meet_the_contract(tiny_bundle):
    synth = Synthesizer(str(tiny_bundle), settings=FAST)
    clips = synth.generate(seeds(0, 1), num_frames=5, size=(96, 80))
    for clip in clips:
        check_clip(clip)
        assert clip["video"].shape == (5, 1, 96, 80)
        assert clip["meta"]["source"] == "bvdm" and clip["meta"]["synth_t_s"] == 20
        assert len(clip["tracks"]) > 0
        # Cells are brighter than the background (the texture statistics put them there).
        v, m = clip["video"][:, 0], clip["masks"]
        assert float(v[m > 0].mean()) > float(v[m == 0].mean())


def test_same_seed_same_clip_whatever_the_batch(tiny_bundle):
    synth = Synthesizer(str(tiny_bundle), settings=FAST)
    alone = synth.generate(seeds(7), 4, (64, 64))[0]
    batched = synth.generate(seeds(3, 7, 9), 4, (64, 64))[1]
    assert torch.equal(alone["masks"], batched["masks"]) and torch.equal(alone["tracks"], batched["tracks"])
    assert torch.allclose(alone["video"], batched["video"], atol=1e-4)
    other = synth.generate(seeds(8), 4, (64, 64))[0]
    assert not torch.equal(alone["masks"], other["masks"])


def test_carried_cells_flicker_less_than_repainted_ones(tiny_bundle):
    """t_f small keeps a cell's texture from frame to frame; t_f = t_s repaints it (paper, Table 2b)."""
    def flicker(t_f):
        synth = Synthesizer(str(tiny_bundle), settings=SynthesisSettings(t_s=20, t_f=t_f, density=4e-4))
        clip = synth.generate(seeds(11), 4, (64, 64))[0]
        v, m = clip["video"][:, 0], clip["masks"]
        both = (m[1:] > 0) & (m[1:] == m[:-1])
        return float((v[1:] - v[:-1]).abs()[both].mean())
    assert flicker(2) < flicker(20)


def test_independent_frames_flicker_most(tiny_bundle):
    from bvdm_data.evaluate import flicker

    def run(**kw):
        synth = Synthesizer(str(tiny_bundle), settings=SynthesisSettings(t_s=20, density=4e-4, **kw))
        clip = synth.generate(seeds(11), 4, (64, 64))[0]
        return flicker(clip["video"], clip["masks"], size=32)
    assert run(t_f=2) < run(independent_frames=True)


def test_the_default_sampler_is_ddim_every_fourth_step_and_ddpm_takes_every_step():
    assert (SynthesisSettings().sampler, SynthesisSettings().stride) == ("ddim", 4)
    assert SynthesisSettings(sampler="ddpm").stride == 1
    assert SynthesisSettings(sampler="ddim", stride=10).stride == 10


@pytest.mark.parametrize("settings, match", [
    (SynthesisSettings(t_s=0), "t_s must lie"),
    (SynthesisSettings(t_s=20, t_f=30), "t_f must lie in 0..t_s"),
    (SynthesisSettings(sampler="heun"), "sampler"),
    (SynthesisSettings(sampler="ddpm", stride=4), "stride=4 needs sampler='ddim'"),
    (SynthesisSettings(stride=0), "stride must be at least 1"),
    (SynthesisSettings(density=-1.0), "density"),
    (SynthesisSettings(texture="gan"), "texture must be one of"),
    (SynthesisSettings(overlap="max"), "overlap must be one of"),
    (SynthesisSettings(pressed=1.5), "pressed must lie in 0..1"),
    (SynthesisSettings(brightness="by_size"), "brightness must be one of"),
])
def test_bad_settings_fail_before_any_work(tiny_bundle, settings, match):
    with pytest.raises(BVDMDataError, match=match):
        Synthesizer(str(tiny_bundle), settings=settings)


@pytest.mark.parametrize("contrast, match", [((2.0, 0.5), "0 < lo <= hi"), ((0.0, 1.0), "0 < lo <= hi"),
                                             ((1.0, float("inf")), "0 < lo <= hi"), ((1.0,), "two numbers"),
                                             ("bright", "two numbers"), ("12", "two numbers")])
def test_a_bad_contrast_range_fails_when_the_settings_are_made(contrast, match):
    with pytest.raises(BVDMDataError, match=match):
        SynthesisSettings(contrast=contrast)


def test_contrast_scales_each_clips_light_about_the_background_and_keeps_its_labels(tiny_bundle):
    """One gain per clip, drawn in the range from the clip's own key: the light above the background level
    scales by it (before the 0..1 clamp), masks and tracks stay, and a clip is the same in any batch."""
    from bvdm_data.scene.model import SceneModel

    plain = Synthesizer(str(tiny_bundle), settings=PLAIN).generate(seeds(3, 4, 5), 2, (64, 64))
    varied = Synthesizer(str(tiny_bundle), settings=SynthesisSettings(t_s=20, t_f=3, density=4e-4,
                                                                     contrast=(0.5, 2.0), formation=None))
    clips = varied.generate(seeds(3, 4, 5), 2, (64, 64))
    level = (SceneModel.load(str(tiny_bundle)).background_mean + 1) / 2  # the background level on the 0..1 scale
    gains = []
    for a, b in zip(plain, clips):
        check_clip(b)
        assert torch.equal(a["masks"], b["masks"]) and torch.equal(a["tracks"], b["tracks"])
        gain = b["meta"]["synth_gain"]
        assert 0.5 <= gain <= 2.0 and (b["meta"]["synth_contrast_lo"], b["meta"]["synth_contrast_hi"]) == (0.5, 2.0)
        inside = (b["video"] > 0.001) & (b["video"] < 0.999) & (a["video"] > 0.001) & (a["video"] < 0.999)
        expected = level + gain * (a["video"] - level)
        assert torch.allclose(b["video"][inside], expected[inside], atol=1e-5)
        gains.append(gain)
    assert len(set(gains)) == 3  # a gain per clip, not per batch
    alone = varied.generate(seeds(4), 2, (64, 64))[0]
    assert alone["meta"]["synth_gain"] == gains[1] and torch.allclose(alone["video"], clips[1]["video"], atol=1e-4)


def test_brightness_by_area_draws_each_new_cell_from_the_law_of_its_size(tiny_bundle, tmp_path):
    """Two size classes with one brightness each: every new cell's drawn value is its class's; the marginal
    law ignores size. The simulated masks are the same either way."""
    import json
    import shutil

    from bvdm_data.bundle import BundleWriter

    with pytest.raises(BVDMDataError, match="needs the bundle's brightness law by size"):  # too few cells for one
        Synthesizer(str(tiny_bundle), settings=SynthesisSettings(brightness="by_area"))
    marginal = Synthesizer(str(tiny_bundle), settings=SynthesisSettings(density=6e-4)).plan(seeds(1, 2), 3, (96, 96))
    edge = float(np.median([c.mask.sum() for c in marginal.crops[0][0].values()]))
    bundle = tmp_path / "with_law"
    shutil.copytree(tiny_bundle, bundle)
    info = json.loads((bundle / "texture" / "texture.json").read_text())
    info["statistics"]["cell_mean_by_area"] = {"area_edges": [edge], "quantiles": [[-0.5] * 101, [0.5] * 101]}
    BundleWriter(bundle).update_json("texture", "texture.json", info, {})
    plans = {law: Synthesizer(str(bundle), settings=SynthesisSettings(density=6e-4, brightness=law)).plan(
        seeds(1, 2), 3, (96, 96)) for law in ("by_area", "marginal")}
    assert plans["marginal"].values == marginal.values  # the law by size is read only when asked for
    by_area, marginal = plans["by_area"], plans["marginal"]
    assert by_area.new == marginal.new and len(by_area.new) > 10
    sizes = {cell: int(by_area.crops[cell[0]][cell[1]][cell[2]].mask.sum()) for cell in by_area.new}
    assert {by_area.values[c] for c in by_area.new if sizes[c] < edge} == {-0.5}
    assert {by_area.values[c] for c in by_area.new if sizes[c] > edge} == {0.5}
    assert not {marginal.values[c] for c in marginal.new} <= {-0.5, 0.5}


def test_compose_pastes_inside_and_keeps_background_elsewhere():
    bg = torch.zeros(1, 10, 10)
    tex = torch.ones(2, 1, 4, 4)
    alpha = torch.zeros(2, 1, 4, 4)
    alpha[:, :, 1:3, 1:3] = 1
    out = compose(bg, tex, alpha, torch.tensor([[0, 0], [8, 8]]))  # the second crop hangs off the frame
    assert out[0, 1, 1] == 1 and out[0, 9, 9] == 1 and out[0, 5, 5] == 0
    assert int((out > 0).sum()) == 4 + 1


def test_compose_adds_the_light_of_touching_cells_or_averages_it():
    """Two cells meeting edge to edge: added light keeps the seam as bright as fluorescence does; averaging their
    paintings dims it to the mean of their edges (the dark valley real touching nuclei lack)."""
    bg = torch.full((1, 6, 8), 0.1)  # one row profile, repeated down 6 rows (crops are square)
    tex = torch.tensor([[0.1, 0.9, 0.9, 0.5, 0.1, 0.1], [0.1, 0.1, 0.5, 0.9, 0.9, 0.1]]).view(2, 1, 1, 6).expand(2, 1, 6, 6)
    alpha = torch.tensor([[0.0, 1.0, 1.0, 1.0, 0.5, 0.0], [0.0, 0.5, 1.0, 1.0, 1.0, 0.0]]).view(2, 1, 1, 6).expand(2, 1, 6, 6)
    corners = torch.tensor([[0, 1], [0, 1]])
    added = compose(bg, tex, alpha, corners, overlap="add")[0, 2]
    averaged = compose(bg, tex, alpha, corners, overlap="average")[0, 2]
    # where only one footprint lies, both rules paste the same soft light over the background
    assert torch.allclose(added[[0, 6, 7]], torch.full((3,), 0.1)) and torch.allclose(added[[0, 6, 7]], averaged[[0, 6, 7]])
    # the seam (columns 3-4: both cells, both alphas 1): added = 0.1 + 0.4 + 0.8, averaged = (0.5 + 0.9) / 2
    assert torch.allclose(added[3:5], torch.tensor([1.3, 1.3])) and torch.allclose(averaged[3:5], torch.tensor([0.7, 0.7]))
    with pytest.raises(ValueError, match="overlap must be one of"):
        compose(bg, tex, alpha, corners, overlap="max")


def test_pressed_partners_are_symmetric_and_steady_per_pair():
    from bvdm_data.synth.pipeline import pressed_partners

    frame = np.zeros((6, 9), np.int32)
    frame[:, :3], frame[:, 3:6], frame[:, 7:] = 1, 2, 3  # 1 touches 2; 3 stands apart
    draw = np.array([0.0, 0.1, 0.2, 0.3])
    assert pressed_partners(frame, 1.0, draw) == {1: {2}, 2: {1}}
    assert pressed_partners(frame, 0.31, draw) == {1: {2}, 2: {1}}  # (0.1 + 0.2) % 1 < 0.31
    assert pressed_partners(frame, 0.29, draw) == {} and pressed_partners(frame, 0.0, draw) == {}


def test_pressed_cells_weights_add_to_one_across_their_contact(tiny_bundle):
    """Free cells' soft footprints overlap where they meet (their light adds: a bright ridge if each were painted
    on through the contact); pressed ones give way to each other, so their weights sum to about 1 there."""
    synth = Synthesizer(str(tiny_bundle), settings=FAST)
    left = torch.zeros(2, 32, 32, dtype=torch.bool)
    left[0, 8:24, 4:16] = True     # cell A
    left[1, 8:24, 16:28] = True    # cell B, pressed against A along column 15/16
    cut = left.flip(0)             # each one's cut: the other's pixels
    free = synth.scene.alpha(left)[:, 0].sum(0)
    pressed = synth.scene.alpha(left, cut)[:, 0].sum(0)
    assert float(free[16, 14:18].min()) > 1.5
    assert torch.allclose(pressed[12:20, 13:19], torch.ones(8, 6), atol=0.06)
    assert torch.equal(synth.scene.alpha(left, cut)[0, 0, 8:24, 4:10], torch.ones(16, 6))  # far from the contact


def test_pressed_pairs_lose_their_seam_and_keep_masks_and_lineage(tiny_bundle):
    """The same clip painted with touching pairs pressed: the same cells, outlines and tracks; where they meet
    the light keeps more of their contrast (flat texture: no network noise in the comparison)."""
    from bvdm_data.evaluate.frames import frame_statistics

    def clip(pressed):
        settings = SynthesisSettings(t_s=20, t_f=3, density=1.2e-3, texture="flat", labels="masks", pressed=pressed)
        return Synthesizer(str(tiny_bundle), settings=settings).generate(seeds(5, 6), 2, (96, 96))
    free, pressed = clip(0.0), clip(1.0)
    for a, b in zip(free, pressed):
        check_clip(b)
        assert torch.equal(a["masks"], b["masks"]) and torch.equal(a["tracks"], b["tracks"])
    seam_free, seam_pressed = frame_statistics(free)["seam"], frame_statistics(pressed)["seam"]
    assert seam_free.size >= 3 and seam_free.size == seam_pressed.size
    assert np.median(seam_pressed) > np.median(seam_free) + 0.1


def test_carry_over_leaves_only_background_outside_the_new_mask(tiny_bundle):
    from bvdm_data.synth.propagation import carry_over

    synth = Synthesizer(str(tiny_bundle), settings=FAST)
    moving = torch.zeros(2, 32, 32, dtype=torch.bool)
    moving[:, 8:20, 8:20] = True
    fixed = torch.zeros_like(moving)
    fixed[:, 12:24, 10:22] = True
    previous = torch.rand(2, 1, 32, 32)
    out = carry_over(synth.texture.denoiser, synth.flow, previous, moving, fixed, synth.scene.alpha, -0.9,
                     [1, 2], t_f=0)
    outside = synth.scene.alpha(fixed) == 0
    assert outside.any() and torch.all(out[outside] == -0.9)
    assert not torch.all(out[~outside] == -0.9)


def test_frames_keep_the_scene_background_away_from_cells(tiny_bundle):
    synth = Synthesizer(str(tiny_bundle), settings=SynthesisSettings(t_s=20, t_f=3, density=4e-4, labels="masks",
                                                                     formation=None))
    from bvdm_data.diffusion.noise import derive_key
    from bvdm_data.synth.pipeline import BACKGROUND

    seed = seeds(4)[0]
    clip = synth.generate([seed], 3, (64, 64))[0]
    assert torch.equal(clip["video"], synth.generate([seed], 3, (64, 64))[0]["video"]), "seeds are not consumed"
    key = synth.plan([seed], 3, (64, 64)).keys[0]
    half = synth.crop_size // 2
    background = synth.scene.background(3, (64 + 2 * half, 64 + 2 * half), derive_key(key, BACKGROUND),
                                        torch.device("cpu"))
    expected = ((background[:, :, half:half + 64, half:half + 64] + 1) / 2).clamp(0, 1)
    near = torch.nn.functional.max_pool2d((clip["masks"] > 0).float()[:, None], 11, stride=1, padding=5) > 0
    far = ~near
    far[..., :6, :] = far[..., -6:, :] = far[..., :, :6] = far[..., :, -6:] = False  # cells just outside the view
    assert far.sum() > 1000
    assert torch.allclose(clip["video"][far], expected[far], atol=1e-6)


def test_flat_texture_uses_the_same_masks_and_paints_flat_cells(tiny_bundle):
    masks_only = SynthesisSettings(t_s=20, t_f=3, density=4e-4, labels="masks")  # labels not redrawn per texture
    ddpm = Synthesizer(str(tiny_bundle), settings=masks_only).generate(seeds(3), num_frames=3, size=(96, 96))[0]
    # The 1-px blurred start (no measured edge profile), whose inside is flat up to the rim.
    flat_settings = SynthesisSettings(t_s=20, t_f=3, density=4e-4, texture="flat", edge="blur", labels="masks")
    flat = Synthesizer(str(tiny_bundle), settings=flat_settings).generate(seeds(3), num_frames=3, size=(96, 96))[0]
    check_clip(flat)
    assert torch.equal(flat["masks"], ddpm["masks"]) and torch.equal(flat["tracks"], ddpm["tracks"])
    assert flat["meta"]["synth_texture"] == "flat" and not torch.equal(flat["video"], ddpm["video"])
    # Inside a cell (away from its blurred rim) a flat cell varies by pixel noise only.
    m = flat["masks"][0].numpy()
    label = int(np.bincount(m[m > 0]).argmax())
    from scipy import ndimage
    core = ndimage.binary_erosion(m == label, iterations=3)
    assert float(flat["video"][0, 0].numpy()[core].std()) < 0.05


def test_cell_batch_caps_each_call_and_keeps_clips_independent_of_the_batch(tiny_bundle, monkeypatch):
    from bvdm_data.diffusion.sample import Denoiser

    one = SynthesisSettings(t_s=20, t_f=3, density=4e-4, cell_batch=1)
    synth = Synthesizer(str(tiny_bundle), settings=one)
    widths = []
    eps = Denoiser.eps
    monkeypatch.setattr(Denoiser, "eps", lambda self, x, t: widths.append(len(x)) or eps(self, x, t))
    alone = synth.generate(seeds(5), num_frames=3, size=(96, 96))[0]
    assert set(widths) == {1}
    together = synth.generate(seeds(4, 5), num_frames=3, size=(96, 96))[1]
    assert torch.allclose(alone["video"], together["video"], atol=1e-5)
    assert torch.equal(alone["masks"], together["masks"])
    widths.clear()
    default = Synthesizer(str(tiny_bundle), settings=FAST).generate(seeds(5), num_frames=3, size=(96, 96))[0]
    assert max(widths) > 1
    # Every cell has its own noise key: chunking the work changes no pixel beyond float rounding.
    assert torch.equal(default["masks"], alone["masks"])
    assert torch.allclose(default["video"], alone["video"], atol=1e-5)
    with pytest.raises(BVDMDataError, match="cell_batch"):
        Synthesizer(str(tiny_bundle), settings=SynthesisSettings(cell_batch=0))


def test_wide_schedule_paints_the_same_clips_in_fewer_sequential_calls(tiny_bundle, monkeypatch):
    """All first appearances in one pass: t_s + (T - 1) t_f calls instead of T (t_s + t_f) at most (DDPM)."""
    from bvdm_data.diffusion.sample import Denoiser

    calls = []
    eps = Denoiser.eps
    monkeypatch.setattr(Denoiser, "eps", lambda self, x, t: calls.append(len(x)) or eps(self, x, t))
    frames, clips = 4, {}
    for schedule in ("frame", "wide"):
        calls.clear()
        synth = Synthesizer(str(tiny_bundle), settings=SynthesisSettings(t_s=20, t_f=3, density=6e-4,
                                                                         sampler="ddpm", schedule=schedule))
        plan = synth.plan(seeds(1, 2, 3), frames, (96, 96))
        clips[schedule] = synth.paint(plan)
        clips[schedule + " calls"] = len(calls)
    assert any(t > 0 for _, t, _ in plan.new), "no cell appears after frame 0: the test shows nothing"
    assert clips["wide calls"] == 20 + (frames - 1) * 3 < clips["frame calls"]
    for a, b in zip(clips["frame"], clips["wide"]):
        check_clip(b)
        assert torch.equal(a["masks"], b["masks"]) and torch.equal(a["tracks"], b["tracks"])
        assert torch.allclose(a["video"], b["video"], atol=1e-5)
    with pytest.raises(BVDMDataError, match="schedule"):
        Synthesizer(str(tiny_bundle), settings=SynthesisSettings(schedule="sometimes"))


def test_scene_background_ignores_cells_the_segmentation_missed(tmp_path, hela_root):
    import shutil

    import tifffile

    from bvdm_data.ctc import open_sequence
    from bvdm_data.scene.model import SceneModel

    seq = open_sequence(hela_root, "02", labels="ERR_SEG")
    lo_hi = (float(np.percentile(seq.images.read(0), 1)), float(np.percentile(seq.images.read(0), 99.9)))
    full = SceneModel.fit(seq, lo_hi)
    # The same frames with every third cell unlabelled, as a segmentation that misses cells would leave them.
    shutil.copytree(hela_root / "02", tmp_path / "02")
    (tmp_path / "02_ERR_SEG").mkdir()
    for f in seq.labels.frames:
        labels = seq.labels.read(f)
        tifffile.imwrite(tmp_path / "02_ERR_SEG" / f"mask{f:03d}.tif", np.where(labels % 3 == 0, 0, labels))
    missed = SceneModel.fit(open_sequence(tmp_path, "02", labels="ERR_SEG"), lo_hi)
    assert abs(missed.background_mean - full.background_mean) < 0.01
    assert missed.noise_std < 1.5 * full.noise_std and missed.background_smooth_std < 2 * full.background_smooth_std + 0.005
    # The background is far flatter than the cells are bright: no cell-sized blobs are invented.
    assert full.background_smooth_std < 0.02 and full.noise_std < 0.03


def test_formation_draws_each_clips_image_formation_from_its_key_and_keeps_its_labels(tiny_bundle):
    """One draw of the photometric changes per clip, from the clip's own key: the painted clip changed as
    vary_formation changes it, masks and tracks kept, the ranges in the meta, and a clip the same in any batch."""
    from bvdm_data.photometric import Photometric
    from bvdm_data.synth.pipeline import vary_formation

    blur = Photometric(contrast=None, noise=None, blur=(1.5, 1.5), p=1.0)
    plain = Synthesizer(str(tiny_bundle), settings=PLAIN).generate(seeds(3, 4), 2, (64, 64))
    varied = Synthesizer(str(tiny_bundle), settings=SynthesisSettings(t_s=20, t_f=3, density=4e-4, formation=blur))
    clips = varied.generate(seeds(3, 4), 2, (64, 64))
    plan = varied.plan(seeds(3, 4), 2, (64, 64))
    for k, (a, b) in enumerate(zip(plain, clips)):
        check_clip(b)
        assert torch.equal(a["masks"], b["masks"]) and torch.equal(a["tracks"], b["tracks"])
        assert torch.allclose(b["video"], vary_formation(a["video"][None], [plan.keys[k]], blur)[0], atol=1e-5)
        assert float(b["video"].std()) < float(a["video"].std())  # every clip blurred (p = 1)
        assert (b["meta"]["synth_formation_blur_lo"], b["meta"]["synth_formation_p"]) == (1.5, 1.0)
        assert "synth_formation_noise_lo" not in b["meta"]  # a change never drawn is not named
        assert not any(key.startswith("synth_formation") for key in a["meta"])
    alone = varied.generate(seeds(4), 2, (64, 64))[0]
    assert torch.allclose(alone["video"], clips[1]["video"], atol=1e-4)
    # by default all three changes are drawn, with Photometric's ranges
    assert SynthesisSettings().formation == Photometric()
    default = Synthesizer(str(tiny_bundle), settings=FAST).generate(seeds(3), 2, (64, 64))[0]
    assert torch.allclose(default["video"], vary_formation(plain[0]["video"][None], plan.keys[:1], Photometric())[0],
                          atol=1e-5)
    assert (default["meta"]["synth_formation_p"], default["meta"]["synth_formation_contrast_hi"]) == (0.5, 2.0)
    # the clips' own noise: two clips drawn with noise on get different draws
    noisy = Synthesizer(str(tiny_bundle), settings=SynthesisSettings(
        t_s=20, t_f=3, density=4e-4, formation=Photometric(contrast=None, blur=None, noise=(3.0, 3.0), p=1.0)))
    a, b = noisy.generate(seeds(3, 4), 2, (64, 64))
    assert not torch.equal(a["video"] - plain[0]["video"], b["video"] - plain[1]["video"])
    with pytest.raises(BVDMDataError, match="formation must be None or a bvdm_data.Photometric"):
        SynthesisSettings(formation=(0.5, 2.0))


def test_vary_formation_draws_a_clips_noise_from_its_key_whatever_the_batch():
    """The camera noise of a drawn formation is keyed noise (made on the clips' device, none copied from the
    host): a clip's result does not depend on the clips beside it, and the noise added is its key's."""
    from bvdm_data.diffusion.noise import derive_key, keyed_normal
    from bvdm_data.photometric import Photometric, crop_noise
    from bvdm_data.synth.pipeline import FORMATION, vary_formation

    g = torch.Generator().manual_seed(0)
    clips = 0.3 + 0.01 * torch.randn(3, 2, 1, 32, 32, generator=g)  # flat frames, noise of their own
    keys = [derive_key(11), derive_key(12), derive_key(13)]
    everything = vary_formation(clips, keys, Photometric())
    assert torch.allclose(vary_formation(clips[1:], keys[1:], Photometric()), everything[1:], atol=1e-6)
    noise_only = Photometric(contrast=None, blur=None, noise=(2.0, 2.0), p=1.0)
    y = vary_formation(clips[:1], keys[:1], noise_only)
    added = (y - clips[:1])[0] / (crop_noise(clips[0]) * 3 ** 0.5).view(-1, 1, 1, 1)  # 2x: sqrt(2^2 - 1)
    expected = keyed_normal(torch.tensor([derive_key(keys[0], FORMATION)]), 0, clips.shape[1:])[0]
    assert torch.allclose(added, expected, atol=1e-4)
    with pytest.raises(BVDMDataError, match="one key per clip"):
        vary_formation(clips, keys[:2], Photometric())


def test_magnification_shows_each_clips_cells_larger_or_smaller_with_labels_to_match(tiny_bundle):
    """A magnification drawn per clip from its key: the clip's view is the centre of the painting resampled to the
    asked size, its labels resampled with it, the ranges and the drawn value in the meta, the clip the same in any
    batch. Checked against plain clips of the same painting: magnification 2 is the plain view's centre half
    enlarged, 0.5 a plain view twice as wide reduced (the field painted for it is that view's)."""
    from torch.nn.functional import interpolate

    from bvdm_data.synth.pipeline import MAGNIFY, keyed_log_uniform, painted_field

    def same_as(video, expected):
        # equal but where the painting dipped below 0: a plain clip is clipped to 0..1 before it is resampled here
        differ = (video - expected).abs()
        assert float(differ.max()) < 0.01 and float((differ > 1e-5).float().mean()) < 0.01

    def settings(magnification):
        return SynthesisSettings(t_s=20, t_f=3, density=4e-4, formation=None, magnification=magnification)

    half = Synthesizer(str(tiny_bundle), settings=PLAIN).crop_size // 2
    assert painted_field((64, 64), half, (0.5, 2.0)) == (128 + 2 * half,) * 2  # 0.5 shows 128 px
    plain = Synthesizer(str(tiny_bundle), settings=PLAIN).generate(seeds(3, 4), 2, (64, 64))
    wide = Synthesizer(str(tiny_bundle), settings=PLAIN).generate(seeds(3, 4), 2, (128, 128))
    enlarged = Synthesizer(str(tiny_bundle), settings=settings((2.0, 2.0))).generate(seeds(3, 4), 2, (64, 64))
    reduced = Synthesizer(str(tiny_bundle), settings=settings((0.5, 0.5))).generate(seeds(3, 4), 2, (64, 64))
    for k in range(2):
        for clip in (enlarged[k], reduced[k]):
            check_clip(clip)
        centre = plain[k]["video"][..., 16:48, 16:48]
        same_as(enlarged[k]["video"], interpolate(centre, size=(64, 64), mode="bilinear", antialias=True))
        assert torch.equal(enlarged[k]["masks"] > 0, plain[k]["masks"][:, 16:48, 16:48].repeat_interleave(2, 1)
                           .repeat_interleave(2, 2) > 0)
        same_as(reduced[k]["video"], interpolate(wide[k]["video"], size=(64, 64), mode="bilinear", antialias=True))
        assert torch.equal(reduced[k]["masks"] > 0, wide[k]["masks"][:, 1::2, 1::2] > 0)
        assert (enlarged[k]["meta"]["synth_magnification"], reduced[k]["meta"]["synth_magnification_lo"]) == (2.0, 0.5)
        assert "synth_magnification" not in plain[k]["meta"]
    # drawn from a range: from the clip's key, the same in any batch
    drawn = Synthesizer(str(tiny_bundle), settings=settings((0.5, 2.0)))
    plan = drawn.plan(seeds(3, 4), 2, (64, 64))
    clips = drawn.paint(plan)
    assert [c["meta"]["synth_magnification"] for c in clips] == [keyed_log_uniform(key, MAGNIFY, (0.5, 2.0))
                                                                  for key in plan.keys]
    alone = drawn.generate(seeds(4), 2, (64, 64))[0]
    assert torch.allclose(alone["video"], clips[1]["video"], atol=1e-4) and torch.equal(alone["masks"], clips[1]["masks"])
    with pytest.raises(BVDMDataError, match=r"magnification must be a range of magnifications with 0 < lo <= hi"):
        SynthesisSettings(magnification=(1.25, 0.8))
