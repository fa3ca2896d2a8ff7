"""A VoxelMorph-style 2-D registration U-Net: (moving mask, fixed mask) -> displacement field."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from bvdm_data.flow.warp import integrate_velocity


@dataclass(frozen=True)
class FlowConfig:
    """Architecture of :class:`FlowNet`, stored with its weights."""

    channels: tuple[int, ...] = (16, 32, 32, 32)
    diffeomorphic: bool = False
    integration_steps: int = 7

    def to_dict(self) -> dict:
        return {**asdict(self), "channels": list(self.channels)}

    @classmethod
    def from_dict(cls, d: dict) -> FlowConfig:
        return cls(**{**d, "channels": tuple(d["channels"])})


def _conv(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1), nn.LeakyReLU(0.2))


class FlowNet(nn.Module):
    """Predicts the flow that warps ``moving`` onto ``fixed`` (both ``[N, 1, S, S]``).

    The last layer starts near zero (as in VoxelMorph), so an untrained net is
    close to the identity. With ``diffeomorphic=True`` the output is a velocity
    field integrated by scaling and squaring.

    Example:
        >>> net = FlowNet()
        >>> net(torch.zeros(2, 1, 64, 64), torch.zeros(2, 1, 64, 64)).shape
        torch.Size([2, 2, 64, 64])
    """

    def __init__(self, config: FlowConfig = FlowConfig()) -> None:
        super().__init__()
        self.config = config
        chans = config.channels
        self.encoder = nn.ModuleList()
        prev = 2
        for i, c in enumerate(chans):
            self.encoder.append(_conv(prev, c, stride=1 if i == 0 else 2))
            prev = c
        self.decoder = nn.ModuleList()
        for c in reversed(chans[:-1]):
            self.decoder.append(_conv(prev + c, c))
            prev = c
        self.head = nn.Conv2d(prev, 2, 3, padding=1)
        nn.init.normal_(self.head.weight, std=1e-5)
        nn.init.zeros_(self.head.bias)

    @property
    def divisor(self) -> int:
        return 2 ** (len(self.config.channels) - 1)

    def forward(self, moving: torch.Tensor, fixed: torch.Tensor) -> torch.Tensor:
        if moving.shape != fixed.shape or moving.shape[-1] % self.divisor or moving.shape[-2] % self.divisor:
            raise ValueError(f"moving {list(moving.shape)} and fixed {list(fixed.shape)} must match and be "
                             f"multiples of {self.divisor}")
        h = torch.cat([moving, fixed], 1)
        skips = []
        for layer in self.encoder:
            h = layer(h)
            skips.append(h)
        skips.pop()
        for layer in self.decoder:
            skip = skips.pop()
            h = nn.functional.interpolate(h, size=skip.shape[-2:], mode="nearest")
            h = layer(torch.cat([h, skip], 1))
        flow = self.head(h)
        if self.config.diffeomorphic:
            flow = integrate_velocity(flow, self.config.integration_steps)
        return flow
