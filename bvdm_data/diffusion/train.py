"""Train the texture DDPM on cell crops: EMA, gradient clipping, checkpoints, exact resume.

Step ``s`` draws its batch, augmentation, time steps and noise from seeds
derived from ``(seed, s)``, so a run stopped and resumed from its checkpoint
ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import copy
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from bvdm_data.atomic_io import atomic_file
from bvdm_data.diffusion.crops import CellCrops, augment
from bvdm_data.diffusion.schedule import CosineSchedule
from bvdm_data.diffusion.unet import UNet, UNetConfig
from bvdm_data.errors import BVDMDataError

CHECKPOINT_FORMAT = 1
CHECKPOINT = "checkpoint.pt"


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings (paper: batch 32, 10 000 iterations)."""

    iterations: int = 10_000
    batch_size: int = 32
    lr: float = 1e-4
    weight_decay: float = 0.0
    ema_decay: float = 0.999
    grad_clip: float = 1.0
    num_steps: int = 1000
    seed: int = 0
    checkpoint_every: int = 250
    bf16: bool = False


def step_generator(seed: int, step: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A torch generator whose stream is a pure function of ``(seed, step)``."""
    g = torch.Generator(device=device)
    g.manual_seed(int(np.random.SeedSequence([seed, step]).generate_state(1, dtype=np.uint64)[0] >> 1))
    return g


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a training checkpoint without unpickling objects; refuse other formats clearly."""
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:
        raise BVDMDataError(f"{path}: not a bvdm-data texture checkpoint ({type(err).__name__}: {err})") from err
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise BVDMDataError(f"{path}: checkpoint format {state.get('format') if isinstance(state, dict) else '?'}, "
                            f"this bvdm-data reads format {CHECKPOINT_FORMAT}")
    return state


def build_model(unet: dict[str, Any], state: dict[str, torch.Tensor] | None = None, source: str = "") -> UNet:
    """A UNet of the stored architecture, with ``state`` loaded; names a mismatch instead of a raw error."""
    model = UNet(UNetConfig.from_dict(unet))
    if state is not None:
        try:
            model.load_state_dict(state)
        except RuntimeError as err:
            first = str(err).splitlines()[0]
            raise BVDMDataError(f"{source}: weights do not fit the stored architecture {unet}: {first}") from err
    return model


@dataclass
class TrainResult:
    step: int
    losses: list[float]
    seconds: float
    checkpoint: Path


def train_texture(crops: CellCrops, out_dir: str | os.PathLike, config: TrainConfig = TrainConfig(),
                  unet: UNetConfig = UNetConfig(), device: str | torch.device = "cpu",
                  time_budget_s: float | None = None, progress: bool = True) -> TrainResult:
    """Train (or resume training) the denoiser on ``crops``; checkpoints go to ``out_dir``.

    Stops after ``config.iterations`` steps or ``time_budget_s`` seconds,
    whichever comes first, always leaving a checkpoint to resume from.

    Example:
        >>> result = train_texture(crops, "runs/hela_texture", TrainConfig(iterations=200))  # doctest: +SKIP
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(device)
    if len(crops) < 2:
        raise BVDMDataError(f"need at least 2 crops to train, got {len(crops)}")
    ckpt_path = out / CHECKPOINT
    with torch.random.fork_rng(devices=[]):  # initial weights from the seed, global RNG untouched
        torch.manual_seed(config.seed)
        model = UNet(unet).to(device)
    ema = copy.deepcopy(model).requires_grad_(False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    step, seconds, losses = 0, 0.0, []
    if ckpt_path.is_file():
        state = load_checkpoint(ckpt_path, device)
        if state["unet"] != unet.to_dict() or state["train"]["seed"] != config.seed:
            raise BVDMDataError(f"{ckpt_path}: was trained with {state['unet']} seed {state['train']['seed']}; "
                                f"asked for {unet.to_dict()} seed {config.seed}. Use another folder.")
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        step, seconds, losses = int(state["step"]), float(state["seconds"]), list(state["losses"])
    schedule = CosineSchedule(config.num_steps)
    images = crops.images
    started = time.monotonic()
    bar = tqdm(total=config.iterations, initial=step, desc="train texture", disable=not progress)

    def save() -> None:
        state = {"format": CHECKPOINT_FORMAT, "step": step, "seconds": seconds + time.monotonic() - started,
                 "losses": losses, "unet": unet.to_dict(), "train": asdict(config),
                 "intensity_range": list(crops.intensity_range), "model": model.state_dict(),
                 "ema": ema.state_dict(), "optimizer": optimizer.state_dict()}
        with atomic_file(ckpt_path) as tmp:
            torch.save(state, tmp)

    model.train()
    while step < config.iterations:
        if time_budget_s is not None and time.monotonic() - started >= time_budget_s:
            break
        rng = np.random.default_rng([config.seed, step])
        gen = step_generator(config.seed, step)
        index = rng.integers(0, len(crops), config.batch_size)
        x0 = augment(images[torch.as_tensor(index)], rng).to(device)
        t = torch.randint(0, config.num_steps, (config.batch_size,), generator=gen).to(device)
        noise = torch.randn(x0.shape, generator=gen).to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.bf16):
            pred = model(schedule.add_noise(x0, t, noise), t)
        loss = torch.nn.functional.mse_loss(pred.float(), noise)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        with torch.no_grad():
            for e, p in zip(ema.parameters(), model.parameters()):
                e.lerp_(p, 1 - config.ema_decay)
            for e, b in zip(ema.buffers(), model.buffers()):
                e.copy_(b)
        step += 1
        losses.append(float(loss.detach()))
        bar.update(1)
        bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}")
        if step % config.checkpoint_every == 0:
            save()
    save()
    bar.close()
    return TrainResult(step, losses, seconds + time.monotonic() - started, ckpt_path)
