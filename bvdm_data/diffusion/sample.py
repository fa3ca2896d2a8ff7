"""Batched sampling: SDEdit from flat cell images, DDPM (ancestral) or DDIM with a stride.

Every cell in flight goes through one network call per step. Each image
carries a key and its noise at every step is a function of that key
(:mod:`bvdm_data.diffusion.noise`), drawn on the device: an image comes out
the same whatever else shares the batch, however the work is chunked.

Steps are counted from 1 as in the paper: ``t_s = 200`` noises to the 200th
step of the schedule and denoises through 200 steps (DDPM) or
``ceil(200 / stride)`` steps (DDIM).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import kornia
import torch

from bvdm_data.diffusion.edges import mean_inside, profile_cells
from bvdm_data.diffusion.noise import keyed_normal
from bvdm_data.diffusion.schedule import CosineSchedule
from bvdm_data.diffusion.unet import UNet
from bvdm_data.errors import BVDMDataError

SAMPLERS = ("ddpm", "ddim")
# DDIM every 4th step is the library's default: a quarter of the network calls, and clips that mixed better with
# real frames downstream than full DDPM's (benchmarks/RESULTS.md section 1, "The library's default sampler").
DEFAULT_SAMPLER = "ddim"
DDIM_STRIDE = 4


def resolve_stride(sampler: str, stride: int | None = None) -> int:
    """``stride``, or when it is None the sampler's own: ``DDIM_STRIDE`` for DDIM; DDPM takes every step."""
    if stride is not None:
        return stride
    return DDIM_STRIDE if sampler == "ddim" else 1


def sampler_label(sampler: str, stride: int) -> str:
    """How tables name a painting: ``"DDPM"`` or ``"DDIM /4"``."""
    return "DDPM" if sampler == "ddpm" else f"DDIM /{stride}"


COMPILE_BUCKET_MIN = 8    # compiled calls see no batch under this
COMPILE_BUCKETS_PER_OCTAVE = 4  # and batches rounded up to one of 4 sizes per doubling: few CUDA graphs


