"""The texture realism protocol: which brightness each held-out mask is painted at."""

from __future__ import annotations

import pytest
import torch

from bvdm_data.ctc import open_sequence
from bvdm_data.diffusion import TextureModel
from bvdm_data.diffusion.edges import mean_inside
from bvdm_data.errors import BVDMDataError
from bvdm_data.evaluate.realism import paint_masks, split_crops, texture_rows


@pytest.fixture(scope="module")
def texture_and_cells(tiny_bundle, hela_root):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    texture = TextureModel.load(str(tiny_bundle))
    held, reference = split_crops(open_sequence(hela_root, "02", labels="ERR_SEG"), texture.crop_size, [3], 6)
    yield texture, held, reference
    torch.set_num_threads(threads)  # the modules after this one run at the suite's count


def test_paint_masks_at_given_brightness_keeps_each_cells_mean(texture_and_cells):
    texture, held, _ = texture_and_cells
    values = mean_inside(held.images, held.masks)
    # The painting is scaled about the background, so a real cell darker than it cannot be matched.
    bright = values > texture.statistics["background_mean"] + 0.05
    assert bright.sum() >= 4
    for kwargs in ({"flat": True}, {"t_s": 5}):
        painted, _ = paint_masks(texture, held.masks, brightness=values, **kwargs)
        assert painted.shape == held.images.shape
        assert torch.allclose(mean_inside(painted, held.masks)[bright], values[bright], atol=0.02), kwargs
    drawn, _ = paint_masks(texture, held.masks, flat=True)
    assert not torch.allclose(mean_inside(drawn, held.masks), values, atol=0.02)


def test_brightness_options_are_checked(texture_and_cells):
    texture, held, reference = texture_and_cells
    with pytest.raises(BVDMDataError, match="brightness has 2 values for 6 masks"):
        paint_masks(texture, held.masks, flat=True, brightness=torch.zeros(2))
    with pytest.raises(BVDMDataError, match="brightness must be one of"):
        texture_rows(texture, held, reference, [], brightness="paired")


def test_rows_at_real_brightness_differ_from_drawn_and_repeat(texture_and_cells):
    texture, held, reference = texture_and_cells
    settings = [("t_s=5", {"t_s": 5})]
    real = texture_rows(texture, held, reference, settings, brightness="real")
    again = texture_rows(texture, held, reference, settings, brightness="real")
    drawn = texture_rows(texture, held, reference, settings)
    assert [r["setting"] for r in real] == ["real vs real (floor)", "flat baseline", "t_s=5"]
    timeless = [{k: v for k, v in r.items() if k != "cells_per_s"} for r in (*real, *again)]
    assert timeless[:3] == timeless[3:]
    assert real[0] == drawn[0]  # the floor paints nothing
    assert real[1]["intensity"] != drawn[1]["intensity"]
