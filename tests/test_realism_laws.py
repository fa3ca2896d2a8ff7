"""The measured laws of issue 12: edge profile, shapes from a segmentation, unlabelled nuclei, frame statistics."""

from __future__ import annotations

import dataclasses
import shutil

import numpy as np
import pytest
import torch
from scipy import ndimage

from bvdm_data.clip import check_clip
from bvdm_data.errors import BVDMDataError
from bvdm_data.diffusion.edges import measure_edge_profile, profile_cells, signed_distance
from bvdm_data.diffusion.sample import flat_cells
from bvdm_data.evaluate.frames import STATISTICS, compare_frames, frame_statistics
from bvdm_data.masks import MaskModel, simulate_masks
from bvdm_data.masks.coverage import touching_share
from bvdm_data.masks.fit import density_of, refit_shapes
from bvdm_data.synth.pipeline import SynthesisSettings, Synthesizer, unlabelled_lineages
from bvdm_data.scene.model import (HIGHPASS_SIGMA, SceneModel, glow_law, glow_profiles, noise_grain, residue_lag1,
                                   unlabelled_objects)
from bvdm_data.robust import robust_std

PROFILE = [1.0, 0.95, 0.9, 0.8, 0.65, 0.4, 0.15, 0.05, 0.02, 0.01, 0.0, 0.0]


def disks(radii: list[float], size: int = 48) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    c = (size - 1) / 2
    return torch.stack([(yy - c) ** 2 + (xx - c) ** 2 <= r * r for r in radii])


def test_signed_distance_rings_are_ordered_and_symmetric():
    rings = signed_distance(disks([10.0]))[0]
    assert rings[24, 24] == -6 and rings[0, 0] == 6
    row = rings[24].tolist()
    assert row == row[::-1]
    inside = disks([10.0])[0]
    assert (rings[inside] < 0).all() and (rings[~inside] > 0).all()


def test_edge_profile_round_trip():
    masks = disks([9.0, 11.0, 13.0, 15.0])
    images = profile_cells(masks, torch.tensor([0.2, 0.0, 0.4, -0.1]), -0.9, PROFILE)
    measured = measure_edge_profile(images, masks, ~masks, -0.9)
    assert np.allclose(measured, PROFILE, atol=0.02)


def test_flat_cells_with_a_profile_keep_the_drawn_mean_inside():
    masks = disks([8.0, 12.0])
    values = torch.tensor([0.1, -0.3])
    image = flat_cells(masks, values, -0.95, edge_profile=PROFILE)
    means = [float(image[i, 0][masks[i]].mean()) for i in range(2)]
    assert means == pytest.approx(values.tolist(), abs=1e-4)
    # The edge is soft like the profile, not a 1-px blur: the outermost ring keeps well under its core.
    rings = signed_distance(masks)
    assert float(image[1, 0][rings[1] == -1].mean()) < float(image[1, 0][rings[1] == -6].mean()) - 0.2


def round_cells(frames: int, size: int, radius: int, count: int, seed: int = 0) -> np.ndarray:
    """A per-frame segmentation of non-overlapping disks (ids per frame), known size and density."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    out = np.zeros((frames, size, size), np.int32)
    for t in range(frames):
        placed = []
        while len(placed) < count:
            c = rng.uniform(radius, size - radius, 2)
            if all(np.hypot(*(c - p)) > 2.6 * radius for p in placed):
                placed.append(c)
                out[t][(yy - c[0]) ** 2 + (xx - c[1]) ** 2 <= radius ** 2] = len(placed)
    return out


def test_refit_shapes_reproduces_the_segmentations_size_and_density():
    seg = round_cells(frames=3, size=320, radius=13, count=40)
    model = refit_shapes(MaskModel.load("hela"), seg)
    areas = np.bincount(seg[0].ravel())[1:]
    sims = [simulate_masks(model, 2, seg.shape[1:], seed=s)["masks"].numpy() for s in range(5, 9)]
    sim_areas = np.concatenate([np.bincount(f.ravel())[1:] for sim in sims for f in sim])
    whole = sim_areas[sim_areas > 0.5 * np.median(sim_areas)]
    assert np.median(whole) == pytest.approx(np.median(areas), rel=0.08)
    # ~40 cells a frame: Poisson noise alone is 16 % per frame, so several simulations are averaged.
    assert np.mean([density_of(sim) for sim in sims]) == pytest.approx(density_of(seg), rel=0.2)
    assert model.real_statistics["segmentation"]["area"]["median"] == pytest.approx(np.median(areas), rel=0.01)
    assert "touching" not in model.real_statistics["calibration"]["targets"]  # the spacing: the closest approach
    # Lineage and motion stay those of the tracks.
    base = MaskModel.load("hela")
    assert np.array_equal(model.cycle_lengths, base.cycle_lengths)
    assert model.velocity_noise == base.velocity_noise


def test_a_sparse_segmentation_gives_shapes_and_sizes_but_not_density():
    """Like GOWT1's gold SEG: a few cells outlined per frame, the tracks mark them all."""
    from bvdm_data.masks.fit import labels_every_cell

    every = round_cells(frames=3, size=320, radius=16, count=30)
    some = np.where(every > 6, 0, every)  # 6 of 30 outlined
    assert labels_every_cell(every, every) and not labels_every_cell(some, every)
    base = MaskModel.load("hela")
    model = refit_shapes(base, np.concatenate([some] * 3), density=False)
    assert model.density == base.density
    # which cells touch cannot be seen when most are not outlined: the spacing is not calibrated, even if asked
    model = refit_shapes(base, np.concatenate([some] * 3), density=False, touching=True)
    assert "touching" not in model.real_statistics["calibration"]["targets"]
    sims = [simulate_masks(model, 2, (320, 320), seed=s)["masks"].numpy() for s in range(3)]
    sim_areas = np.concatenate([np.bincount(f.ravel())[1:] for sim in sims for f in sim])
    whole = sim_areas[sim_areas > 0.5 * np.median(sim_areas)]
    assert np.median(whole) == pytest.approx(np.pi * 16 ** 2, rel=0.1)