def padded_batch(n: int) -> int:
    """The batch a compiled denoiser runs ``n`` images as: at least 8, else rounded up to a quarter-octave step.

    Each size is one CUDA graph; four per doubling keep them few while the
    padding wastes at most a quarter of the work (a power of two would waste
    up to half: 4 097 cells would run as 8 192).

    Example:
        >>> [padded_batch(n) for n in (1, 8, 9, 100, 4096, 4097)]
        [8, 8, 10, 112, 4096, 5120]
    """
    if n <= COMPILE_BUCKET_MIN:
        return COMPILE_BUCKET_MIN
    step = max(1, (1 << ((n - 1).bit_length() - 1)) // COMPILE_BUCKETS_PER_OCTAVE)
    return -(-n // step) * step


@dataclass
class Denoiser:
    """A trained noise predictor with its schedule, on a device, optionally in bf16 and compiled.

    The network is bound by memory traffic, not arithmetic (0.37 GFLOP but
    ~44 MB of fp32 activations per 64^2 image), so what pays is moving fewer
    bytes (benchmarks/results/denoiser_variants_cuda.json, H200, 2 048 images
    per call, vs fp32: bf16 autocast 1.11x, whole network in bf16 1.26x,
    compiled bf16 channels-last 4.04x). ``bf16=True`` runs a bf16 copy of the
    network (weights and activations; the norms' statistics still accumulate
    in fp32 inside their kernels): images move by float rounding, like any
    bf16 path (relative error of the predicted noise 4e-3).

    ``compile=True`` runs the network through :func:`torch.compile` (on CUDA
    with CUDA graphs, ``mode="reduce-overhead"``, and channels-last memory:
    fusion cuts the norms' and activations' round trips). The batch dimension
    is compiled as dynamic after its second size (two compilations in all),
    and each call's batch is padded to :func:`padded_batch` so that few CUDA
    graphs are recorded; rows do not interact (instance norm), so padding
    changes no image. Compiled kernels round differently from eager ones.
    """

    model: UNet
    schedule: CosineSchedule
    device: torch.device = torch.device("cpu")
    bf16: bool = False
    compile: bool = False
    compile_backend: str = "inductor"

    def __post_init__(self) -> None:
        self.device = torch.device(self.device)
        self.model = self.model.to(self.device).eval()
        if self.bf16:  # a copy: the caller's network (perhaps still training) keeps its fp32 weights
            self.model = copy.deepcopy(self.model).to(torch.bfloat16)
        self._compiled = None
        if self.compile:
            cuda = self.device.type == "cuda" and self.compile_backend == "inductor"
            if cuda:
                self.model = self.model.to(memory_format=torch.channels_last)
            self._compiled = torch.compile(self.model, backend=self.compile_backend,
                                           mode="reduce-overhead" if cuda else None)

    @torch.no_grad()
    def eps(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The predicted noise of images ``x`` ``[N, 1, S, S]`` at steps ``t`` ``[N]``, as float32."""
        x = x.to(torch.bfloat16 if self.bf16 else torch.float32)
        n = x.shape[0]
        if self._compiled is None or n == 0:
            return self.model(x, t).float()
        size = padded_batch(n)
        if size > n:
            x = torch.cat([x, x[-1:].expand(size - n, *x.shape[1:])])
            t = torch.cat([t, t[-1:].expand(size - n)])
        if self.device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        # clone: with CUDA graphs the output buffer is reused by the next call
        return self._compiled(x, t)[:n].float().clone()


def image_keys(keys: Sequence[int] | torch.Tensor, n: int, device: torch.device) -> torch.Tensor:
    """``keys`` as an int64 tensor of ``n`` keys on ``device``, or a one-line error."""
    keys = torch.as_tensor(keys, dtype=torch.int64).to(device)
    if keys.shape != (n,):
        raise BVDMDataError(f"{n} images need {n} noise keys, got {list(keys.shape)}")
    return keys


def flat_cells(masks: torch.Tensor, cell_value: torch.Tensor | float, background: float,
               blur_sigma: float = 1.0, edge_profile: Sequence[float] | Mapping[str, list] | None = None,
               edge_shift: float = 0.0) -> torch.Tensor:
    """SDEdit start images: each mask ``[N, S, S]`` filled with a constant, edges smoothed, in -1..1.

    With ``edge_profile`` (contrast per ring around the outline, measured from
    real cells by :func:`~bvdm_data.diffusion.edges.measure_edge_profile`, or
    per brightness by :func:`~bvdm_data.diffusion.edges.measure_edge_profiles`)
    the edge follows the real one instead of a ``blur_sigma`` blur, and the
    mean inside each mask is ``cell_value``; ``edge_shift`` (px) moves that
    edge outward relative to the mask (:func:`~bvdm_data.diffusion.edges.shift_profile`).

    Example:
        >>> m = torch.zeros(1, 16, 16, dtype=torch.bool); m[0, 4:12, 4:12] = True
        >>> img = flat_cells(m, 0.2, -0.9)
        >>> img.shape, round(float(img[0, 0, 8, 8]), 3), round(float(img[0, 0, 0, 0]), 3)
        (torch.Size([1, 1, 16, 16]), 0.2, -0.9)
    """
    if masks.ndim != 3:
        raise BVDMDataError(f"masks must be [N, S, S], got {list(masks.shape)}")
    value = torch.as_tensor(cell_value, dtype=torch.float32, device=masks.device).reshape(-1, 1, 1, 1)
    if edge_profile is not None:
        return profile_cells(masks, value.expand(len(masks), 1, 1, 1), background, edge_profile, edge_shift)
    inside = masks[:, None].float()
    image = background + (value - background) * inside
    if blur_sigma > 0:
        k = 2 * int(3 * blur_sigma) + 1
        image = kornia.filters.gaussian_blur2d(image, (k, k), (blur_sigma, blur_sigma), border_type="replicate")
    return image


def calibrate_brightness(images: torch.Tensor, masks: torch.Tensor, values: torch.Tensor, background: float,
                         max_gain: float = 2.0) -> torch.Tensor:
    """Scale each painted cell about ``background`` so that its mean inside the mask is its drawn ``value``.

    SDEdit keeps the drawn brightness only approximately (on HeLa it came out
    0.04 darker on average); the texture model should add texture, not move
    the brightness law that was fitted to real cells. The gain is bounded by
    ``max_gain`` either way so that an almost empty painting is not blown up.

    Example:
        >>> m = torch.zeros(1, 8, 8, dtype=torch.bool); m[0, 2:6, 2:6] = True
        >>> img = flat_cells(m, 0.0, -1.0, blur_sigma=0)
        >>> out = calibrate_brightness(img, m, torch.tensor([0.5]), -1.0)
        >>> round(float(out[0, 0][m[0]].mean()), 3), float(out[0, 0, 0, 0])
        (0.5, -1.0)
    """
    mean = mean_inside(images, masks)
    values = values.to(images.device, images.dtype)
    gain = ((values - background) / (mean - background).clamp_min(1e-3)).clamp(1 / max_gain, max_gain)
    return (background + (images - background) * gain.view(-1, 1, 1, 1)).clamp(-1, 1)


def _check(start: torch.Tensor, t_start: int, schedule: CosineSchedule, sampler: str, stride: int) -> None:
    if start.ndim != 4 or start.shape[1] != 1:
        raise BVDMDataError(f"images must be [N, 1, S, S], got {list(start.shape)}")
    if not 0 <= t_start <= schedule.num_steps:
        raise BVDMDataError(f"t must lie in 0..{schedule.num_steps}, got {t_start}")
    if sampler not in SAMPLERS:
        raise BVDMDataError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
    check_stride(sampler, stride)


def check_stride(sampler: str, stride: int) -> None:
    """Fail on a stride the sampler cannot take (DDPM is ancestral: it takes every step)."""
    if stride < 1:
        raise BVDMDataError(f"stride must be at least 1, got {stride}")
    if sampler == "ddpm" and stride != 1:
        raise BVDMDataError(f"stride={stride} needs sampler='ddim': DDPM takes every step (stride 1)")


def sdedit(denoiser: Denoiser, start: torch.Tensor, t_start: int, keys: Sequence[int] | torch.Tensor,
           sampler: str = "ddpm", stride: int = 1) -> torch.Tensor:
    """Noise ``start`` (``[N, 1, S, S]``, -1..1) to step ``t_start`` and denoise it back.

    ``keys`` (``N`` integers, :func:`~bvdm_data.diffusion.noise.derive_key`)
    fix each image's noise: counter 0 for the start noise, ``i + 1`` for the
    step out of ``i``. ``sampler="ddpm"`` takes every step with fresh noise;
    ``"ddim"`` takes every ``stride``-th step deterministically.
    ``t_start = 0`` returns ``start`` unchanged.
    """
    schedule = denoiser.schedule
    _check(start, t_start, schedule, sampler, stride)
    device = denoiser.device
    keys = image_keys(keys, start.shape[0], device)
    x = start.to(device, torch.float32)
    if t_start == 0 or x.shape[0] == 0:
        return x
    shape = tuple(x.shape[1:])
    n = x.shape[0]
    index = torch.full((n,), t_start - 1, dtype=torch.long, device=device)
    x = schedule.add_noise(x, index, keyed_normal(keys, 0, shape))
    if sampler == "ddpm":
        for i in range(t_start - 1, -1, -1):
            t = torch.full((n,), i, dtype=torch.long, device=device)
            noise = keyed_normal(keys, i + 1, shape) if i > 0 else torch.zeros_like(x)
            x = schedule.ancestral_step(x, t, denoiser.eps(x, t), noise)
    else:
        steps = list(range(t_start - 1, -1, -stride))
        for i, j in zip(steps, steps[1:] + [-1]):
            t = torch.full((n,), i, dtype=torch.long, device=device)
            x = schedule.ddim_step(x, t, torch.full_like(t, j), denoiser.eps(x, t))
    return x.clamp(-1, 1)


def refine(denoiser: Denoiser, image: torch.Tensor, t: int, keys: Sequence[int] | torch.Tensor,
           sampler: str = "ddpm", stride: int = 1) -> torch.Tensor:
    """Lightly re-noise (to step ``t``, e.g. ``t_f = 10``) and denoise: restores texture after warping."""
    return sdedit(denoiser, image, t, keys, sampler, stride)
