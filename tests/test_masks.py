"""Mask model: outlines, fitting on the real HeLa result, simulation, fidelity, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bvdm_data import check_clip
from bvdm_data.ctc import validate_path, write_ctc_result, write_ctc_sequence
from bvdm_data.ctc.validate import errors_only
from bvdm_data.errors import BVDMDataError
from bvdm_data.masks import (
    MaskModel,
    compare_statistics,
    fit_mask_model,
    label_video_statistics,
    measure_instances,
    rasterize,
    simulate_masks,
)
from bvdm_data.masks.lineage import cell_cycles


@pytest.fixture(scope="module")
def model(res_video) -> MaskModel:
    masks, tracks = res_video
    return fit_mask_model(masks, tracks)


def _as_clip(sim):
    video = (sim["masks"] > 0).float()[:, None] * 0.5
    return {"video": video, "masks": sim["masks"], "tracks": sim["tracks"], "meta": sim["meta"]}


def test_outline_round_trip_on_real_cells(res_video):
    masks, _ = res_video
    frame = masks[40:41]
    inst = measure_instances(frame)
    radii = torch.tensor(inst.radii * np.sqrt(inst.area / np.pi)[:, None])
    drawn = rasterize(torch.tensor(inst.centroid), radii, torch.tensor(inst.orientation),
                      torch.tensor(inst.label), frame.shape[1:]).numpy()
    ious = [((drawn == l) & (frame[0] == l)).sum() / ((drawn == l) | (frame[0] == l)).sum() for l in inst.label]
    assert np.median(ious) > 0.95 and np.percentile(ious, 5) > 0.9


def test_rasterize_resolves_overlaps_and_clips_at_the_border():
    centers = torch.tensor([[10.0, 10.0], [10.0, 16.0], [-3.0, 5.0]])
    img = rasterize(centers, torch.full((3, 16), 5.0), torch.zeros(3), torch.tensor([1, 2, 3]), (20, 30))
    # Both overlapping cells keep their own half (the tied middle column goes to the later one);
    # the third is cut by the top edge.
    assert set(torch.unique(img).tolist()) == {0, 1, 2, 3}
    middle = int((img[:, 13] > 0).sum())
    assert int((img == 2).sum()) - int((img == 1).sum()) == middle
    assert int((img == 3).sum()) < int((img == 1).sum())


def test_fitted_model_is_plausible(model):
    assert model.shape_mean.shape == (3, 32) and model.shape_components.shape[:2] == (3, 6)
    assert 350 < np.exp(model.log_area_mean[0]) < 760  # HeLa nuclei, px (data README)
    assert np.exp(model.log_area_mean[2]) < np.exp(model.log_area_mean[0]), "newborns are smaller"
    assert model.divides and 0 < model.cycle_probabilities.sum() <= 1
    assert 0.5 <= model.min_separation <= 1.0 and model.velocity_noise > 0


def test_model_round_trips_through_a_bundle(tmp_path, model):
    model.save(tmp_path / "b", report=[{"statistic": "area", "ks": float("nan")}])
    back = MaskModel.load(str(tmp_path / "b"))
    for name, value in model.to_dict().items():
        assert back.to_dict()[name] == value, name


@pytest.mark.parametrize("seed, size, frames, density", [(0, (128, 128), 8, 4e-4), (1, (200, 120), 20, None),
                                                         (2, (96, 300), 5, 2e-4)])
def test_simulated_clips_meet_the_contract(model, seed, size, frames, density):
    sim = simulate_masks(model, frames, size, seed=seed, density=density)
    assert sim["masks"].shape == (frames, *size) and sim["masks"].dtype == torch.int32
    check_clip(_as_clip(sim))
    assert len(sim["tracks"]) > 0
    # Crowded views stay crowded but cells never share a pixel (one id per pixel by construction)
    # and keep most of their area.
    areas = torch.bincount(sim["masks"][0].flatten().long())[1:]
    assert float(areas[areas > 0].float().median()) > 0.5 * np.exp(model.log_area_mean[0])


def test_same_seed_same_masks(model):
    a = simulate_masks(model, 6, (128, 128), seed=5)
    b = simulate_masks(model, 6, (128, 128), seed=5)
    c = simulate_masks(model, 6, (128, 128), seed=6)
    assert torch.equal(a["masks"], b["masks"]) and torch.equal(a["tracks"], b["tracks"])
    assert not torch.equal(a["masks"], c["masks"])


def test_simulation_exports_as_a_valid_ctc_sequence(tmp_path, model):
    sim = simulate_masks(model, 12, (160, 160), seed=3)
    write_ctc_sequence(_as_clip(sim), tmp_path, "01")
    assert errors_only(validate_path(tmp_path)) == []


def test_statistics_match_the_real_data(model, res_video):
    """Fitted-then-simulated statistics within stated tolerances of the real HeLa result."""
    masks, tracks = res_video
    real = label_video_statistics(masks, tracks)
    sims = [simulate_masks(model, 92, (512, 512), seed=s) for s in (0, 1)]
    sim_stats = [label_video_statistics(s["masks"].numpy(), s["tracks"].numpy()) for s in sims]
    pooled = {k: np.concatenate([s[k] for s in sim_stats]) for k in sim_stats[0]}
    rows = {r["statistic"]: r for r in compare_statistics(real, pooled)}
    assert abs(rows["area"]["relative"]) < 0.15
    assert abs(rows["displacement"]["relative"]) < 0.25
    assert abs(rows["eccentricity"]["relative"]) < 0.05 and abs(rows["solidity"]["relative"]) < 0.05
    real_cycles = cell_cycles(tracks)
    assert abs(np.mean(pooled["cycle_length"]) / np.mean(real_cycles[0][real_cycles[1]]) - 1) < 0.20
    assert abs(rows["density"]["relative"]) < 0.5
    assert 0.4 < rows["divisions_per_cell_frame"]["simulated"] / rows["divisions_per_cell_frame"]["real"] < 1.6


def test_no_lineage_needs_explicit_consent_and_then_never_divides(res_video):
    masks, _ = res_video
    with pytest.raises(BVDMDataError, match="no lineage.*assume_track_ids"):
        fit_mask_model(masks[:10], None)
    model = fit_mask_model(masks[:10], None, assume_track_ids=True)
    assert not model.divides
    sim = simulate_masks(model, 10, (128, 128), seed=0)
    check_clip(_as_clip(sim))
    assert cell_cycles(sim["tracks"].numpy())[0].size == 0


def test_no_divisions_fallback(res_video):
    masks, tracks = res_video
    flat = tracks.copy()
    flat[:, 3] = 0
    model = fit_mask_model(masks[:20], flat)
    assert not model.divides and model.cycle_lengths.size == 0


@pytest.mark.parametrize("make, match", [
    (lambda m, t: (m[:1], t), "at least 2 frames"),
    (lambda m, t: (m[0], t), r"\[T, H, W\]"),
    (lambda m, t: (m[:5].astype(np.float32), t), "integers"),
    (lambda m, t: (m[:5], t[t[:, 0] != int(m[0].max())]), "not in the lineage rows"),
    (lambda m, t: (m[:5, :40, :40], t), "whole interphase cells"),
])
def test_bad_input_is_refused_clearly(res_video, make, match):
    masks, tracks = make(*res_video)
    with pytest.raises(BVDMDataError, match=match):
        fit_mask_model(masks, tracks)


def test_simulation_rejects_impossible_requests(model):
    with pytest.raises(BVDMDataError, match="smaller than one cell"):
        simulate_masks(model, 4, (10, 10))
    with pytest.raises(BVDMDataError, match="num_frames"):
        simulate_masks(model, 0, (64, 64))
    with pytest.raises(BVDMDataError, match="density"):
        simulate_masks(model, 2, (64, 64), density=-1)


def test_cli_fit_masks_writes_a_bundle_and_a_report(tmp_path, res_video, capsys):
    from bvdm_data.cli import main
    from bvdm_data.clip import relabel_tracks

    masks, tracks = res_video
    window, rows = relabel_tracks(masks[:30, :350, :550], {int(l): int(p) for l, _, _, p in tracks})
    write_ctc_result(window, rows, tmp_path / "01_RES")
    assert main(["fit-masks", "--labels", str(tmp_path / "01_RES"), "--out", str(tmp_path / "bundle"),
                 "--min-separation", "0.8"]) == 0
    out = capsys.readouterr().out
    assert "displacement" in out and "wrote the masks part" in out and "spacing set by hand" in out
    fitted = MaskModel.load(str(tmp_path / "bundle"))
    assert fitted.num_angles == 32 and fitted.min_separation == 0.8
    assert fitted.real_statistics["spacing"]["fitted"] != 0.8  # the fitted spacing is kept for the record
    assert main(["fit-masks", "--labels", str(tmp_path / "missing"), "--out", str(tmp_path / "x")]) == 2
    with pytest.raises(SystemExit) as refused:
        main(["fit-masks", "--labels", str(tmp_path / "01_RES"), "--out", str(tmp_path / "x"),
              "--touching", "0.2", "--min-separation", "0.8"])
    assert refused.value.code == 2
    assert "--min-separation: not allowed with argument --touching" in capsys.readouterr().err


def test_artefact_cycles_are_judged_by_the_whole_cycle_in_the_rate_and_the_law():
    """A mother whose cycle runs through a single-child continuation is judged on the whole cycle, the same way
    by the division count (`divisions_in_view`) and the cycle law (`cycle_length_distribution`)."""
    from bvdm_data.masks.fidelity import divisions_in_view
    from bvdm_data.masks.fit import cycle_length_distribution
    from bvdm_data.masks.lineage import short_cycle_mothers

    rows = np.array([[1, 0, 9, 0], [2, 10, 11, 1], [3, 10, 19, 1],  # 1 divides; 2 is born at 10
                     [4, 12, 13, 2],                                 # 2 continues as 4 (a gap in the track)
                     [5, 14, 19, 4], [6, 14, 19, 4],                 # 4 divides: a 4-frame cycle 10-13, real
                     [7, 20, 20, 3], [8, 20, 20, 3]])                # 3 divides after a 10-frame cycle
    split = np.array([[1, 0, 9, 0], [2, 10, 11, 1], [3, 10, 19, 1], [4, 12, 19, 2], [5, 12, 19, 2]])
    assert short_cycle_mothers(rows, 4) == set() and short_cycle_mothers(split, 4) == {2}
    assert divisions_in_view(rows, 25, min_cycle=4) == 3  # 1, 4 and 3: the short row 4 is not an artefact
    assert divisions_in_view(split, 25, min_cycle=4) == 1  # 2 divides 2 frames after its birth: a split
    lengths, _ = cycle_length_distribution(rows, min_length=4)
    assert 4 in lengths and 10 in lengths
    assert 2 not in cycle_length_distribution(split, min_length=4)[0]


def test_density_for_coverage_makes_views_as_covered_as_asked(model):
    from bvdm_data.masks.coverage import covered_fraction, density_for_coverage

    def shown(density: float, seeds: list) -> float:
        return float(np.mean([covered_fraction(simulate_masks(model, 2, (224, 224), seed=s, density=density)
                                               ["masks"].numpy()[:, 16:208, 16:208]) for s in seeds]))

    density = density_for_coverage(model, (192, 192), 0.10, margin=16, fields=12, rounds=3)
    # converged on its own fields (the same ones every round), and near the target on others
    assert abs(shown(density, [np.random.SeedSequence([0, 200, f]) for f in range(12)]) - 0.10) < 0.01
    assert abs(shown(density, list(range(100, 112))) - 0.10) < 0.035
    assert density_for_coverage(model, (192, 192), 0.05, margin=16, fields=12, rounds=2) < density
    with pytest.raises(BVDMDataError, match=r"coverage must be a share of the pixels in \(0, 1\), got 1.5"):
        density_for_coverage(model, (96, 96), 1.5)