def test_refit_shapes_refuses_too_few_cells():
    with pytest.raises(Exception, match="whole cells"):
        refit_shapes(MaskModel.load("hela"), round_cells(frames=1, size=96, radius=13, count=3))


def test_unlabelled_lineages_take_whole_lineages():
    tracks = np.array([[1, 0, 3, 0], [2, 4, 6, 1], [3, 4, 6, 1], [4, 0, 6, 0], [5, 7, 9, 2]])
    assert unlabelled_lineages(tracks, 0.0, np.random.default_rng(0)) == {}
    every = unlabelled_lineages(tracks, 1.0, np.random.default_rng(0))
    assert set(every) == {1, 2, 3, 4, 5}
    assert every[2] == every[3] == every[5] == every[1] != every[4]


def test_unlabelled_objects_are_found_and_measured():
    rng = np.random.default_rng(0)
    image = 0.02 * rng.standard_normal((96, 96))
    image[10:30, 10:30] += 0.8
    image[60:80, 60:80] += 0.3
    labels = np.zeros((96, 96), np.int32)
    labels[10:30, 10:30] = 1
    level, contrast = unlabelled_objects(image, labels)
    assert abs(level) < 0.01 and len(contrast) == 1 and contrast[0] == pytest.approx(0.3, abs=0.05)


def test_unlabelled_objects_on_a_photon_background_are_nuclei_not_shot_noise():
    """GOWT1-like: the background is shot noise on the camera's floor (most pixels 0). Its level is the mean
    light, not the floor, so only the one dim nucleus is found (the floor as level found dozens of specks)."""
    rng = np.random.default_rng(1)
    step, size = 0.04, 256
    yy, xx = np.mgrid[:size, :size]
    photons = rng.poisson(0.5, (size, size)).astype(float)
    bright, dim = np.hypot(yy - 60, xx - 60) <= 15, np.hypot(yy - 180, xx - 180) <= 15
    photons[bright] += rng.poisson(20, bright.sum())
    photons[dim] += rng.poisson(2, dim.sum())
    labels = np.where(bright, 1, 0).astype(np.int32)
    level, contrast = unlabelled_objects(-1 + step * photons, labels)
    assert level == pytest.approx(-1 + 0.5 * step, abs=0.2 * step)
    assert len(contrast) == 1 and contrast[0] == pytest.approx(2 * step, rel=0.25)


def test_unlabelled_nuclei_are_painted_but_not_labelled(tiny_bundle):
    plain = Synthesizer(tiny_bundle, settings=SynthesisSettings(texture="flat", density=2e-4))
    hiding = Synthesizer(tiny_bundle, settings=SynthesisSettings(texture="flat", density=2e-4, unlabelled=True))
    hiding.scene = dataclasses.replace(hiding.scene, unlabelled_rate=1.0,
                                       unlabelled_contrast=tuple(np.linspace(0.6, 0.8, 21)))
    seeds = [np.random.SeedSequence(3)]
    a, b = plain.generate(seeds, 2, (160, 160))[0], hiding.generate(seeds, 2, (160, 160))[0]
    check_clip(b)
    # Half of all painted lineages (rate 1 per labelled cell) are hidden: fewer labels, light where none is.
    assert len(b["tracks"]) < len(a["tracks"]) * 1.5
    found = unlabelled_objects(b["video"][0, 0].double().numpy(), b["masks"][0].numpy())
    assert found is not None and len(found[1]) >= 1


def test_scene_fit_measures_the_annotation_convention(hela_root):
    from bvdm_data.ctc import open_sequence

    scene = SceneModel.fit(open_sequence(hela_root, "02", labels="ERR_SEG"), (32980.0, 36860.0))
    assert 0.0 <= scene.unlabelled_rate < 1.0
    q = np.asarray(scene.unlabelled_contrast)
    assert q.size in (0, 21) and (np.diff(q) >= 0).all()
    assert scene.photon_step == 0  # HeLa's background sits far above the camera's floor: Gaussian noise
    # HeLa nuclei glow: about a tenth of their light spread over ~10 px (0.11 over 12 px on frames 0-10 of 02).
    assert 0.05 < scene.glow_weight < 0.25 and 4.0 <= scene.glow_sigma <= 16.0


def test_scene_fit_measures_the_grain_of_the_noise(hela_root):
    from bvdm_data.ctc import open_sequence

    scene = SceneModel.fit(open_sequence(hela_root, "02", labels="ERR_SEG"), (32980.0, 36860.0))
    # HeLa's background noise is not white: neighbours along a row agree (robust lag-1 0.65 after the high-pass),
    # along a column hardly (the camera's line noise); a 0.4 x 0.8 px blur on frames 0-10 of 02, 0.6 x 0.9 here.
    sy, sx = scene.noise_sigma
    assert sy < sx and 0.6 <= sx <= 1.2 and sy <= 0.7


