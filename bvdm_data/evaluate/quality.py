"""How real do generated cell crops look? Three distances, always next to two references.

* ``intensity``: 1-D Wasserstein distance between pixel-intensity distributions (-1..1 scale).
* ``spectrum``: RMS difference of the radially averaged log10 power spectra (texture scale).
* ``frechet``: Fréchet distance between Gaussian fits of features of a stated encoder,
  :class:`RandomFeatureEncoder` (``bvdm-random-cnn-v2``): no pretrained network can be
  downloaded here, so a fixed, seeded, randomly initialised CNN is used, and its
  features are the mean and spread of every layer's responses. Statistics of random
  filters at several scales describe texture (Ustyuzhaninov et al., "What does it take
  to generate natural textures?", ICLR 2017); v1 kept only the last, 4x4 layer, which
  saw cell size and brightness but not texture (flat and painted cells tied). Compare
  numbers with each other, never with published FIDs.

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

from bvdm_data.diffusion.noise import derive_key
from bvdm_data.synth.propagation import draw_brightness, paint_flat


ENCODER_NAME = "bvdm-random-cnn-v2"
MAX_PIXELS = 200_000


class RandomFeatureEncoder(nn.Module):
    """Four 3x3 stride-2 conv layers (32, 64, 64, 64 channels, ReLU), Kaiming-initialised from
    seed 0, frozen; features are the per-channel mean and std of every layer (448 values)."""

    def __init__(self) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.convs, c_in = nn.ModuleList(), 1
        for c_out in (32, 64, 64, 64):
            conv = nn.Conv2d(c_in, c_out, 3, stride=2, padding=1)
            with torch.no_grad():
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen) * np.sqrt(2.0 / (c_in * 9)))
                conv.bias.zero_()
            self.convs.append(conv)
            c_in = c_out
        self.requires_grad_(False).eval()

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, features = x.float(), []
        for conv in self.convs:
            h = torch.relu(conv(h))
            features += [h.mean((2, 3)), h.std((2, 3))]
        return torch.cat(features, 1)


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


def flat_baseline(masks: torch.Tensor, statistics: dict, seed: int = 0) -> torch.Tensor:
    """Mask x drawn mean intensity, blurred, plus Gaussian noise of the background's spread
    (:func:`bvdm_data.synth.propagation.paint_flat`, one generator for all cells' brightness)."""
    values = draw_brightness(statistics, [masks.shape[0]], [torch.Generator().manual_seed(seed)])
    return paint_flat(statistics, masks, values, [derive_key(seed, i) for i in range(masks.shape[0])])
