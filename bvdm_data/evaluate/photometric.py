"""Trainer-side photometric augmentation: the contrast, focus and noise of another recording, drawn per crop.

A segmenter trained on one recording meets others whose nuclei read brighter or dimmer against the background,
whose focus is softer and whose camera is noisier. What trainers of cell segmenters commonly do about it is to
vary those three on every training crop, whatever the crop's source. :func:`augment_photometric` does that
the way :mod:`benchmarks.shift` changes the test frames (RESULTS.md §1, "Another recording's image formation"),
in the 0..1 units a segmenter reads, on whatever device the batch lives on, with every draw taken from the
caller's generator so that a checkpointed training resumes exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from kornia.filters import gaussian_blur2d, median_blur

MAD_TO_STD = 1.482602218505602  # the standard deviation of a Gaussian over its median absolute deviation
# The 3x3 median follows the noise a little, so the spread of (pixel - median) read as above is 0.863 of the
# noise's own sigma (8 x 512^2 pixels of white Gaussian noise, 0.861-0.866 per image); crop_noise divides it out.
MEDIAN_RESIDUAL = 0.863


@dataclass(frozen=True)
class Photometric:
    """Ranges of :func:`augment_photometric`; each change is applied to a crop with probability ``p`` (None: never).

    contrast: light above the crop's median (its background) times a factor drawn log-uniformly in this range.
    blur: the sigma (px) of a Gaussian blur, drawn uniformly.
    noise: the crop's own noise raised to this many times itself (drawn uniformly) by adding Gaussian noise.

    The defaults span the changes of RESULTS.md §1's shift test: contrast x0.5..2, blur up to 2 px, noise up to x4.
    """

    contrast: tuple[float, float] | None = (0.5, 2.0)
    blur: tuple[float, float] | None = (0.3, 2.0)
    noise: tuple[float, float] | None = (1.0, 4.0)
    p: float = 0.5

    def __post_init__(self) -> None:
        for name in ("contrast", "blur", "noise"):
            bounds = getattr(self, name)
            if bounds is not None and not (len(bounds) == 2 and 0 < bounds[0] <= bounds[1]):
                raise ValueError(f"Photometric.{name} is a range (low, high) with 0 < low <= high, or None; "
                                 f"got {bounds}")
        if self.noise is not None and self.noise[0] < 1:
            raise ValueError(f"Photometric.noise multiplies the crop's noise, which adding noise cannot lower: "
                             f"its range starts at 1 or more, got {self.noise}")
        if not 0 <= self.p <= 1:
            raise ValueError(f"Photometric.p is a probability, got {self.p}")


def crop_noise(x: torch.Tensor) -> torch.Tensor:
    """Each image's noise ``[B]``: the robust spread of its difference from its 3x3 median, as a Gaussian's sigma.

    Most pixels of a fluorescence crop are background, so the median absolute deviation is the background's
    noise; the outlines, a minority, barely move it. White Gaussian noise reads as its own sigma.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> x = 0.5 + 0.01 * torch.randn(2, 1, 64, 64, generator=g)
        >>> [round(v, 3) for v in crop_noise(x).tolist()]
        [0.01, 0.01]
    """
    residual = (x - median_blur(x, 3))[:, :, 1:-1, 1:-1]  # the zero-padded edge is not the image's
    return MAD_TO_STD / MEDIAN_RESIDUAL * residual.abs().flatten(1).median(1).values


def augment_photometric(x: torch.Tensor, gen: torch.Generator, ranges: Photometric = Photometric()) -> torch.Tensor:
    """``x`` ``[B, 1, H, W]`` in 0..1, each crop's contrast, focus and noise changed with probability ``ranges.p``.

    The changes come in the order a microscope makes them: the light above the background, then the blur of the
    optics, then the camera's noise; the result is clipped to 0..1 as inputs are. Every draw comes from ``gen``
    (a CPU generator), so the same generator state gives the same crops on any device.

    Example:
        >>> x = torch.rand(4, 1, 32, 32)
        >>> y = augment_photometric(x, torch.Generator().manual_seed(0))
        >>> y.shape, bool(((0 <= y) & (y <= 1)).all())
        (torch.Size([4, 1, 32, 32]), True)
    """
    if x.ndim != 4 or x.shape[1] != 1:
        raise ValueError(f"augment_photometric takes [B, 1, H, W] crops, got {tuple(x.shape)}")
    b = len(x)

    def draw(bounds: tuple[float, float] | None, log: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        # Draws are taken for a change that is off too, so that switching one off leaves the others' draws.
        on = (torch.rand(b, generator=gen) < ranges.p) & (bounds is not None)
        lo, hi = (1.0, 1.0) if bounds is None else bounds
        lo, hi = (math.log(lo), math.log(hi)) if log else (lo, hi)
        value = lo + (hi - lo) * torch.rand(b, generator=gen)
        return on.to(x.device), (value.exp() if log else value).to(x.device, x.dtype)

    contrast_on, contrast = draw(ranges.contrast, log=True)
    blur_on, sigma = draw(ranges.blur)
    noise_on, times = draw(ranges.noise)
    noise = torch.randn(x.shape, generator=gen).to(x.device, x.dtype)
    out = x
    if contrast_on.any():
        background = out.flatten(1).median(1).values.view(-1, 1, 1, 1)
        factor = torch.where(contrast_on, contrast, torch.ones_like(contrast)).view(-1, 1, 1, 1)
        out = background + factor * (out - background)
    if blur_on.any():
        size = 2 * math.ceil(3 * ranges.blur[1]) + 1
        sigma = torch.where(blur_on, sigma, torch.full_like(sigma, ranges.blur[0]))  # skipped crops' unused
        blurred = gaussian_blur2d(out, size, sigma[:, None].expand(b, 2).contiguous(), border_type="reflect")
        out = torch.where(blur_on.view(-1, 1, 1, 1), blurred, out)
    if noise_on.any():
        add = crop_noise(out) * (times.clamp(min=1) ** 2 - 1).sqrt()
        out = out + torch.where(noise_on, add, torch.zeros_like(add)).view(-1, 1, 1, 1) * noise
    return out.clamp(0, 1)