@pytest.mark.parametrize("grain", [(0.0, 0.0), (0.8, 1.5)])
def test_drawn_background_has_the_measured_noise_and_grain(grain):
    scene = SceneModel(background_mean=-0.9, background_smooth_std=0.0, noise_std=0.01, noise_sigma=grain)
    frames = scene.background(2, (192, 192), key=7, device=torch.device("cpu"))[:, 0].double().numpy()
    inner = np.zeros(frames.shape[1:], bool)
    inner[12:-12, 12:-12] = True  # away from the blur's reflected border
    for frame in frames:
        residue = frame - ndimage.gaussian_filter(frame, HIGHPASS_SIGMA)
        assert robust_std(residue[inner]) == pytest.approx(0.01, rel=0.05)
        assert noise_grain(residue_lag1(residue, inner)) == pytest.approx(grain, abs=0.15)
    assert not np.allclose(frames[0], frames[1])  # fresh noise every frame


def test_scenes_fitted_before_the_grain_load_as_white_noise(tiny_bundle, tmp_path):
    import json

    from bvdm_data.bundle import BundleWriter

    old = tmp_path / "old"
    shutil.copytree(tiny_bundle, old)
    raw = json.loads((old / "scene" / "scene.json").read_text())
    raw.pop("noise_sigma")  # the file as a version before the grain wrote it
    BundleWriter(old).update_json("scene", "scene.json", raw, {})
    assert SceneModel.load(old).noise_sigma == (0.0, 0.0)


def test_frame_statistics_compare_like_with_like(real_clip):
    stats = frame_statistics([real_clip])
    assert set(STATISTICS) <= set(stats)
    rows = compare_frames(stats, {"same": stats})
    for row in rows:
        if row["same rel."] != "n/a":
            assert row["same rel."] in ("+0%", "-0%")


def test_halo_measures_the_light_around_cells():
    rng = np.random.default_rng(0)
    labels = np.zeros((128, 128), np.int32)
    labels[30:50, 30:50], labels[80:100, 70:90] = 1, 2
    cells = np.where(labels > 0, 0.5, 0.0)
    sharp = 0.1 + cells + 0.002 * rng.standard_normal(labels.shape)
    glowing = sharp + 0.2 * ndimage.gaussian_filter(cells, 6.0)
    clip = lambda image: {"video": torch.from_numpy(image)[None, None].float(),  # noqa: E731
                          "masks": torch.from_numpy(labels)[None]}
    assert abs(float(frame_statistics([clip(sharp)])["halo"][0])) < 0.003
    assert float(frame_statistics([clip(glowing)])["halo"][0]) > 0.01


def test_interior_measures_the_structure_inside_cells_not_their_edge_or_noise():
    rng = np.random.default_rng(0)
    labels = np.zeros((96, 96), np.int32)
    labels[10:40, 10:40], labels[50:80, 50:80] = 1, 2
    flat = 0.1 + 0.5 * (labels > 0) + 0.002 * rng.standard_normal(labels.shape)
    flat = ndimage.gaussian_filter(flat, 1.0)  # a soft edge: kept out by the inset
    spotted = flat.copy()
    spotted[20:28, 20:28] += 0.25  # a nucleolus in cell 1 (a tenth of its interior): half its contrast
    clip = lambda image: {"video": torch.from_numpy(image)[None, None].float(),  # noqa: E731
                          "masks": torch.from_numpy(labels)[None]}
    plain, structured = frame_statistics([clip(flat)])["interior"], frame_statistics([clip(spotted)])["interior"]
    assert len(plain) == len(structured) == 2
    assert (plain < 0.03).all()
    assert 0.35 < structured[0] < 0.55 and structured[1] < 0.03


def test_seam_measures_the_light_where_touching_cells_meet():
    rng = np.random.default_rng(0)
    labels = np.zeros((96, 96), np.int32)
    labels[30:50, 20:40], labels[30:50, 40:60], labels[70:80, 70:80] = 1, 2, 3  # 1 and 2 touch, 3 is alone
    bright = 0.1 + 0.5 * (labels > 0) + 0.002 * rng.standard_normal(labels.shape)
    valley = bright.copy()
    valley[30:50, 39:41] = 0.1 + 0.2  # a dark line where 1 and 2 meet: 0.4 of their contrast
    clip = lambda image: {"video": torch.from_numpy(image)[None, None].float(),  # noqa: E731
                          "masks": torch.from_numpy(labels)[None]}
    flat, dark = frame_statistics([clip(bright)]), frame_statistics([clip(valley)])
    assert flat["touching"].tolist() == dark["touching"].tolist() == [pytest.approx(2 / 3)]
    assert len(flat["seam"]) == 1 and abs(flat["seam"][0] - 1.0) < 0.02
    assert abs(dark["seam"][0] - 0.4) < 0.03


def test_glow_law_recovers_the_share_and_spread_of_the_light():
    rng = np.random.default_rng(1)
    frames = []
    for _ in range(3):
        labels = np.zeros((256, 256), np.int32)
        for i, (y, x) in enumerate(rng.integers(40, 216, (4, 2))):
            labels[y - 9:y + 9, x - 9:x + 9] = i + 1
        cells = np.where(labels > 0, rng.uniform(0.3, 1.2, labels.max() + 1)[labels], 0.0)
        image = -0.9 + cells + 0.08 * ndimage.gaussian_filter(cells, 12.0) + 0.01 * rng.standard_normal(cells.shape)
        frames.append(glow_profiles(image, labels))
    weight, sigma = glow_law(frames)
    assert sigma == 12.0 and weight == pytest.approx(0.08, rel=0.15)
    flat = np.zeros((128, 128), np.int32)
    flat[50:70, 50:70] = 1
    assert glow_law([glow_profiles(-0.9 + (flat > 0) + 0.01 * rng.standard_normal(flat.shape), flat)])[0] < 0.01
    assert glow_profiles(np.zeros((40, 40)), np.ones((40, 40), np.int32)) is None  # no far background


