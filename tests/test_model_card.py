"""The shipped model card's numbers come from the bundle's own files, so they cannot drift apart."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from bvdm_data.masks import MaskModel

HELA = Path(__file__).resolve().parents[1] / "pretrained" / "hela"
ROWS = {"area": "area (px, median)", "eccentricity": "eccentricity", "solidity": "solidity",
        "displacement": "displacement (px/frame)", "cycle_length": "complete cycle length (frames)",
        "density": "density (cells per 100×100 px, per frame)", "divisions_per_cell_frame": "divisions per cell-frame"}


def card_table() -> dict[str, list[str]]:
    text = (HELA / "MODEL_CARD.md").read_text()
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells and cells[0] in ROWS.values():
            rows[cells[0]] = cells[1:]
    return rows


def number(text: str) -> float:
    return float(text.replace("−", "-").replace("%", "").replace("+", "").strip())


def test_mask_table_matches_the_fit_report():
    report = {r["statistic"]: r for r in json.loads((HELA / "masks" / "fit_report.json").read_text())}
    table = card_table()
    assert set(table) == set(ROWS.values())
    for key, label in ROWS.items():
        real, simulated, relative, ks = table[label]
        row = report[key]
        assert number(real) == pytest.approx(row["real"], rel=0.01), label
        assert number(simulated) == pytest.approx(row["simulated"], rel=0.01), label
        assert number(relative) == pytest.approx(100 * row["relative"], abs=0.06), label
        if row["ks"] is not None:
            assert number(ks) == pytest.approx(row["ks"], abs=6e-4), label


def test_card_describes_the_fitted_model():
    model = MaskModel.load(HELA)
    text = " ".join((HELA / "MODEL_CARD.md").read_text().split())  # prose is wrapped anywhere
    assert f"{model.cycle_lengths.size} distinct observed cycle lengths" in text
    assert f"density {model.density * 1e4:.2f} cells per 100×100 px" in text
    division = model.real_statistics["division_calibration"]
    assert f"{division['share_of_residual']:.0%} divides".replace("%", " %") in text
    assert f"the rest ({1 - model.cycle_probabilities.sum():.0%}) never divides".replace("%", " %") in text
    assert f"{model.velocity_noise:.2f} px/frame per axis" in text
    assert f"{model.shape_components.shape[1]} PCA shape modes" in text
    profile = json.loads((HELA / "texture" / "texture.json").read_text())["statistics"]["edge_profile"]
    shown = re.search(r"inwards ([0-9., ]+) and outwards", text).group(1)
    assert np.allclose([float(v) for v in shown.split(", ")], profile[5::-1], atol=0.006)
    law = json.loads((HELA / "texture" / "texture.json").read_text())["statistics"]["label_law"]
    assert ", ".join(f"{v:.2f}" for v in law["share"]) in text
    grain = json.loads((HELA / "scene" / "scene.json").read_text())["noise_sigma"]
    assert f"blurred {grain[0]:g} × {grain[1]:g} px" in text


def test_gowt1_card_shows_its_label_law():
    gowt1 = HELA.parent / "gowt1"
    text = " ".join((gowt1 / "MODEL_CARD.md").read_text().split())
    law = json.loads((gowt1 / "texture" / "texture.json").read_text())["statistics"]["label_law"]
    assert ", ".join(f"{v:.2f}" for v in law["share"]) in text
    assert f"({len(law['share'])} bins of {law['cells'][0]} nuclei;" in text
