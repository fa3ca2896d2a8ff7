"""A small U-Net with a time embedding, the denoiser of the texture DDPM.

Paper-sized by default (about 0.9 M parameters: 16 base channels, time
embedding 128, instance norm). Instance norm keeps each sample independent of
the others in a batch, so a cell's result does not depend on its batch.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class UNetConfig:
    """Architecture of :class:`UNet`; stored with the weights so a checkpoint names its shape."""

    channels: int = 16
    multipliers: tuple[int, ...] = (1, 2, 4, 4, 4)
    time_dim: int = 128
    in_channels: int = 1

    def to_dict(self) -> dict:
        return {**asdict(self), "multipliers": list(self.multipliers)}

    @classmethod
    def from_dict(cls, d: dict) -> UNetConfig:
        return cls(**{**d, "multipliers": tuple(d["multipliers"])})


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of integer steps ``t`` ``[N]`` -> ``[N, dim]``."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)


class ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, time_dim: int) -> None:
        super().__init__()
        self.norm1 = nn.InstanceNorm2d(c_in, affine=True)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.time = nn.Linear(time_dim, c_out)
        self.norm2 = nn.InstanceNorm2d(c_out, affine=True)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(self.act(self.norm1(x)))
        h = h + self.time(emb)[:, :, None, None]
        h = self.conv2(self.act(self.norm2(h)))
        return h + self.skip(x)


class UNet(nn.Module):
    """Predicts the noise in ``x_t`` given ``t``: ``eps = unet(x_t, t)``.

    Example:
        >>> net = UNet()
        >>> 0.8e6 < sum(p.numel() for p in net.parameters()) < 1.0e6
        True
        >>> net(torch.zeros(2, 1, 64, 64), torch.tensor([0, 999])).shape
        torch.Size([2, 1, 64, 64])
    """

    def __init__(self, config: UNetConfig = UNetConfig()) -> None:
        super().__init__()
        self.config = config
        c, td = config.channels, config.time_dim
        self.time_mlp = nn.Sequential(nn.Linear(td, td), nn.SiLU(), nn.Linear(td, td))
        self.stem = nn.Conv2d(config.in_channels, c, 3, padding=1)
        widths = [c * m for m in config.multipliers]
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        prev = c
        for i, w in enumerate(widths):
            self.down.append(ResBlock(prev, w, td))
            self.downsample.append(nn.Conv2d(w, w, 3, stride=2, padding=1) if i < len(widths) - 1 else nn.Identity())
            prev = w
        self.mid = ResBlock(prev, prev, td)
        self.up = nn.ModuleList()
        for i, w in reversed(list(enumerate(widths))):
            self.up.append(ResBlock(prev + w, w, td))
            prev = w
        self.head = nn.Sequential(nn.InstanceNorm2d(prev, affine=True), nn.SiLU(), nn.Conv2d(prev, config.in_channels, 3, padding=1))

    @property
    def divisor(self) -> int:
        """Input sizes must be multiples of this."""
        return 2 ** (len(self.config.multipliers) - 1)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] % self.divisor or x.shape[-2] % self.divisor:
            raise ValueError(f"UNet input {list(x.shape[-2:])} must be a multiple of {self.divisor}")
        # in the weights' dtype, so that a network cast to bf16 runs without autocast
        emb = self.time_mlp(timestep_embedding(t, self.config.time_dim).to(self.stem.weight.dtype))
        h = self.stem(x)
        skips = []
        for block, down in zip(self.down, self.downsample):
            h = block(h, emb)
            skips.append(h)
            h = down(h)
        h = self.mid(h, emb)
        for block in self.up:
            skip = skips.pop()
            if h.shape[-1] != skip.shape[-1]:
                h = nn.functional.interpolate(h, size=skip.shape[-2:], mode="nearest")
            h = block(torch.cat([h, skip], 1), emb)
        return self.head(h)