def test_glow_is_painted_around_cells_and_needs_its_law(tiny_bundle):
    seeds = [np.random.SeedSequence(5)]
    settings = SynthesisSettings(texture="flat", density=2e-4)
    plain = Synthesizer(tiny_bundle, settings=settings).generate(seeds, 1, (192, 192))[0]
    glowing = Synthesizer(tiny_bundle, settings=dataclasses.replace(settings, glow=True)).generate(seeds, 1, (192, 192))[0]
    check_clip(glowing)
    assert len(glowing["tracks"]) == len(plain["tracks"])  # light around cells, not cells
    halo = [float(np.median(frame_statistics([c])["halo"])) for c in (plain, glowing)]
    assert halo[1] > halo[0] + 0.005
    scene = SceneModel.load(tiny_bundle)
    bare = tiny_bundle.parent / "no_glow"
    shutil.copytree(tiny_bundle, bare)
    dataclasses.replace(scene, glow_weight=0.0, glow_sigma=0.0).save(bare)
    with pytest.raises(BVDMDataError, match="glow law, and this bundle has none .none was measured"):
        Synthesizer(bare, settings=dataclasses.replace(settings, glow=True))
    dataclasses.replace(scene, glow_weight=0.0, glow_sigma=0.0, photon_step=0.04, photon_rate=0.5).save(bare)
    with pytest.raises(BVDMDataError, match="photon counts"):
        Synthesizer(bare, settings=dataclasses.replace(settings, glow=True))


def test_edge_profiles_by_brightness_round_trip():
    dim_profile = [1.0, 0.96, 0.92, 0.85, 0.75, 0.55, 0.2, 0.05, 0.01, 0.0, 0.0, 0.0]
    masks = disks([10.0, 11.0, 12.0, 13.0] * 6)
    values = torch.tensor([-0.7] * 12 + [0.1] * 12)  # contrast 0.2 (dim) and 1.0 (bright) over -0.9
    profiles = {"contrast": [0.2, 1.0], "profiles": [dim_profile, PROFILE]}
    images = profile_cells(masks, values, -0.9, profiles)
    from bvdm_data.diffusion.edges import measure_edge_profiles

    measured = measure_edge_profiles(images, masks, ~masks, -0.9, bins=2)
    assert measured["contrast"] == pytest.approx([0.2, 1.0], abs=1e-3)
    assert np.allclose(measured["profiles"][0], dim_profile, atol=0.02)
    assert np.allclose(measured["profiles"][1], PROFILE, atol=0.02)
    # Between the bins the profile is interpolated; outside them the nearest bin holds.
    mid = profile_cells(masks[:1], torch.tensor([-0.3]), -0.9, profiles)
    one = profile_cells(masks[:1], torch.tensor([-0.3]), -0.9, [(a + b) / 2 for a, b in zip(dim_profile, PROFILE)])
    assert torch.allclose(mid, one, atol=1e-5)


def test_edge_setting_is_checked():
    with pytest.raises(Exception, match="edge must be one of"):
        SynthesisSettings(edge="sharp").check(1000)
    with pytest.raises(Exception, match="edge_shift must lie in"):
        SynthesisSettings(edge_shift=4.0).check(1000)
    with pytest.raises(Exception, match="edge='blur' has none"):
        SynthesisSettings(edge="blur", edge_shift=0.5).check(1000)


def test_edge_shift_moves_the_painted_edge_not_the_mask():
    masks = disks([12.0])
    values = torch.tensor([0.5])

    def half_contrast_area(shift):
        image = flat_cells(masks, values, -0.9, edge_profile=PROFILE, edge_shift=shift)
        core = float(image[0, 0][signed_distance(masks)[0] == -6].mean())
        return int((image[0, 0] > (-0.9 + core) / 2).sum())

    base = half_contrast_area(0.0)
    perimeter = int((signed_distance(masks)[0] == -1).sum())
    # One px outward adds about one ring of pixels above half contrast; one px inward takes one off.
    assert abs(half_contrast_area(1.0) - base - perimeter) < 0.35 * perimeter
    assert abs(base - half_contrast_area(-1.0) - perimeter) < 0.35 * perimeter
    shifted = flat_cells(masks, values, -0.9, edge_profile=PROFILE, edge_shift=0.5)
    assert float(shifted[0, 0][masks[0]].mean()) == pytest.approx(0.5, abs=1e-4)  # brightness kept inside the mask


def test_keep_envelope_keeps_the_measured_edge_and_adds_fine_texture_inside():
    from bvdm_data.synth.propagation import keep_envelope

    masks = disks([12.0, 14.0])
    start = flat_cells(masks, torch.tensor([0.1, 0.3]), -0.95, edge_profile=PROFILE)
    texture = 0.1 * torch.randn(2, 1, 48, 48, generator=torch.Generator().manual_seed(0))
    crisp = flat_cells(masks, torch.tensor([0.1, 0.3]), -0.95, blur_sigma=0.5)  # SDEdit's crisper edge
    out = keep_envelope(start, crisp + texture, masks)
    rings = signed_distance(masks)[:, None]
    edge = rings >= -1
    assert torch.allclose(out[edge], start[edge].clamp(-1, 1))  # rim and outside: exactly the measured envelope
    deep = rings <= -4
    assert (out - start)[deep].std() > 0.05  # the texture is there inside
    assert abs(float((out - start)[deep].mean())) < 0.02  # and adds no brightness


