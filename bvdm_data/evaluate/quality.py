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
METRICS = ("intensity", "spectrum", "frechet")
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


def _sample_pixels(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    flat = x.ravel()
    return flat if flat.size <= MAX_PIXELS else rng.choice(flat, MAX_PIXELS, replace=False)


def _crop_power(x: torch.Tensor) -> np.ndarray:
    """Power spectrum of every crop ``[N, 1, S, S]`` (mean removed per crop), centred: ``[N, S, S]``."""
    x = x.detach().cpu().double()[:, 0]
    x = x - x.mean((1, 2), keepdim=True)
    return torch.fft.fftshift(torch.fft.fft2(x).abs() ** 2, dim=(-2, -1)).numpy()


def _radial_log(power: np.ndarray) -> np.ndarray:
    h, w = power.shape
    yy, xx = np.indices(power.shape)
    r = np.hypot(yy - h // 2, xx - w // 2).astype(int)
    keep = r < min(h, w) // 2
    radial = np.bincount(r[keep], power[keep]) / np.maximum(np.bincount(r[keep]), 1)
    return np.log10(radial[1:] + 1e-12)


def radial_log_spectrum(x: torch.Tensor) -> np.ndarray:
    """Mean over crops of the radially averaged log10 power spectrum (mean removed per crop)."""
    return _radial_log(_crop_power(x).mean(0))


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


class CropSummary:
    """What the three distances need of each crop ``[N, 1, S, S]`` (pixels, power spectrum, encoder
    features), so that subsets of the crops (resamples) are scored without encoding them again."""

    def __init__(self, crops: torch.Tensor, encoder: RandomFeatureEncoder | None = None) -> None:
        crops = crops.detach().cpu()
        self.pixels = crops.numpy().reshape(len(crops), -1)
        self.power = _crop_power(crops)
        self.features = (encoder or RandomFeatureEncoder())(crops).numpy()

    def __len__(self) -> int:
        return len(self.pixels)


def summary_distances(generated: CropSummary, real: CropSummary, pick_generated: np.ndarray | None = None,
                      pick_real: np.ndarray | None = None, seed: int = 0) -> dict[str, float]:
    """The three distances between two summarised crop sets, or between the crops ``pick_*`` of them."""
    rng = np.random.default_rng(seed)
    g = slice(None) if pick_generated is None else pick_generated
    r = slice(None) if pick_real is None else pick_real
    return {
        "intensity": float(wasserstein_distance(_sample_pixels(generated.pixels[g], rng),
                                                _sample_pixels(real.pixels[r], rng))),
        "spectrum": float(np.sqrt(np.mean((_radial_log(generated.power[g].mean(0))
                                           - _radial_log(real.power[r].mean(0))) ** 2))),
        "frechet": frechet_distance(generated.features[g], real.features[r]),
    }


def texture_distances(generated: torch.Tensor, real: torch.Tensor, seed: int = 0) -> dict[str, float]:
    """The three distances between two sets of crops ``[N, 1, S, S]`` in -1..1."""
    encoder = RandomFeatureEncoder()
    return summary_distances(CropSummary(generated, encoder), CropSummary(real, encoder), seed=seed)


def flat_baseline(masks: torch.Tensor, statistics: dict, seed: int = 0) -> torch.Tensor:
    """Mask x drawn mean intensity, blurred, plus Gaussian noise of the background's spread
    (:func:`bvdm_data.synth.propagation.paint_flat`, one generator for all cells' brightness)."""
    values = draw_brightness(statistics, [masks.shape[0]], [torch.Generator().manual_seed(seed)])
    return paint_flat(statistics, masks, values, [derive_key(seed, i) for i in range(masks.shape[0])])
