"""Photometric augmentation for trainers: the contrast, focus and noise of another recording, drawn per crop.

A segmenter trained on one recording meets others whose nuclei read brighter or dimmer against the background,
whose focus is softer and whose camera is noisier. Trainers of cell segmenters vary those three on every
training crop, whatever its source; :func:`augment_photometric` does it in the 0..1 units of the clip contract,
on whatever device the batch lives on, with every draw from the caller's generator so that a checkpointed
training resumes exactly. Its ranges span the changes of ``benchmarks/shift.py``.

Measured (RESULTS.md §1, "A trainer's photometric augmentation"): with it on both halves of a real + BVDM
batch, adding the clips cost no SEG on HeLa under any change of image formation tested, where without it the
mix fell 0.008-0.010 behind the real frames alone under blur, heavy noise and doubled contrast; the
augmentation itself cost 0.008 SEG on unchanged test frames.

Example, in a training loop over a :class:`~bvdm_data.MixedStream` loader::

    gen = torch.Generator().manual_seed(0)
    for batch in loader:                          # collate_clips: video [B, T, 1, H, W]
        video = augment_photometric(batch["video"], gen)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
from kornia.filters import gaussian_blur2d, median_blur

from bvdm_data.errors import ArgumentError

MAD_TO_STD = 1.482602218505602  # the standard deviation of a Gaussian over its median absolute deviation
# The 3x3 median follows the noise a little, so the spread of (pixel - median) read as above is 0.863 of the
# noise's own sigma (8 x 512^2 pixels of white Gaussian noise, 0.861-0.866 per image); crop_noise divides it out.
MEDIAN_RESIDUAL = 0.863
CHANGES = ("contrast", "blur", "noise")  # what Photometric can draw, in the order augment_photometric applies them


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
        for name in CHANGES:
            bounds = getattr(self, name)
            if bounds is not None and not (len(bounds) == 2 and 0 < bounds[0] <= bounds[1]):
                raise ArgumentError(f"Photometric.{name} is a range (low, high) with 0 < low <= high, or None; "
                                 f"got {bounds}")
        if self.noise is not None and self.noise[0] < 1:
            raise ArgumentError(f"Photometric.noise multiplies the crop's noise, which adding noise cannot lower: "
                             f"its range starts at 1 or more, got {self.noise}")
        if not 0 <= self.p <= 1:
            raise ArgumentError(f"Photometric.p is a probability, got {self.p}")

    def only(self, changes: Sequence[str]) -> Photometric:
        """These ranges with every change not named in ``changes`` switched off.

        Example:
            >>> Photometric().only(["blur", "noise"])
            Photometric(contrast=None, blur=(0.3, 2.0), noise=(1.0, 4.0), p=0.5)
        """
        changes = (changes,) if isinstance(changes, str) else tuple(changes)  # "blur" is one change, not letters
        unknown = sorted(set(changes) - set(CHANGES))
        if unknown:
            raise ArgumentError(f"Photometric draws {', '.join(CHANGES)}; not {', '.join(unknown)}")
        return replace(self, **{name: None for name in CHANGES if name not in changes})


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
    """Crops ``[B, 1, H, W]`` or clips ``[B, T, 1, H, W]`` in 0..1, each one's contrast, focus and noise changed.

    Each change is applied to an item with probability ``ranges.p``; a clip's frames share their item's draws
    (one recording, one image formation) and get noise of their own. The changes come in the order a microscope
    makes them: the light above the background (the frame's median), then the blur of the optics, then the
    camera's noise; the result is clipped to 0..1 as inputs are. Every draw comes from ``gen`` (a CPU
    generator), so the same generator state gives the same result on any device.

    Example:
        >>> x = torch.rand(4, 1, 32, 32)
        >>> y = augment_photometric(x, torch.Generator().manual_seed(0))
        >>> y.shape, bool(((0 <= y) & (y <= 1)).all())
        (torch.Size([4, 1, 32, 32]), True)
        >>> augment_photometric(torch.rand(2, 3, 1, 32, 32), torch.Generator()).shape  # two 3-frame clips
        torch.Size([2, 3, 1, 32, 32])
    """
    if x.ndim not in (4, 5) or x.shape[-3] != 1:
        raise ArgumentError(f"augment_photometric takes crops [B, 1, H, W] or clips [B, T, 1, H, W], got "
                            f"{tuple(x.shape)}")
    b, frames = len(x), (x.shape[1] if x.ndim == 5 else 1)

    def draw(bounds: tuple[float, float] | None, log: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        # Draws are taken for a change that is off too, so that switching one off leaves the others' draws.
        on = (torch.rand(b, generator=gen) < ranges.p) & (bounds is not None)
        lo, hi = (1.0, 1.0) if bounds is None else bounds
        lo, hi = (math.log(lo), math.log(hi)) if log else (lo, hi)
        value = lo + (hi - lo) * torch.rand(b, generator=gen)
        value = value.exp() if log else value
        return (on.repeat_interleave(frames).to(x.device),
                value.repeat_interleave(frames).to(x.device, x.dtype))  # a clip's frames share its draws

    contrast_on, contrast = draw(ranges.contrast, log=True)
    blur_on, sigma = draw(ranges.blur)
    noise_on, times = draw(ranges.noise)
    noise = torch.randn(x.shape, generator=gen).to(x.device, x.dtype).flatten(0, -4)
    out = x.flatten(0, -4)  # [B * T, 1, H, W]
    n = len(out)
    if contrast_on.any():
        background = out.flatten(1).median(1).values.view(-1, 1, 1, 1)
        factor = torch.where(contrast_on, contrast, torch.ones_like(contrast)).view(-1, 1, 1, 1)
        out = background + factor * (out - background)
    if blur_on.any():
        size = 2 * math.ceil(3 * ranges.blur[1]) + 1
        blurred = gaussian_blur2d(out, size, sigma[:, None].expand(n, 2).contiguous(), border_type="reflect")
        out = torch.where(blur_on.view(-1, 1, 1, 1), blurred, out)
    if noise_on.any():
        add = crop_noise(out) * (times ** 2 - 1).sqrt()  # times >= 1: Photometric checks it
        out = out + torch.where(noise_on, add, torch.zeros_like(add)).view(-1, 1, 1, 1) * noise
    return out.clamp(0, 1).view(x.shape)