def test_detail_texture_paints_valid_clips(tiny_bundle):
    synth = Synthesizer(tiny_bundle, settings=SynthesisSettings(texture="detail", t_s=10, t_f=2, density=4e-4))
    clip = synth.generate([np.random.SeedSequence(1)], 2, (96, 96))[0]
    check_clip(clip)
    assert clip["meta"]["synth_texture"] == "detail"


def test_labels_redrawn_from_the_painting_follow_where_it_was_painted():
    from bvdm_data.synth.annotation import relabel_from_painting

    masks = disks([12.0])
    labels = masks[0].numpy().astype(np.int32)
    background = np.full(labels.shape, -0.9, np.float32)

    def redrawn(shift):
        image = flat_cells(masks, torch.tensor([0.3]), -0.9, edge_profile=PROFILE, edge_shift=shift)[0, 0].numpy()
        return int((relabel_from_painting(image, background, labels, PROFILE) == 1).sum())

    area, perimeter = int(labels.sum()), int((signed_distance(masks)[0] == -1).sum())
    assert abs(redrawn(0.0) - area) < 0.35 * perimeter  # painted by the convention: the label stays
    assert redrawn(1.0) - area > 0.6 * perimeter          # painted a pixel wider: the label follows
    assert area - redrawn(-1.0) > 0.6 * perimeter
    # A cell painted no brighter than the background keeps its mask (ids and tracks never change).
    assert (relabel_from_painting(background, background, labels, PROFILE) == labels).all()


