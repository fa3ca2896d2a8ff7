"""A resumable training loop shared by the texture DDPM and the flow model.

AdamW, gradient clipping, an EMA copy of the weights, atomic checkpoints and a
time budget. Step ``s`` gets a NumPy and a torch generator derived from
``(seed, s)`` and the initial weights come from ``seed``, so a run stopped and
resumed from its checkpoint ends with exactly the weights of an uninterrupted
one. Checkpoints are plain tensors and numbers (``weights_only`` loading).
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from bvdm_data.atomic_io import atomic_file
from bvdm_data.errors import BVDMDataError

CHECKPOINT_FORMAT = 1
CHECKPOINT = "checkpoint.pt"


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings (paper: batch 32; 10 000 iterations for the DDPM, 2 000 for the flow)."""

    iterations: int = 10_000
    batch_size: int = 32
    lr: float = 1e-4
    weight_decay: float = 0.0
    ema_decay: float = 0.999
    ema_warmup: bool = True  # decay (1 + step) / (10 + step) until it reaches ema_decay
    grad_clip: float = 1.0
    seed: int = 0
    checkpoint_every: int = 250
    bf16: bool = False


@dataclass
class TrainResult:
    step: int
    losses: list[float]
    seconds: float
    checkpoint: Path


# The loss of one step: (model, numpy rng, torch generator, device) -> scalar loss.
BatchLoss = Callable[[nn.Module, np.random.Generator, torch.Generator, torch.device], torch.Tensor]



def dihedral(x: torch.Tensor, k: int, flip: bool) -> torch.Tensor:
    """One of the 8 symmetries of the square on the last two axes: ``k`` quarter turns, then a mirror.

    Example:
        >>> dihedral(torch.tensor([[1, 2], [3, 4]]), 1, True).tolist()
        [[4, 2], [3, 1]]
    """
    x = torch.rot90(x, k, dims=(-2, -1))
    return torch.flip(x, dims=(-1,)) if flip else x

def step_generator(seed: int, step: int) -> torch.Generator:
    """A CPU torch generator whose stream is a pure function of ``(seed, step)``."""
    g = torch.Generator()
    g.manual_seed(int(np.random.SeedSequence([seed, step]).generate_state(1, dtype=np.uint64)[0] >> 1))
    return g


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint without unpickling objects; refuse other files and formats clearly."""
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:
        raise BVDMDataError(f"{path}: not a bvdm-data checkpoint ({type(err).__name__}: {err})") from err
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        found = state.get("format") if isinstance(state, dict) else "?"
        raise BVDMDataError(f"{path}: checkpoint format {found}, this bvdm-data reads format {CHECKPOINT_FORMAT}")
    return state


def train(make_model: Callable[[], nn.Module], batch_loss: BatchLoss, out_dir: str | os.PathLike,
          config: TrainConfig, meta: dict[str, Any], device: str | torch.device = "cpu",
          time_budget_s: float | None = None, progress: bool = True, desc: str = "train",
          initial: dict[str, torch.Tensor] | None = None) -> TrainResult:
    """Train ``make_model()`` on ``batch_loss`` until ``config.iterations`` or the time budget.

    ``meta`` (architecture and data facts, JSON-like) is stored in the
    checkpoint; resuming with a different ``meta`` or seed is refused, since
    the old weights would not fit or would mix two runs. ``initial``: weights
    to start from (model and EMA) instead of the seed's random ones, when
    there is no checkpoint yet (fine-tuning); name them in ``meta``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(device)
    ckpt_path = out / CHECKPOINT
    with torch.random.fork_rng(devices=[]):  # initial weights from the seed, global RNG untouched
        torch.manual_seed(config.seed)
        model = make_model().to(device)
    if initial is not None:
        build_model(lambda: model, initial, "the initial weights")
    ema = copy.deepcopy(model).requires_grad_(False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    step, seconds, losses = 0, 0.0, []
    if ckpt_path.is_file():
        state = load_checkpoint(ckpt_path, device)
        if state["meta"] != meta or state["train"]["seed"] != config.seed:
            raise BVDMDataError(f"{ckpt_path}: was trained with {state['meta']} seed {state['train']['seed']}; "
                                f"asked for {meta} seed {config.seed}. Use another folder.")
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        step, seconds, losses = int(state["step"]), float(state["seconds"]), list(state["losses"])
    started = time.monotonic()

    def save() -> None:
        state = {"format": CHECKPOINT_FORMAT, "step": step, "seconds": seconds + time.monotonic() - started,
                 "losses": losses, "meta": meta, "train": asdict(config), "model": model.state_dict(),
                 "ema": ema.state_dict(), "optimizer": optimizer.state_dict()}
        with atomic_file(ckpt_path) as tmp:
            torch.save(state, tmp)

    bar = tqdm(total=config.iterations, initial=step, desc=desc, disable=not progress)
    model.train()
    while step < config.iterations:
        if time_budget_s is not None and time.monotonic() - started >= time_budget_s:
            break
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.bf16):
            loss = batch_loss(model, np.random.default_rng([config.seed, step]),
                              step_generator(config.seed, step), device)
        optimizer.zero_grad(set_to_none=True)
        loss.float().backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        with torch.no_grad():
            decay = ema_decay(config, step)
            for e, p in zip(ema.parameters(), model.parameters()):
                e.lerp_(p, 1 - decay)
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


def ema_decay(config: TrainConfig, step: int) -> float:
    """The EMA's decay after ``step`` optimiser steps (0-based).

    With ``ema_warmup`` the average forgets quickly at first, so a short run (a few thousand steps, as on a GPU
    with wide batches) is not dominated by its random initial weights: at a fixed 0.999 they still weigh
    0.999 ** 2000 = 14 % after 2 000 steps.

    Example:
        >>> ema_decay(TrainConfig(), 0), round(ema_decay(TrainConfig(), 90), 2), ema_decay(TrainConfig(), 10**6)
        (0.1, 0.91, 0.999)
    """
    if not config.ema_warmup:
        return config.ema_decay
    return min(config.ema_decay, (1 + step) / (10 + step))


def training_summary(state: dict[str, Any]) -> dict[str, Any]:
    """How a checkpoint was trained, for a bundle's manifest: settings, steps done, hours, final loss."""
    last = state["losses"][-100:]
    return {**state["train"], "steps_done": int(state["step"]), "hours": state["seconds"] / 3600,
            "loss_mean_last_100": sum(last) / max(1, len(last))}


def build_model(make_model: Callable[[], nn.Module], state: dict[str, torch.Tensor], source: str) -> nn.Module:
    """``make_model()`` with ``state`` loaded; a mismatch is named instead of raised raw."""
    model = make_model()
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise BVDMDataError(f"{source}: weights do not fit the stored architecture: "
                            f"{str(err).splitlines()[0]}") from err
    return model.eval()
