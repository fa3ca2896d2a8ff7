"""The scene part of a bundle: a background learnt from real frames, how cells are pasted onto it, and the
nuclei the annotation leaves out.

Statistics are measured on real frames in the texture model's -1..1 scale,
on pixels at least 5 px from any labelled cell, robustly (median, MAD):
a segmentation misses dim cells, and those are outliers of the background,
not its texture. The level is the median; the slow variation is the spread
of the background alone smoothed at ``SMOOTH_SIGMA`` (normalised convolution
over background pixels, outliers clipped, so cells' light does not leak in);
the pixel noise is the spread of what a 4-px Gaussian high-pass leaves, and its
grain how much neighbouring pixels of that residue agree (:func:`noise_grain`:
HeLa's noise is not white, neighbours along a row agree with a robust lag-1
correlation of 0.64, along a column hardly at all (0.11): the camera's line noise; it is
drawn as white noise blurred by the Gaussian that gives the measured correlations). A dark
background sitting on the camera's floor (a share of pixels exactly at the lowest
value, as in GOWT1, where two thirds of the background reads 0) is shot noise, not a
clipped Gaussian: there the background is measured as photons, a Poisson count of
a slowly varying rate times a step (:func:`photon_background`), and drawn the same way. Cells are pasted with a
soft alpha (their mask, dilated and blurred), so the generated halo around
each nucleus blends into the background without seams; where halos overlap,
textures are averaged by alpha. Real nuclei also glow well past their outline
(out-of-focus light; the ``halo`` of :mod:`bvdm_data.evaluate.frames`, brighter
around brighter cells), which the pasted cells alone do not: :func:`glow_law`
fits it as a share of each cell's light spread by a Gaussian, and
:meth:`SceneModel.add_glow` adds it.
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import asdict, dataclass
from typing import Any

import kornia
import numpy as np
import torch
from scipy import ndimage

from bvdm_data.bundle import Bundle, BundleWriter
from bvdm_data.ctc.clips import to_unit
from bvdm_data.ctc.sequence import CTCSequence
from bvdm_data.diffusion.noise import derive_key, keyed_normal, keyed_uniform, poisson_from_uniform
from bvdm_data.errors import BVDMDataError
from bvdm_data.robust import robust_std

PART = "scene"
PART_VERSION = 1
SMOOTH_SIGMA = 16.0   # px, scale of the slow background variation
HIGHPASS_SIGMA = 4.0  # px, what is finer than this counts as pixel noise
BACKGROUND_MARGIN = 5  # px from any labelled cell
BLOB_SIGMA = 2.0      # px, smoothing before looking for unlabelled objects
BLOB_SIGMAS = 4.0     # an unlabelled object is this many robust spreads of the smoothed background above its level
MIN_BLOB_AREA = 80    # px
PHOTON_MIN_FLOOR = 0.05  # share of background pixels at the floor from which the background is counted as photons
PHOTON_BLOCK = 32        # px, blocks in which a photon rate is measured (its slow variation)
GLOW_SIGMAS = (2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 24.0)  # px, the glow kernels tried
GLOW_BINS = (3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 30, 40)  # px from the nearest cell, where the glow is compared
GRAIN_SIGMAS = np.round(np.arange(0.0, 3.01, 0.1), 2)  # px, the noise blurs tried per axis
GRAIN_MIN = 0.3  # px: a blur this fine or finer is white noise (its lag-1 correlation is under 0.01)


def background_of(labels: np.ndarray) -> np.ndarray:
    """Pixels at least ``BACKGROUND_MARGIN`` px from any label: where the background is measured."""
    return ~ndimage.binary_dilation(labels > 0, iterations=BACKGROUND_MARGIN)


def unlabelled_objects(image: np.ndarray, labels: np.ndarray, background: np.ndarray | None = None
                       ) -> tuple[float, np.ndarray] | None:
    """Bright objects that no label touches: ``(background level, their mean contrast above it)``.

    An object is a connected region of the image smoothed at ``BLOB_SIGMA``
    that lies ``BLOB_SIGMAS`` robust spreads above the smoothed background's
    median (pixels ``BACKGROUND_MARGIN`` px from any label; on a photon
    background that is its mean light, not the camera's floor) and covers ``MIN_BLOB_AREA`` px
    without touching a label: a nucleus the annotation left out (dim, out of
    focus, or just missed). Its contrast is the mean over its half-maximum
    region. ``None`` when the frame has too little background. Pass
    ``background`` (:func:`background_of` ``labels``) when it is at hand.

    Example:
        >>> img = np.zeros((64, 64)); img[10:25, 10:25] = 1.0; img[40:55, 40:55] = 0.5
        >>> lab = np.zeros((64, 64), np.int32); lab[10:25, 10:25] = 1
        >>> level, contrast = unlabelled_objects(img + 0.01 * np.random.default_rng(0).standard_normal(img.shape), lab)
        >>> len(contrast), round(float(contrast[0]), 1)
        (1, 0.5)
    """
    background = background_of(labels) if background is None else background
    if background.sum() < 100:
        return None
    smooth = ndimage.gaussian_filter(image, BLOB_SIGMA)
    # The level of the smoothed background, the image the threshold is applied to: on a photon background the
    # raw median is the camera's floor (most pixels read 0), well under the mean light of the background.
    level = float(np.median(smooth[background]))
    threshold = level + BLOB_SIGMAS * max(robust_std(smooth[background]), 1e-6)
    blobs, n = ndimage.label(smooth > threshold)
    if n == 0:
        return level, np.zeros(0)
    sizes = np.bincount(blobs.ravel(), minlength=n + 1)
    hit = np.bincount(blobs.ravel(), weights=(labels > 0).ravel(), minlength=n + 1)
    ids = np.flatnonzero((sizes >= MIN_BLOB_AREA) & (hit == 0))
    ids = ids[ids > 0]
    if not ids.size:
        return level, np.zeros(0)
    # Mean over each object's half-maximum region, the part an annotator would outline, not its faint skirt.
    peak = np.zeros(n + 1)
    peak[ids] = np.asarray(ndimage.maximum(smooth, blobs, ids))
    core = np.where(smooth >= level + 0.5 * (peak[blobs] - level), blobs, 0)
    return level, np.asarray(ndimage.mean(image, core, ids)) - level


def glow_profiles(image: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """How far a frame's cells glow: ``(observed, modelled)`` medians by distance to the nearest cell.

    ``observed[i]`` is the median of the frame over the far background (40 px
    or more from any cell) in the i-th band of :data:`GLOW_BINS`;
    ``modelled[j, i]`` the same median of the cells' light (frame minus far
    background, inside the labels) blurred by ``GLOW_SIGMAS[j]``. ``None``
    when the frame has too little far background.
    """
    dist = ndimage.distance_transform_edt(labels == 0)
    far = dist >= GLOW_BINS[-1]
    if far.sum() < 100 or not (labels > 0).any():
        return None
    level = float(np.median(image[far]))
    light = np.where(labels > 0, np.maximum(image - level, 0.0), 0.0)
    bands = [(dist >= a) & (dist < b) for a, b in zip(GLOW_BINS[:-1], GLOW_BINS[1:])]
    observed = np.array([np.median(image[b]) - level for b in bands])
    modelled = np.array([[np.median(g[b]) for b in bands]
                         for g in (ndimage.gaussian_filter(light, sigma) for sigma in GLOW_SIGMAS)])
    return observed, modelled


def glow_law(profiles: list[tuple[np.ndarray, np.ndarray]]) -> tuple[float, float]:
    """``(weight, sigma)``: the share of each cell's light and the Gaussian that best explain ``profiles``.

    Least squares over every frame's bands for each kernel of
    :data:`GLOW_SIGMAS`, the best kernel kept; ``(0, 0)`` when nothing glows.

    Example:
        >>> labels = np.zeros((160, 160), np.int32); labels[70:90, 70:90] = 1
        >>> cells = np.where(labels > 0, 1.0, 0.0)
        >>> image = -1 + cells + 0.1 * ndimage.gaussian_filter(cells, 8.0)
        >>> weight, sigma = glow_law([glow_profiles(image, labels)])
        >>> round(weight, 2), sigma
        (0.1, 8.0)
    """
    if not profiles:
        return 0.0, 0.0
    observed = np.concatenate([o for o, _ in profiles])
    modelled = np.concatenate([m for _, m in profiles], axis=1)
    weights = (modelled @ observed) / np.maximum((modelled ** 2).sum(1), 1e-12)
    errors = ((observed[None] - weights[:, None] * modelled) ** 2).sum(1)
    best = int(np.argmin(errors))
    if weights[best] <= 0:
        return 0.0, 0.0
    return float(weights[best]), GLOW_SIGMAS[best]


def photon_background(image: np.ndarray, background: np.ndarray) -> tuple[float, float, list[float]] | None:
    """A dark background as photons: ``(floor, counts step, rates of PHOTON_BLOCK-px blocks)``, or ``None``.

    Where at least :data:`PHOTON_MIN_FLOOR` of the background pixels sit at
    the frame's lowest value, each whole-background block's photon rate is
    ``-ln(share at the floor)`` (a Poisson count is 0 with probability
    ``exp(-rate)``; robust to the camera's gain), and the step one photon adds
    is the block's mean above the floor over its rate (median over blocks).
    A background whose values rise continuously from the floor (a clipped
    Gaussian) is not photons: ``None``.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> img = -1 + 0.02 * rng.poisson(0.5, (256, 256))
        >>> floor, step, rates = photon_background(img, np.ones_like(img, bool))
        >>> floor, round(step, 3), round(float(np.median(rates)), 1)
        (-1.0, 0.02, 0.5)
        >>> photon_background(np.maximum(rng.normal(-0.9, 0.1, (256, 256)), -1), np.ones((256, 256), bool)) is None
        True
    """
    floor = float(image.min())
    at_floor = image <= floor + 1e-9
    if at_floor[background].mean() < PHOTON_MIN_FLOOR:
        return None
    b = PHOTON_BLOCK
    h, w = (s // b * b for s in image.shape)
    blocks = lambda a: a[:h, :w].reshape(h // b, b, w // b, b).swapaxes(1, 2).reshape(-1, b * b)  # noqa: E731
    whole = blocks(background).all(1)
    zeros, above = blocks(at_floor)[whole].mean(1), (blocks(image)[whole] - floor).mean(1)
    ok = (zeros > 0) & (zeros < 1)
    if ok.sum() < 4:
        return None
    rates = -np.log(zeros[ok])
    step = float(np.median(above[ok] / rates))
    # Photons come in steps: the first value above the floor is about one. A Gaussian clipped at the floor
    # (by the camera or by an intensity range cut at a low percentile) has values just above it.
    if image[background & ~at_floor].min() - floor < 0.5 * step:
        return None
    return floor, step, rates.tolist()


def _lag1(kernel: np.ndarray) -> tuple[float, float]:
    """Lag-1 correlation ``(along columns, along rows)`` of white noise filtered by ``kernel``."""
    energy = float((kernel ** 2).sum())
    return (float((kernel[1:] * kernel[:-1]).sum()) / energy, float((kernel[:, 1:] * kernel[:, :-1]).sum()) / energy)


def _residue_kernel(sigma: tuple[float, float], size: int = 97) -> np.ndarray:
    """What the pixel-noise measure sees of white noise blurred by ``sigma`` (y, x): the blur minus its
    ``HIGHPASS_SIGMA`` smoothing, as a kernel."""
    delta = np.zeros((size, size))
    delta[size // 2, size // 2] = 1.0
    blurred = ndimage.gaussian_filter(delta, sigma) if max(sigma) > 0 else delta
    return blurred - ndimage.gaussian_filter(blurred, HIGHPASS_SIGMA)


def residue_lag1(residue: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """Robust lag-1 correlation ``(vertical, horizontal)`` of ``residue`` over pairs of pixels both in ``mask``.

    From the robust spreads of sums and differences of neighbours, ``(s+^2 - s-^2) / (s+^2 + s-^2)``: dim
    nuclei and specks the annotation leaves in the background are smooth and bright, and would make a plain
    correlation read their shape instead of the noise (HeLa: 0.79 / 0.90 plain, 0.11 / 0.64 robust; benchmarks/label_law.py).

    Example:
        >>> rng = np.random.default_rng(0)
        >>> white = rng.standard_normal((200, 200))
        >>> [round(v, 1) for v in residue_lag1(white + np.roll(white, 1, axis=1), np.ones((200, 200), bool))]
        [0.0, 0.5]
    """
    out = []
    for a, b, m in ((residue[1:], residue[:-1], mask[1:] & mask[:-1]),
                    (residue[:, 1:], residue[:, :-1], mask[:, 1:] & mask[:, :-1])):
        if m.sum() < 100:
            out.append(0.0)
            continue
        plus, minus = robust_std((a + b)[m]) ** 2, robust_std((a - b)[m]) ** 2
        out.append(float((plus - minus) / max(plus + minus, 1e-30)))
    return out[0], out[1]


def noise_grain(lag1: tuple[float, float]) -> tuple[float, float]:
    """The Gaussian blur ``(sigma_y, sigma_x)`` px of white noise whose high-pass residue has the lag-1
    correlations ``lag1`` (vertical, horizontal), as :meth:`SceneModel.fit` measures them; an axis whose
    blur would be :data:`GRAIN_MIN` px or less is white (0).

    Example:
        >>> noise_grain((0.0, 0.0))
        (0.0, 0.0)
        >>> sy, sx = noise_grain(_lag1(_residue_kernel((1.0, 1.6))))
        >>> round(sy, 1), round(sx, 1)
        (1.0, 1.6)
    """
    grid = [(sy, sx) for sy in GRAIN_SIGMAS for sx in GRAIN_SIGMAS]
    lags = np.array([_lag1(_residue_kernel(s)) for s in grid])
    best = grid[int(np.argmin(((lags - np.asarray(lag1)) ** 2).sum(1)))]
    return tuple(float(s) if s > GRAIN_MIN else 0.0 for s in best)


@functools.lru_cache(maxsize=16)
def residue_gain(sigma: tuple[float, float]) -> float:
    """Spread of the pixel-noise measure's residue of white noise of unit spread blurred by ``sigma`` (cached:
    every background drawn asks for it)."""
    return float(np.sqrt((_residue_kernel(sigma) ** 2).sum()))


@dataclass(frozen=True)
class SceneModel:
    """Background level, slow variation and pixel noise (all -1..1 scale), and the alpha softness."""

    background_mean: float
    background_smooth_std: float
    noise_std: float
    alpha_dilation: int = 2
    alpha_sigma: float = 1.0
    # The annotation convention: nuclei the real labels leave out, per labelled cell, and the quantiles
    # (0, 5, ..., 100 %) of their contrast above the background. Painted, never labelled.
    unlabelled_rate: float = 0.0
    unlabelled_contrast: tuple[float, ...] = ()
    # A dark background counted as photons (photon_step > 0): floor + step x Poisson(rate), the rate log-normal
    # over the frame (median, spread of its log over PHOTON_BLOCK-px blocks); 0: the Gaussian model above.
    photon_step: float = 0.0
    photon_rate: float = 0.0
    photon_rate_log_std: float = 0.0
    # Out-of-focus light: this share of each cell's light, spread by a Gaussian of glow_sigma px (glow_law).
    glow_weight: float = 0.0
    glow_sigma: float = 0.0
    # The noise's grain: white noise blurred by a Gaussian of (sigma_y, sigma_x) px (noise_grain), scaled so that
    # the pixel-noise measure reads noise_std; (0, 0): white noise of spread noise_std.
    noise_sigma: tuple[float, float] = (0.0, 0.0)

    @classmethod
    def fit(cls, seq: CTCSequence, intensity_range: tuple[float, float], frames: list[int] | None = None) -> SceneModel:
        """Measure the background of labelled real frames (pixels 5 px or more away from any cell)."""
        if seq.labels is None:
            raise BVDMDataError(f"{seq.images.folder}: the scene model needs labels to find the background")
        level, smooth, noise, lags, contrast, labelled = [], [], [], [], [], 0
        photons: list[tuple[float, float, list[float]] | None] = []
        glows: list[tuple[np.ndarray, np.ndarray]] = []
        last_outlined = getattr(seq.labels, "last_outlined", None)  # only OutlinedLabels leave cells unoutlined
        for f in frames if frames is not None else seq.labels.frames:
            x = to_unit(seq.images.read(f), intensity_range, np.float64) * 2 - 1
            labels = seq.labels.read(f)
            background = background_of(labels)
            if background.sum() < 100:
                continue
            values = x[background]
            median = float(np.median(values))
            clipped = np.where(background, np.minimum(x, median + 3 * robust_std(values)), 0.0)
            weight = ndimage.gaussian_filter(background.astype(np.float64), SMOOTH_SIGMA)
            field = ndimage.gaussian_filter(clipped, SMOOTH_SIGMA) / np.maximum(weight, 1e-3)
            level.append(median)
            smooth.append(robust_std(field[background & (weight > 0.3)]))
            residue = x - ndimage.gaussian_filter(x, HIGHPASS_SIGMA)
            noise.append(robust_std(residue[background]))
            lags.append(residue_lag1(residue, background))
            photons.append(photon_background(x, background))
            # Glow is read off the light just outside each label, so only where every cell is outlined: a cell
            # known by a grown marker only (OutlinedLabels) leaks its own edge into the bands and reads as glow.
            whole = last_outlined is None or last_outlined(f) >= int(labels.max())
            glow = glow_profiles(x, labels) if whole else None
            if glow is not None:
                glows.append(glow)
            found = unlabelled_objects(x, labels, background)
            if found is not None:
                contrast.append(found[1])
                labelled += len(np.unique(labels)) - 1
        if not level:
            raise BVDMDataError(f"{seq.labels.folder}: no frame with enough background to measure")
        contrast = np.concatenate(contrast) if contrast else np.zeros(0)
        rate = contrast.size / max(labelled, 1)
        quantiles = tuple(float(q) for q in np.percentile(contrast, np.arange(0, 101, 5))) if contrast.size else ()
        photon = {}
        if all(p is not None for p in photons):  # every frame dark-floored: photons
            rates = np.log(np.concatenate([p[2] for p in photons]))
            level = [p[0] for p in photons]
            photon = {"photon_step": float(np.median([p[1] for p in photons])),
                      "photon_rate": float(np.exp(np.median(rates))), "photon_rate_log_std": float(robust_std(rates))}
        # Medians of photon counts are whole photons (GOWT1's bands read 0 or 1): no glow law is read off them.
        weight, sigma = glow_law(glows) if not photon else (0.0, 0.0)
        # Photon counts are drawn per pixel (their grain is the rate's, not the noise's).
        grain = noise_grain(tuple(np.median(np.asarray(lags), axis=0))) if not photon else (0.0, 0.0)
        return cls(float(np.mean(level)), float(np.mean(smooth)), float(np.mean(noise)),
                   unlabelled_rate=float(rate), unlabelled_contrast=quantiles, **photon,
                   glow_weight=weight, glow_sigma=sigma, noise_sigma=grain)

    def save(self, bundle_root: str | os.PathLike, provenance: dict[str, Any] | None = None) -> None:
        BundleWriter(bundle_root).write_part(PART, PART_VERSION, json_files={"scene.json": asdict(self)},
                                             provenance=provenance)

    @classmethod
    def load(cls, bundle: Bundle | str) -> SceneModel:
        bundle = bundle if isinstance(bundle, Bundle) else Bundle.load(bundle)
        bundle.part(PART, version=PART_VERSION)
        values = bundle.read_json(PART, "scene.json")
        values["unlabelled_contrast"] = tuple(values.get("unlabelled_contrast", ()))
        values["noise_sigma"] = tuple(values.get("noise_sigma", (0.0, 0.0)))  # scenes fitted before: white
        return cls(**values)

    def sample_unlabelled_contrast(self, count: int, rng: np.random.Generator) -> np.ndarray:
        """Contrasts above the background (-1..1 scale) of unlabelled objects, from the stored quantiles."""
        q = np.asarray(self.unlabelled_contrast, dtype=float)
        if q.size < 2:
            raise BVDMDataError("this scene model has no unlabelled-object law (refit the scene)")
        return np.interp(rng.random(count) * (q.size - 1), np.arange(q.size), q)

    def background(self, num_frames: int, size: tuple[int, int], key: int, device: torch.device) -> torch.Tensor:
        """``[T, 1, H, W]`` backgrounds on ``device``: level + a slow field fixed over the clip + fresh pixel
        noise of the measured grain (or, for a photon background, floor + step x Poisson counts of a slowly
        varying rate), all drawn from ``key`` (:mod:`bvdm_data.diffusion.noise`)."""
        h, w = size
        keys = torch.tensor([derive_key(key, t) for t in range(num_frames + 1)], device=device)
        field = keyed_normal(keys[:1], 0, (1, h, w))
        k = 2 * int(3 * SMOOTH_SIGMA) + 1
        field = kornia.filters.gaussian_blur2d(field, (k, k), (SMOOTH_SIGMA, SMOOTH_SIGMA), border_type="reflect")
        field = field / field.std().clamp_min(1e-6)
        if self.photon_step > 0:
            rate = self.photon_rate * torch.exp(self.photon_rate_log_std * field)
            u = keyed_uniform(keys[1:], 0, h * w).reshape(num_frames, 1, h, w)
            return self.background_mean + self.photon_step * poisson_from_uniform(u, rate.expand_as(u))
        noise = keyed_normal(keys[1:], 0, (1, h, w))
        if max(self.noise_sigma) > 0:
            sy, sx = self.noise_sigma
            k = (2 * math.ceil(3 * sy) + 1, 2 * math.ceil(3 * sx) + 1)
            noise = kornia.filters.gaussian_blur2d(noise, k, (sy, sx), border_type="reflect")
            noise = noise * (self.noise_std / residue_gain(tuple(self.noise_sigma)))
        else:
            noise = noise * self.noise_std
        return self.background_mean + field * self.background_smooth_std + noise

    def add_glow(self, video: torch.Tensor, background: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """``video`` ``[T, 1, H, W]`` with its cells' glow added: ``glow_weight`` x their light above
        ``background`` (inside ``masks`` ``[T, H, W]``, as :func:`glow_profiles` measures it) blurred by
        ``glow_sigma``. Refused for a scene fitted without a glow law."""
        if self.glow_weight <= 0:
            raise BVDMDataError("this scene model has no glow law (refit it: bvdm-data fit-statistics)")
        light = ((video - background).clamp_min(0) * (masks[:, None] > 0)).float()
        k = 2 * int(3 * self.glow_sigma) + 1
        glow = kornia.filters.gaussian_blur2d(light, (k, k), (self.glow_sigma, self.glow_sigma), border_type="constant")
        return video + self.glow_weight * glow.to(video.dtype)

    def alpha(self, masks: torch.Tensor, cut: torch.Tensor | None = None) -> torch.Tensor:
        """Soft paste weights ``[N, 1, S, S]`` from cell masks ``[N, S, S]``.

        ``cut`` ``[N, S, S]``: the pixels of the neighbours each cell is
        pressed against; its weight gives way to theirs across the contact
        line, softened by the same blur, so that two pressed cells' weights
        add up to about 1 there (no seam, no bright ridge).
        """
        a = self._soften(masks[:, None].float(), self.alpha_dilation)
        a = torch.maximum(a, masks[:, None].float())
        return a if cut is None else a * (1 - self._soften(cut[:, None].float(), 0))

    def _soften(self, a: torch.Tensor, dilation: int) -> torch.Tensor:
        if dilation > 0:
            a = torch.nn.functional.max_pool2d(a, 2 * dilation + 1, stride=1, padding=dilation)
        if self.alpha_sigma > 0:
            k = 2 * int(3 * self.alpha_sigma) + 1
            a = kornia.filters.gaussian_blur2d(a, (k, k), (self.alpha_sigma, self.alpha_sigma))
        return a
