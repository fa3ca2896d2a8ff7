"""The trainer-side photometric augmentation: each change does what it says, from the caller's generator."""

import pytest
import torch

from bvdm_data.errors import ArgumentError
from bvdm_data.photometric import Photometric, augment_photometric, crop_noise

ONLY = {"contrast": None, "blur": None, "noise": None}


def nucleus(size: int = 64, noise: float = 0.0, seed: int = 0) -> torch.Tensor:
    """A disc of 0.4 on a background of 0.1, with Gaussian noise: [4, 1, size, size]."""
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    disc = ((yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size / 6) ** 2).float()
    x = (0.1 + 0.3 * disc).expand(4, 1, size, size)
    return x + noise * torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))


def test_contrast_scales_the_light_above_the_background_only():
    ranges = Photometric(**{**ONLY, "contrast": (2.0, 2.0)}, p=1.0)
    y = augment_photometric(nucleus(), torch.Generator().manual_seed(0), ranges)
    assert torch.allclose(y[:, 0, 0, 0], torch.full((4,), 0.1))  # background: the median, unchanged
    assert torch.allclose(y[:, 0, 32, 32], torch.full((4,), 0.7))  # 0.1 + 2 x 0.3


def test_noise_raises_the_crops_own_noise_by_the_factor_drawn():
    x = nucleus(128, noise=0.01)
    ranges = Photometric(**{**ONLY, "noise": (3.0, 3.0)}, p=1.0)
    y = augment_photometric(x, torch.Generator().manual_seed(1), ranges)
    ratio = crop_noise(y) / crop_noise(x)
    assert torch.allclose(ratio, torch.full((4,), 3.0), rtol=0.08), ratio
    assert torch.allclose(y.mean((1, 2, 3)), x.mean((1, 2, 3)), atol=2e-3)  # zero-mean: no brightness change


def test_blur_spreads_a_point_by_its_sigma():
    x = torch.zeros(2, 1, 33, 33)
    x[:, 0, 16, 16] = 1.0
    y = augment_photometric(x, torch.Generator().manual_seed(0), Photometric(**{**ONLY, "blur": (1.5, 1.5)}, p=1.0))
    offsets = (torch.arange(33) - 16.0) ** 2
    spread = (y[0, 0].sum(0) * offsets).sum() / y[0, 0].sum()
    assert float(spread) ** 0.5 == pytest.approx(1.5, rel=0.03)
    assert float(y[0].sum()) == pytest.approx(1.0, rel=1e-3)  # light is moved, not made


def test_draws_come_from_the_generator_and_probability_zero_changes_nothing():
    x = nucleus(noise=0.01)
    a = augment_photometric(x, torch.Generator().manual_seed(5))
    b = augment_photometric(x, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    assert not torch.equal(a, augment_photometric(x, torch.Generator().manual_seed(6)))
    assert torch.equal(augment_photometric(x.clamp(0, 1), torch.Generator(), Photometric(p=0.0)), x.clamp(0, 1))


def test_switching_one_change_off_keeps_the_others_draws():
    x = nucleus()
    blur_alone = augment_photometric(x, torch.Generator().manual_seed(3), Photometric(contrast=None, noise=None, p=1.0))
    # contrast on with a factor of 1 changes nothing; the blur must then be drawn as when contrast is off
    with_contrast = augment_photometric(x, torch.Generator().manual_seed(3),
                                        Photometric(contrast=(1.0, 1.0), noise=None, p=1.0))
    assert torch.allclose(blur_alone, with_contrast, atol=1e-6)
    assert not torch.allclose(blur_alone, augment_photometric(x, torch.Generator().manual_seed(4),
                                                              Photometric(contrast=None, noise=None, p=1.0)))


@pytest.mark.parametrize("kwargs, words", [({"contrast": (2.0, 1.0)}, "0 < low <= high"),
                                           ({"blur": (0.0, 1.0)}, "0 < low <= high"),
                                           ({"noise": (0.5, 2.0)}, "starts at 1"),
                                           ({"p": 1.5}, "probability")])
def test_bad_ranges_are_refused(kwargs, words):
    with pytest.raises(ArgumentError, match=words):
        Photometric(**kwargs)


def test_only_keeps_the_named_changes_and_their_ranges():
    ranges = Photometric(blur=(1.0, 1.5), p=0.8)
    assert ranges.only(["blur", "noise"]) == Photometric(contrast=None, blur=(1.0, 1.5), noise=(1.0, 4.0), p=0.8)
    assert ranges.only(["contrast", "blur", "noise"]) == ranges and ranges.only([]).blur is None
    assert ranges.only("blur") == ranges.only(["blur"])
    with pytest.raises(ArgumentError, match="not focus"):
        ranges.only(["blur", "focus"])


def test_crops_of_another_shape_are_refused():
    with pytest.raises(ArgumentError, match=r"crops \[B, 1, H, W\] or clips"):
        augment_photometric(torch.rand(1, 32, 32), torch.Generator())



def test_a_clips_frames_share_one_image_formation_and_get_noise_of_their_own():
    frame = nucleus(64, noise=0.01)[:1]  # [1, 1, H, W], with noise of its own to raise
    clips = frame.expand(2, 1, 1, 64, 64).repeat(3, 1, 1, 1, 1).reshape(3, 2, 1, 64, 64)  # 3 clips, 2 same frames
    y = augment_photometric(clips, torch.Generator().manual_seed(2), Photometric(noise=None, p=1.0))
    assert torch.equal(y[:, 0], y[:, 1])  # same draws for both frames of a clip
    assert not torch.equal(y[0], y[1])  # another clip, other draws
    noisy = augment_photometric(clips, torch.Generator().manual_seed(2), Photometric(contrast=None, blur=None, p=1.0))
    assert not torch.equal(noisy[:, 0], noisy[:, 1])


def test_apply_adds_the_noise_it_is_given_scaled_to_the_crops_own_and_refuses_a_mismatch():
    """The noise comes from the caller (vary_formation makes it keyed, on the device), one image per noisy item."""
    from bvdm_data.photometric import apply_photometric, draw_photometric

    x = nucleus(64, noise=0.01)  # [4, 1, 64, 64]
    ranges = Photometric(**{**ONLY, "noise": (3.0, 3.0)}, p=1.0)
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(9))
    y = apply_photometric(x, draw_photometric(torch.Generator(), 4, ranges), noise, ranges)
    scale = (crop_noise(x) * 8 ** 0.5).view(-1, 1, 1, 1)  # 3x the noise: add sqrt(3^2 - 1) of it
    assert torch.allclose(y, (x + scale * noise).clamp(0, 1), atol=1e-6)
    with pytest.raises(ArgumentError, match=r"noise for the 4 noisy one\(s\)"):
        apply_photometric(x, draw_photometric(torch.Generator(), 4, ranges), noise[:2], ranges)
    with pytest.raises(ArgumentError, match=r"one draw per item \(4, got 3\)"):
        apply_photometric(x, draw_photometric(torch.Generator(), 3, ranges), noise, ranges)
