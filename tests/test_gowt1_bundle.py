"""The shipped gowt1 bundle: found by name, complete and verified; `generate` writes uint8 sequences that validate."""

from __future__ import annotations

import numpy as np

from bvdm_data.bundle import Bundle
from bvdm_data.cli import main
from bvdm_data.ctc import open_sequence
from bvdm_data.diffusion.texture import image_units


def test_gowt1_bundle_is_complete_and_verified():
    bundle = Bundle.load("gowt1")
    assert set(bundle.parts) == {"masks", "texture", "flow", "scene"}
    assert (bundle.root / "MODEL_CARD.md").is_file()


def test_generate_gowt1_writes_uint8_in_the_fitted_band(tmp_path):
    out = tmp_path / "synth"
    # GOWT1 nuclei are ~50 px across: 160 px frames at 4x the fitted density hold a few; tiny t_s and t_f.
    assert main(["generate", "--bundle", "gowt1", "--out", str(out), "--clips", "1", "--frames", "2", "--size",
                 "160", "160", "--t-s", "4", "--t-f", "1", "--density", "1e-4"]) == 0
    (lo, hi), dtype = image_units("gowt1")
    seq = open_sequence(out, "01")
    frame = seq.images.read(0)
    assert frame.dtype == np.dtype(dtype) == np.uint8 and lo - 1 <= frame.min() and frame.max() <= hi + 1
    assert seq.labels.read(0).max() > 0
    assert main(["validate", str(out)]) == 0
