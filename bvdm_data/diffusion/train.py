"""Train the texture DDPM on cell crops (epsilon prediction, uniform time steps)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

from bvdm_data.diffusion.crops import CellCrops, augment
from bvdm_data.diffusion.schedule import CosineSchedule
from bvdm_data.diffusion.unet import UNet, UNetConfig
from bvdm_data.errors import BVDMDataError
from bvdm_data.training import TrainConfig, TrainResult, build_model, train


def texture_meta(unet: UNetConfig, num_steps: int, crops: CellCrops) -> dict[str, Any]:
    """What a texture checkpoint must record to be resumed and exported."""
    return {"unet": unet.to_dict(), "num_steps": int(num_steps), "crop_size": crops.size,
            "intensity_range": [float(v) for v in crops.intensity_range]}


def train_texture(crops: CellCrops, out_dir: str | os.PathLike, config: TrainConfig = TrainConfig(),
                  unet: UNetConfig = UNetConfig(), num_steps: int = 1000, device: str | torch.device = "cpu",
                  time_budget_s: float | None = None, progress: bool = True,
                  initial: tuple[str, dict[str, torch.Tensor]] | None = None) -> TrainResult:
    """Train (or resume training) the denoiser on ``crops``; checkpoints go to ``out_dir``.

    Stops after ``config.iterations`` steps or ``time_budget_s`` seconds,
    whichever comes first, always leaving a checkpoint to resume from.
    ``initial``: (where from, weights) to fine-tune instead of starting from
    random weights; recorded in the checkpoint (``meta["initialised_from"]``).

    Example:
        >>> result = train_texture(crops, "runs/hela_texture", TrainConfig(iterations=200))  # doctest: +SKIP
    """
    if len(crops) < 2:
        raise BVDMDataError(f"need at least 2 crops to train, got {len(crops)}")
    schedule = CosineSchedule(num_steps)
    images = crops.images

    def batch_loss(model: torch.nn.Module, rng: np.random.Generator, gen: torch.Generator,
                   device: torch.device) -> torch.Tensor:
        index = rng.integers(0, len(crops), config.batch_size)
        x0 = augment(images[torch.as_tensor(index)], rng).to(device)
        t = torch.randint(0, num_steps, (config.batch_size,), generator=gen).to(device)
        noise = torch.randn(x0.shape, generator=gen).to(device)
        return torch.nn.functional.mse_loss(model(schedule.add_noise(x0, t, noise), t).float(), noise)

    meta = texture_meta(unet, num_steps, crops)
    if initial is not None:
        meta["initialised_from"] = initial[0]
    return train(lambda: UNet(unet), batch_loss, out_dir, config, meta, device, time_budget_s, progress,
                 desc="train texture", initial=None if initial is None else initial[1])


def texture_model(meta: dict[str, Any], state: dict[str, torch.Tensor], source: str = "") -> UNet:
    """The U-Net a texture checkpoint or bundle describes, with its weights."""
    return build_model(lambda: UNet(UNetConfig.from_dict(meta["unet"])), state, source)