def _threshold_cells(shares_by_brightness, n=60, size=48, seed=0):
    """Crops of soft round cells labelled where the light falls below a share of their mean contrast that
    depends on their brightness, as an annotation tool with its own threshold rule would label them."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    images, masks = [], []
    for c in np.linspace(0.2, 1.0, n):
        r = rng.uniform(9.0, 12.0)
        light = c * np.clip((r + 4 - np.hypot(yy - size / 2, xx - size / 2)) / 6, 0, 1) ** 1.5
        image = -0.9 + light + 0.003 * rng.standard_normal(light.shape)
        contrast = light[light > 0.05 * c].mean()
        masks.append(light > shares_by_brightness(c) * contrast)
        images.append(image)
    masks = np.stack(masks)
    return np.stack(images), masks, ~masks


def test_label_law_recovers_an_annotation_threshold_that_depends_on_brightness():
    from bvdm_data.synth.annotation import fit_label_law

    rule = lambda c: 0.6 - 0.3 * c  # noqa: E731  dim cells outlined at a larger share of their light
    images, masks, empty = _threshold_cells(rule)
    law = fit_label_law(images, masks, empty, bins=3)
    assert law["cells"] == [20, 20, 20] and min(law["iou"]) > 0.97
    assert law["share"][0] > law["share"][1] > law["share"][2]  # the brightness dependence is found
    flat = fit_label_law(images, masks, empty, bins=1)  # one share for all cells fits worse
    assert np.mean(law["iou"]) > flat["iou"][0]
    with pytest.raises(ValueError, match="no cell"):
        fit_label_law(images[:, :4, :4], masks[:, :4, :4], empty[:, :4, :4])


def test_label_law_matches_the_real_annotation_better_than_the_edge_profile(hela_root):
    """On real HeLa cells the law's labels agree with ERR_SEG more closely than the edge profile's midpoint
    (frames 8-10 of 02 with a law fitted on 0-7: mean IoU 0.961 vs 0.946, benchmarks/label_law.py); here
    fitted and checked on the cells of tests/data."""
    from bvdm_data.ctc import open_sequence
    from bvdm_data.diffusion import extract_cell_crops
    from bvdm_data.synth.annotation import fit_label_law, label_agreement

    seq = open_sequence(hela_root, "02", labels="ERR_SEG")
    crops = extract_cell_crops(seq, size=64, intensity=(32980.0, 36860.0))
    cells = crops.images[:, 0].double().numpy(), crops.masks.numpy(), crops.empty.numpy()
    agree = label_agreement(*cells, crops.statistics()["edge_profile"], fit_label_law(*cells))
    assert len(agree["law"]) >= 20
    assert agree["law"].mean() > agree["profile"].mean() + 0.005
    assert (agree["hindsight"] >= agree["law"] - 1e-12).all()  # no share beats the one chosen with hindsight


def test_painted_labels_follow_the_label_law():
    from bvdm_data.synth.annotation import relabel_from_painting

    masks = disks([12.0])
    labels = masks[0].numpy().astype(np.int32)
    background = np.full(labels.shape, -0.9, np.float32)
    image = flat_cells(masks, torch.tensor([0.3]), -0.9, edge_profile=PROFILE)[0, 0].numpy()
    area = [int((relabel_from_painting(image, background, labels, PROFILE, {"contrast": [0.3], "share": [s]}) == 1)
                .sum()) for s in (0.1, 0.3, 0.6)]
    assert area[0] > area[1] > area[2]  # a lower share of the light outlines more of the cell
    assert (relabel_from_painting(background, background, labels, PROFILE, {"contrast": [0.3], "share": [0.3]})
            == labels).all()  # nothing painted: the mask stays


def test_painted_labels_keep_the_clip_contract_video_and_tracks(tiny_bundle):
    from bvdm_data.evaluate.downstream import boundary_offset

    settings = SynthesisSettings(t_s=20, t_f=3, density=4e-4, labels="masks")
    seeds = [np.random.SeedSequence(5)]
    a = Synthesizer(tiny_bundle, settings=settings).generate(seeds, 3, (96, 96))[0]
    auto = Synthesizer(tiny_bundle, settings=dataclasses.replace(settings, labels="auto"))
    b = auto.generate(seeds, 3, (96, 96))[0]
    assert auto.labels == "painted" and b["meta"]["synth_labels"] == "painted"  # the bundle has a label law
    check_clip(b)
    assert torch.equal(a["video"], b["video"]) and not torch.equal(a["masks"], b["masks"])
    # Lineage is the same; a cell at the border may show a pixel of itself a frame earlier or later.
    assert abs(len(a["tracks"]) - len(b["tracks"])) <= 2
    assert int((a["tracks"][:, 3] > 0).sum()) == int((b["tracks"][:, 3] > 0).sum())
    assert boundary_offset(b["masks"].numpy(), a["masks"].numpy())["matched_iou"] > 0.7
    # Clips planned and labels redrawn in worker processes (the default on an accelerator) are the same.
    pooled = Synthesizer(tiny_bundle, settings=dataclasses.replace(settings, labels="auto"), cpu_workers=2)
    assert Synthesizer(tiny_bundle, settings=settings).cpu_workers == 0
    both = pooled.generate(seeds + [np.random.SeedSequence(6)], 3, (96, 96))
    assert torch.equal(both[0]["masks"], b["masks"]) and torch.equal(both[0]["tracks"], b["tracks"])
    # Inside a DataLoader worker (a daemon process) no pool is started: the labels are redrawn inline.
    import types

    from bvdm_data.synth import pipeline

    daemon = Synthesizer(tiny_bundle, settings=dataclasses.replace(settings, labels="auto"), cpu_workers=2)
    real_current = pipeline.multiprocessing.current_process
    pipeline.multiprocessing.current_process = lambda: types.SimpleNamespace(daemon=True)
    try:
        inline = daemon.generate(seeds + [np.random.SeedSequence(6)], 3, (96, 96))
    finally:
        pipeline.multiprocessing.current_process = real_current
    assert daemon._cpu_pool is None and torch.equal(inline[0]["masks"], b["masks"])
    # A bundle fitted before the label law redraws at its edge profile's midpoint ("profile").
    import json

    from bvdm_data.bundle import BundleWriter

    old = tiny_bundle.parent / "no_label_law"
    shutil.copytree(tiny_bundle, old)
    info = json.loads((old / "texture" / "texture.json").read_text())
    info["statistics"].pop("label_law")
    BundleWriter(old).update_json("texture", "texture.json", info, {})
    before = Synthesizer(old, settings=dataclasses.replace(settings, labels="auto"))
    assert before.labels == "profile" and before.generate(seeds, 3, (96, 96))[0]["meta"]["synth_labels"] == "profile"
    with pytest.raises(BVDMDataError, match="needs the bundle's label law"):
        Synthesizer(old, settings=dataclasses.replace(settings, labels="painted"))
    with pytest.raises(Exception, match="labels must be one of"):
        SynthesisSettings(labels="drawn").check(1000)
    with pytest.raises(Exception, match="edge='blur' has none"):
        SynthesisSettings(labels="profile", edge="blur").check(1000)
    # The label law needs no edge profile: with edge="blur" "auto" still redraws by it, and a bundle without the
    # law falls back to the masks there.
    blur = Synthesizer(tiny_bundle, settings=dataclasses.replace(settings, labels="auto", edge="blur"))
    assert blur.labels == "painted"
    drawn = blur.generate(seeds, 3, (96, 96))[0]
    check_clip(drawn)
    assert drawn["meta"]["synth_labels"] == "painted"
    assert Synthesizer(old, settings=dataclasses.replace(settings, labels="auto", edge="blur")).labels == "masks"
    from bvdm_data.synth.annotation import relabel_from_painting

    with pytest.raises(ValueError, match="label law or an edge profile"):
        relabel_from_painting(np.zeros((8, 8)), np.zeros((8, 8)), np.ones((8, 8), int), None)


def test_crop_size_follows_the_cell_size():
    from bvdm_data.masks.fit import crop_size_for

    hela = MaskModel.load("hela")
    assert crop_size_for(hela) == 64
    big = dataclasses.replace(hela, log_area_mean=hela.log_area_mean + np.log(5.0))  # GOWT1-sized nuclei
    crop = crop_size_for(big)
    diameter = 2 * np.sqrt(np.exp(big.log_area_mean[0] + 1.645 * big.log_area_std[0]) / np.pi)
    assert crop % 16 == 0 and diameter + 20 <= crop < diameter + 36


def test_cycle_law_falls_back_to_the_division_rate_when_cycles_are_thin():
    from bvdm_data.masks.fit import MIN_COMPLETE_CYCLES, cycle_law

    # Ten roots of 50 frames, two of which divide at the end; no daughter is followed to its own division.
    rows = [[i + 1, 0, 49, 0] for i in range(10)]
    rows += [[11, 50, 60, 1], [12, 50, 60, 1], [13, 50, 60, 2], [14, 50, 60, 2]]
    lengths, probs, note = cycle_law(np.array(rows))
    assert note["source"] == "division rate with a prior" and note["divisions"] == 2
    assert probs.sum() == pytest.approx(1.0)
    assert float((lengths * probs).sum()) == pytest.approx((500 + 4 * 11) / 2, rel=0.02)
    # No division at all: no law; many complete cycles: Kaplan-Meier.
    assert cycle_law(np.array([[1, 0, 9, 0]]))[2]["source"] == "none"
    chain, next_id = [[1, 0, 9, 0]], 2
    for parent in range(1, 2 * MIN_COMPLETE_CYCLES):
        start = chain[parent - 1][2] + 1
        chain += [[next_id, start, start + 9, parent], [next_id + 1, start, start + 9, parent]]
        next_id += 2
    assert cycle_law(np.array(chain))[2]["source"] == "Kaplan-Meier of observed cycles"


def test_cycles_shorter_than_a_newborn_plus_a_mitosis_are_left_out_of_the_law():
    from bvdm_data.masks.fit import cycle_length_distribution, cycle_law

    # A chain of 10-frame cycles, plus one cell that "divides" a frame after its birth (a tracker split).
    rows, next_id = [[1, 0, 9, 0]], 2
    for parent in range(1, 8):
        start = rows[parent - 1][2] + 1
        rows += [[next_id, start, start + 9, parent], [next_id + 1, start, start + 9, parent]]
        next_id += 2
    rows += [[next_id, 80, 80, 3], [next_id + 1, 81, 89, next_id], [next_id + 2, 81, 89, next_id]]
    rows = np.array(rows)
    lengths, probs = cycle_length_distribution(rows)
    assert 1 in lengths
    lengths, probs = cycle_length_distribution(rows, min_length=4)
    assert lengths.tolist() == [10.0]
    _, _, note = cycle_law(rows, min_length=4)
    assert note["short_cycles_left_out"] == 1 and note["complete_cycles"] == 6  # ids 2-7; not the split


def test_calibration_by_simulation_meets_its_targets():
    from bvdm_data.masks.fit import calibrate_by_simulation, track_targets

    model = MaskModel.load("hela")
    tracked = simulate_masks(dataclasses.replace(model, density=model.density * 1.5, velocity_noise=3.0), 6, (256, 256),
                             seed=3)["masks"].numpy()
    targets = track_targets(tracked)
    out = calibrate_by_simulation(model, (256, 256), **targets, fields=6, frames=4, rounds=3)
    assert out.velocity_noise > 1.3 * model.velocity_noise and out.density > 1.2 * model.density
    check = [simulate_masks(out, 4, (256, 256), seed=50 + s)["masks"].numpy() for s in range(6)]
    assert np.mean([density_of(v) for v in check]) == pytest.approx(targets["density"], rel=0.2)
    steps = np.concatenate([track_targets(v).get("step", np.nan) * np.ones(1) for v in check])
    assert np.nanmedian(steps) == pytest.approx(targets["step"], rel=0.2)
    assert np.array_equal(out.log_area_mean, model.log_area_mean)  # no area target: the size law stays


def test_refit_shapes_can_match_the_share_of_touching_cells():
    seg = round_cells(frames=2, size=256, radius=13, count=24)  # 2.6 radii apart: none touch
    model = refit_shapes(MaskModel.load("hela"), seg, touching=True)
    assert model.real_statistics["calibration"]["targets"]["touching"] == 0.0
    assert model.min_separation > MaskModel.load("hela").min_separation
    sims = np.stack([simulate_masks(model, 2, seg.shape[1:], seed=s)["masks"].numpy() for s in range(4)])
    assert touching_share(sims) < 0.02


def test_refit_shapes_can_space_cells_for_a_chosen_share_of_touching_cells():
    seg = round_cells(frames=2, size=256, radius=13, count=24)  # none touch; the target is not the segmentation's
    model = refit_shapes(MaskModel.load("hela"), seg, touching=0.3)
    assert model.real_statistics["calibration"]["targets"]["touching"] == 0.3
    sims = np.stack([simulate_masks(model, 2, seg.shape[1:], seed=s)["masks"].numpy() for s in range(4)])
    assert touching_share(sims) == pytest.approx(0.3, abs=0.08)
    with pytest.raises(BVDMDataError, match="share in"):
        refit_shapes(MaskModel.load("hela"), seg, touching=1.5)


def test_touching_option_reads_real_or_a_share():
    import argparse

    from bvdm_data.cli.common import touching_target

    assert touching_target("real") is True and touching_target("0.24") == 0.24
    for bad in ("0", "1.2", "many"):
        with pytest.raises(argparse.ArgumentTypeError, match="'real' or a share"):
            touching_target(bad)


def test_spacing_is_calibrated_to_the_share_of_touching_cells():
    from bvdm_data.masks.fit import calibrate_by_simulation

    model = MaskModel.load("hela")
    apart = dataclasses.replace(model, min_separation=1.2)
    real = np.stack([simulate_masks(apart, 2, (256, 256), seed=70 + s)["masks"].numpy() for s in range(8)])
    target = touching_share(real)
    crowded = dataclasses.replace(model, min_separation=0.6)
    assert touching_share(np.stack([simulate_masks(crowded, 2, (256, 256), seed=70 + s)["masks"].numpy()
                                    for s in range(8)])) > 3 * target
    out = calibrate_by_simulation(crowded, (256, 256), touching=target, fields=8, frames=2)
    assert out.min_separation == pytest.approx(1.2, abs=0.12)
    check = np.stack([simulate_masks(out, 2, (256, 256), seed=90 + s)["masks"].numpy() for s in range(8)])
    assert touching_share(check) == pytest.approx(target, abs=0.03)
    assert np.array_equal(out.log_area_mean, model.log_area_mean) and out.density == model.density  # no other target


def test_fit_records_every_fallback_to_an_assumed_value():
    from bvdm_data.clip import tracks_from_masks
    from bvdm_data.masks import fit_mask_model

    # Ten round cells drifting one pixel a frame, no division: thin lineage, motion and phases.
    frames = round_cells(frames=1, size=256, radius=12, count=10)[0]
    video = np.stack([np.roll(frames, t, axis=1) for t in range(3)])
    model = fit_mask_model(video, tracks_from_masks(video))
    notes = " | ".join(model.real_statistics["fallbacks"])
    assert "cycle: 0 complete cycles; none" in notes and "divisions: no measurable division" in notes
    assert "mitosis shapes and sizes: 0 whole cells" in notes and "motion:" in notes


def test_a_dark_background_is_measured_and_drawn_as_photons(tmp_path):
    """GOWT1-like: most background pixels read 0 and the rest sit on a lattice (3 counts per photon), the
    photon rate varying slowly over the frame. The fit counts photons; the drawn background does too."""
    import tifffile

    from bvdm_data.ctc import open_sequence

    rng = np.random.default_rng(0)
    size, block, gain = 256, 32, 3
    yy, xx = np.mgrid[:size, :size]
    (tmp_path / "01").mkdir()
    (tmp_path / "01_GT/TRA").mkdir(parents=True)
    for t in range(3):
        log_rate = np.log(0.5) + 0.4 * rng.standard_normal((size // block, size // block))
        rate = np.exp(np.kron(log_rate, np.ones((block, block))))
        image = gain * rng.poisson(rate).astype(float)
        tra = np.zeros((size, size), np.uint16)
        for k, (cy, cx) in enumerate([(60, 60), (190, 170)], start=1):
            disc = np.hypot(yy - cy, xx - cx) <= 12
            image[disc] += 120
            tra[disc] = k
        tifffile.imwrite(tmp_path / "01" / f"t{t:03d}.tif", np.clip(image, 0, 255).astype(np.uint8))
        tifffile.imwrite(tmp_path / "01_GT/TRA" / f"man_track{t:03d}.tif", tra)
    (tmp_path / "01_GT/TRA/man_track.txt").write_text("1 0 2 0\n2 0 2 0\n")
    scene = SceneModel.fit(open_sequence(tmp_path, "01", labels="GT"), (0.0, 255.0))
    step = gain * 2 / 255  # one photon in the -1..1 scale
    assert scene.background_mean == -1.0
    assert scene.photon_step == pytest.approx(step, rel=0.05)
    assert scene.photon_rate == pytest.approx(0.5, rel=0.1)
    assert scene.photon_rate_log_std == pytest.approx(0.4, abs=0.1)
    assert scene.glow_weight == 0 and scene.glow_sigma == 0  # medians of whole photons carry no glow law
    drawn = scene.background(2, (192, 192), key=5, device=torch.device("cpu"))
    photons = (drawn + 1) / scene.photon_step
    assert torch.allclose(photons, photons.round(), atol=1e-3)  # on the lattice, never below the floor
    real_floor_share = np.exp(-np.exp(np.log(0.5) + 0.4 * rng.standard_normal(100_000))).mean()
    assert float((photons.round() == 0).float().mean()) == pytest.approx(real_floor_share, abs=0.04)
    assert not torch.equal(drawn[0], drawn[1])  # fresh shot noise every frame


@pytest.mark.parametrize("outlined", [1, 2])
def test_glow_is_measured_only_where_every_cell_is_outlined(tmp_path, outlined):
    """A cell known only by its grown marker leaks its own edge into the bands the glow is read from; so the
    glow law comes from frames whose every cell has an outline, and none when no frame has."""
    import tifffile

    from bvdm_data.ctc import open_sequence
    from bvdm_data.ctc.outlines import with_outlines

    rng = np.random.default_rng(0)
    size = 192
    yy, xx = np.mgrid[:size, :size]
    for d in ("01", "01_GT/TRA", "01_GT/SEG"):
        (tmp_path / d).mkdir(parents=True)
    for t in range(2):
        cells = np.zeros((size, size))
        tra, seg = np.zeros((size, size), np.uint16), np.zeros((size, size), np.uint16)
        for k, (cy, cx) in enumerate([(60, 60), (130, 130)], start=1):
            disc = np.hypot(yy - cy, xx - cx) <= 12
            cells[disc] = 100
            tra[np.hypot(yy - cy, xx - cx) <= 7] = k
            if k <= outlined:
                seg[disc] = k
        image = 60 + cells + 0.1 * ndimage.gaussian_filter(cells, 6.0) + rng.normal(0, 1, (size, size))
        tifffile.imwrite(tmp_path / "01" / f"t{t:03d}.tif", image.astype(np.uint16))
        tifffile.imwrite(tmp_path / "01_GT/TRA" / f"man_track{t:03d}.tif", tra)
        tifffile.imwrite(tmp_path / "01_GT/SEG" / f"man_seg{t:03d}.tif", seg)
    (tmp_path / "01_GT/TRA/man_track.txt").write_text("1 0 1 0\n2 0 1 0\n")
    seq = with_outlines(open_sequence(tmp_path, "01", labels="GT"), tmp_path / "01_GT/SEG")
    scene = SceneModel.fit(seq, (0.0, 400.0))
    if outlined == 2:
        assert scene.glow_weight == pytest.approx(0.1, abs=0.04) and scene.glow_sigma in (4.0, 6.0, 8.0)
    else:
        assert scene.glow_weight == 0 and scene.glow_sigma == 0
