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
from dataclasses import dataclass, fields, replace

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


@dataclass(frozen=True)
class PhotometricDraw:
    """Which changes apply to each of ``B`` items and by how much: CPU tensors ``[B]`` (a change that is off for
    an item keeps a value, unused), from :func:`draw_photometric`."""

    contrast_on: torch.Tensor
    contrast: torch.Tensor
    blur_on: torch.Tensor
    sigma: torch.Tensor
    noise_on: torch.Tensor
    times: torch.Tensor

    @staticmethod
    def cat(draws: Sequence[PhotometricDraw]) -> PhotometricDraw:
        """The draws of several batches as one, in order.

        Example:
            >>> g = torch.Generator().manual_seed(0)
            >>> len(PhotometricDraw.cat([draw_photometric(g, 2), draw_photometric(g, 3)]).sigma)
            5
        """
        return PhotometricDraw(*(torch.cat([getattr(d, f.name) for d in draws]) for f in fields(PhotometricDraw)))


def draw_photometric(gen: torch.Generator, count: int, ranges: Photometric = Photometric()) -> PhotometricDraw:
    """The changes of ``count`` items: six CPU draws of ``count`` numbers from ``gen``, two per change in
    :data:`CHANGES` order (whether, how much). Draws are taken for a change that is off too, so that switching
    one off leaves the others' draws.

    Example:
        >>> d = draw_photometric(torch.Generator().manual_seed(0), 4, Photometric(p=1.0, blur=None))
        >>> bool(d.contrast_on.all()), bool(d.blur_on.any())
        (True, False)
    """
    def draw(bounds: tuple[float, float] | None, log: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        on = (torch.rand(count, generator=gen) < ranges.p) & (bounds is not None)
        lo, hi = (1.0, 1.0) if bounds is None else bounds
        lo, hi = (math.log(lo), math.log(hi)) if log else (lo, hi)
        value = lo + (hi - lo) * torch.rand(count, generator=gen)
        return on, value.exp() if log else value

    return PhotometricDraw(*draw(ranges.contrast, log=True), *draw(ranges.blur), *draw(ranges.noise))


def apply_photometric(x: torch.Tensor, draws: PhotometricDraw, noise: torch.Tensor,
                      ranges: Photometric = Photometric()) -> torch.Tensor:
    """Crops ``[B, 1, H, W]`` or clips ``[B, T, 1, H, W]`` in 0..1 changed as ``draws`` (one per item) say, on
    ``x``'s device; ``noise``: standard normal noise for the items whose noise is on, in order (``[N, ...]``,
    ``N = draws.noise_on.sum()``, any device): the camera's, scaled here to each item's own.

    A clip's frames share their item's draws (one recording, one image formation) and get noise of their own.
    The changes come in the order a microscope makes them: the light above the background (the frame's median),
    then the blur of the optics, then the camera's noise; the result is clipped to 0..1 as inputs are. Each change
    is computed for the items it applies to alone, chosen from the CPU draws, so nothing waits on the device.

    Example:
        >>> x = torch.rand(2, 1, 16, 16)
        >>> off = draw_photometric(torch.Generator(), 2, Photometric(p=0.0))
        >>> torch.equal(apply_photometric(x, off, torch.randn(0, 1, 16, 16)), x)
        True
    """
    if x.ndim not in (4, 5) or x.shape[-3] != 1:
        raise ArgumentError(f"photometric changes take crops [B, 1, H, W] or clips [B, T, 1, H, W], got "
                            f"{tuple(x.shape)}")
    noisy = int(draws.noise_on.sum())
    if len(draws.sigma) != len(x) or noise.shape != (noisy, *x.shape[1:]):
        raise ArgumentError(f"photometric changes need one draw per item ({len(x)}, got {len(draws.sigma)}) and "
                            f"noise for the {noisy} noisy one(s), {(noisy, *x.shape[1:])}; got {tuple(noise.shape)}")
    frames = x.shape[1] if x.ndim == 5 else 1
    out = x.flatten(0, -4).clone()  # [B * T, 1, H, W]

    def images(on: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The images whose item has the change on (indices on the device) and their values ``[n, 1, 1, 1]``."""
        chosen = on.repeat_interleave(frames).nonzero()[:, 0]
        value = values.repeat_interleave(frames)[chosen].to(x.device, x.dtype).view(-1, 1, 1, 1)
        return chosen.to(x.device), value

    if bool(draws.contrast_on.any()):
        chosen, factor = images(draws.contrast_on, draws.contrast)
        sub = out[chosen]
        background = sub.flatten(1).median(1).values.view(-1, 1, 1, 1)
        out[chosen] = background + factor * (sub - background)
    if bool(draws.blur_on.any()):
        chosen, sigma = images(draws.blur_on, draws.sigma)
        size = 2 * math.ceil(3 * ranges.blur[1]) + 1
        out[chosen] = gaussian_blur2d(out[chosen], size, sigma.view(-1, 1).expand(-1, 2).contiguous(),
                                      border_type="reflect")
    if noisy:
        chosen, scale = images(draws.noise_on, (draws.times ** 2 - 1).sqrt())  # times >= 1: Photometric checks it
        sub = out[chosen]
        out[chosen] = sub + crop_noise(sub).view(-1, 1, 1, 1) * scale * noise.to(x.device, x.dtype).flatten(0, -4)
    return out.clamp(0, 1).view(x.shape)


def augment_photometric(x: torch.Tensor, gen: torch.Generator, ranges: Photometric = Photometric()) -> torch.Tensor:
    """Crops ``[B, 1, H, W]`` or clips ``[B, T, 1, H, W]`` in 0..1, each one's contrast, focus and noise changed.

    Each change is applied to an item with probability ``ranges.p`` (:func:`apply_photometric` says how). Every
    draw comes from ``gen`` (a CPU generator), so the same generator state gives the same result on any device.

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
    draws = draw_photometric(gen, len(x), ranges)
    noise = torch.randn(x.shape, generator=gen)  # for every item, whatever is on: the generator's state after a call
    return apply_photometric(x, draws, noise[draws.noise_on], ranges)  # does not depend on the draws
