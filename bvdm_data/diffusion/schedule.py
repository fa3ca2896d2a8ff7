"""The diffusion noise schedule (cosine, Nichol & Dhariwal 2021) and its closed forms."""

from __future__ import annotations

import math

import torch


class CosineSchedule:
    """Cosine schedule over ``T`` steps, epsilon parameterisation.

    ``alpha_bar[t]`` is the signal fraction after step ``t`` (``t = 0 .. T-1``),
    falling from almost 1 to almost 0.

    Example:
        >>> s = CosineSchedule(1000)
        >>> bool(s.alpha_bar[0] > 0.999), bool(s.alpha_bar[-1] < 1e-3)
        (True, True)
    """

    def __init__(self, num_steps: int = 1000, offset: float = 0.008, max_beta: float = 0.999) -> None:
        if num_steps < 2:
            raise ValueError(f"num_steps must be at least 2, got {num_steps}")
        self.num_steps = num_steps
        f = lambda t: math.cos((t / num_steps + offset) / (1 + offset) * math.pi / 2) ** 2  # noqa: E731
        betas = [min(1 - f(i + 1) / f(i), max_beta) for i in range(num_steps)]
        self.betas = torch.tensor(betas, dtype=torch.float64)
        self.alpha_bar = torch.cumprod(1 - self.betas, 0)
        self.alpha_bar_prev = torch.cat([torch.ones(1, dtype=torch.float64), self.alpha_bar[:-1]])
        self._device_copies: dict[tuple[int, str], torch.Tensor] = {}

    def _on(self, values: torch.Tensor, device: torch.device) -> torch.Tensor:
        """``values`` on ``device``, copied once: a host-to-device copy per step would stall a GPU every step."""
        key = (id(values), str(device))
        if key not in self._device_copies:
            self._device_copies[key] = values.to(device)
        return self._device_copies[key]

    def _at(self, values: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return self._on(values, like.device)[t].to(like.dtype).view(-1, *([1] * (like.ndim - 1)))

    def add_noise(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Sample ``q(x_t | x_0)``: ``sqrt(ab) x0 + sqrt(1 - ab) noise``."""
        ab = self._at(self.alpha_bar, t, x0)
        return ab.sqrt() * x0 + (1 - ab).sqrt() * noise

    def predict_x0(self, xt: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        ab = self._at(self.alpha_bar, t, xt)
        return (xt - (1 - ab).sqrt() * eps) / ab.sqrt()

    def ancestral_step(self, xt: torch.Tensor, t: torch.Tensor, eps: torch.Tensor, noise: torch.Tensor,
                       clip: float | None = 1.0) -> torch.Tensor:
        """One DDPM step ``x_t -> x_{t-1}`` (posterior mean, posterior variance); no noise at t = 0."""
        ab = self._at(self.alpha_bar, t, xt)
        ab_prev = self._at(self.alpha_bar_prev, t, xt)
        beta = self._at(self.betas, t, xt)
        x0 = self.predict_x0(xt, t, eps)
        if clip is not None:
            x0 = x0.clamp(-clip, clip)
        mean = (ab_prev.sqrt() * beta / (1 - ab)) * x0 + ((1 - beta).sqrt() * (1 - ab_prev) / (1 - ab)) * xt
        var = beta * (1 - ab_prev) / (1 - ab)
        nonzero = (t > 0).to(xt.dtype).view_as(var)
        return mean + nonzero * var.clamp_min(1e-20).sqrt() * noise

    def ddim_step(self, xt: torch.Tensor, t: torch.Tensor, t_prev: torch.Tensor, eps: torch.Tensor,
                  clip: float | None = 1.0) -> torch.Tensor:
        """Deterministic DDIM step ``x_t -> x_{t_prev}`` (eta = 0); ``t_prev = -1`` returns x0."""
        x0 = self.predict_x0(xt, t, eps)
        if clip is not None:
            x0 = x0.clamp(-clip, clip)
        ab_prev = torch.where(t_prev >= 0, self._on(self.alpha_bar, xt.device)[t_prev.clamp_min(0)], 1.0)
        ab_prev = ab_prev.to(xt.dtype).view(-1, *([1] * (xt.ndim - 1)))
        return ab_prev.sqrt() * x0 + (1 - ab_prev).sqrt() * eps
