"""How real do generated cell crops look? Three distances, always next to two references.

* ``intensity``: 1-D Wasserstein distance between pixel-intensity distributions (-1..1 scale).
* ``spectrum``: RMS difference of the radially averaged log10 power spectra (texture scale).
* ``frechet``: Fréchet distance between Gaussian fits of features of a stated encoder,
  :class:`RandomFeatureEncoder` (``bvdm-random-cnn-v1``): no pretrained network can be
  downloaded here, so a fixed, seeded, randomly initialised CNN is used. Such random
  features track FID-like comparisons only coarsely; compare numbers with each other,
  never with published FIDs.

References: ``real_vs_real`` (two disjoint sets of real crops: the floor) and
``flat`` (mask x mean intensity, blurred, plus noise: the CellCycleGAN/MitoGen-style
baseline a learnt texture must beat).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from scipy import linalg
from scipy.stats import wasserstein_distance
from torch import nn

from bvdm_data.diffusion.crops import sample_brightness
from bvdm_data.diffusion.sample import flat_cells

ENCODER_NAME = "bvdm-random-cnn-v1"
MAX_PIXELS = 200_000


class RandomFeatureEncoder(nn.Module):
    """Four 3x3 stride-2 conv layers (32, 64, 64, 64 channels, ReLU), Kaiming-initialised from
    seed 0, frozen; features are the per-channel mean and std of the last layer (128 values)."""

    def __init__(self) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        layers, c_in = [], 1
        for c_out in (32, 64, 64, 64):
            conv = nn.Conv2d(c_in, c_out, 3, stride=2, padding=1)
            with torch.no_grad():
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen) * np.sqrt(2.0 / (c_in * 9)))
                conv.bias.zero_()
            layers += [conv, nn.ReLU()]
            c_in = c_out
        self.net = nn.Sequential(*layers).requires_grad_(False).eval()

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.net(x.float())
        return torch.cat([h.mean((2, 3)), h.std((2, 3))], 1)


def _sample_pixels(x: torch.Tensor, rng: np.random.Generator) -> np.ndarray:
    flat = x.detach().cpu().numpy().ravel()
    return flat if flat.size <= MAX_PIXELS else rng.choice(flat, MAX_PIXELS, replace=False)


def radial_log_spectrum(x: torch.Tensor) -> np.ndarray:
    """Mean over crops of the radially averaged log10 power spectrum (mean removed per crop)."""
    x = x.detach().cpu().double()[:, 0]
    x = x - x.mean((1, 2), keepdim=True)
    power = torch.fft.fftshift(torch.fft.fft2(x).abs() ** 2, dim=(-2, -1)).mean(0).numpy()
    h, w = power.shape
    yy, xx = np.indices(power.shape)
    r = np.hypot(yy - h // 2, xx - w // 2).astype(int)
    keep = r < min(h, w) // 2
    radial = np.bincount(r[keep], power[keep]) / np.maximum(np.bincount(r[keep]), 1)
    return np.log10(radial[1:] + 1e-12)


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to feature rows of ``a`` and ``b``.

    A small ridge keeps the covariances invertible when there are fewer samples than features.
    """
    mu_a, mu_b = a.mean(0), b.mean(0)
    ridge = 1e-6 * np.eye(a.shape[1])
    cov_a, cov_b = np.cov(a, rowvar=False) + ridge, np.cov(b, rowvar=False) + ridge
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = np.real(linalg.sqrtm(cov_a @ cov_b))
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * covmean))


def texture_distances(generated: torch.Tensor, real: torch.Tensor, seed: int = 0) -> dict[str, float]:
    """The three distances between two sets of crops ``[N, 1, S, S]`` in -1..1."""
    rng = np.random.default_rng(seed)
    encoder = RandomFeatureEncoder()
    return {
        "intensity": float(wasserstein_distance(_sample_pixels(generated, rng), _sample_pixels(real, rng))),
        "spectrum": float(np.sqrt(np.mean((radial_log_spectrum(generated) - radial_log_spectrum(real)) ** 2))),
        "frechet": frechet_distance(encoder(generated.cpu()).numpy(), encoder(real.cpu()).numpy()),
    }


def flat_baseline(masks: torch.Tensor, statistics: dict, seed: int = 0,
                  blur_sigma: float = 1.0) -> torch.Tensor:
    """Mask x mean intensity, blurred, plus Gaussian noise of the background's spread."""
    gen = torch.Generator().manual_seed(seed)
    values = sample_brightness(statistics, masks.shape[0], gen)
    image = flat_cells(masks, values, statistics["background_mean"], blur_sigma)
    noise = statistics["background_std"] * torch.randn(image.shape, generator=gen)
    return (image + noise).clamp(-1, 1)
