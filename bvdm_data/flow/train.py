"""Train the flow model: warped moving mask vs fixed mask (MSE) + lambda * smoothness (paper: 0.01)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

from bvdm_data.errors import BVDMDataError
from bvdm_data.flow.network import FlowConfig, FlowNet
from bvdm_data.flow.pairs import FlowPairs
from bvdm_data.flow.warp import smoothness, warp
from bvdm_data.training import TrainConfig, TrainResult, build_model, dihedral, train


def train_flow(pairs: FlowPairs, out_dir: str | os.PathLike, config: TrainConfig = TrainConfig(iterations=2000),
               flow: FlowConfig = FlowConfig(), smoothness_weight: float = 0.01,
               device: str | torch.device = "cpu", time_budget_s: float | None = None,
               progress: bool = True) -> TrainResult:
    """Train (or resume) the flow network on mask pairs; checkpoints go to ``out_dir``.

    Each step draws ``batch_size`` pairs, applies one random rotation/flip to
    both masks of a pair, and swaps moving and fixed of same-cell pairs half of
    the time (the flow backwards in time is as valid a training example).
    """
    if len(pairs) < 2:
        raise BVDMDataError(f"need at least 2 mask pairs to train, got {len(pairs)}")

    def batch_loss(model: torch.nn.Module, rng: np.random.Generator, gen: torch.Generator,
                   device: torch.device) -> torch.Tensor:
        index = torch.as_tensor(rng.integers(0, len(pairs), config.batch_size))
        k, flip = int(rng.integers(0, 4)), bool(rng.random() < 0.5)
        moving = dihedral(pairs.moving[index], k, flip)
        fixed = dihedral(pairs.fixed[index], k, flip)
        swap = torch.as_tensor((rng.random(config.batch_size) < 0.5) & (pairs.kind[index.numpy()] == 0))
        swap = swap.view(-1, 1, 1, 1)
        moving, fixed = torch.where(swap, fixed, moving).to(device), torch.where(swap, moving, fixed).to(device)
        field = model(moving, fixed)
        warped = warp(moving, field.float())
        return torch.nn.functional.mse_loss(warped, fixed) + smoothness_weight * smoothness(field.float())

    meta = {"flow": flow.to_dict(), "crop_size": int(pairs.moving.shape[-1]), "smoothness_weight": smoothness_weight}
    return train(lambda: FlowNet(flow), batch_loss, out_dir, config, meta, device, time_budget_s, progress,
                 desc="train flow")


def flow_model(meta: dict[str, Any], state: dict[str, torch.Tensor], source: str = "") -> FlowNet:
    """The FlowNet a checkpoint or bundle describes, with its weights."""
    return build_model(lambda: FlowNet(FlowConfig.from_dict(meta["flow"])), state, source)


def dice(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Dice overlap per sample of two ``[N, 1, S, S]`` masks (thresholded at 0.5)."""
    a, b = a > 0.5, b > 0.5
    inter = (a & b).sum((1, 2, 3)).float()
    return 2 * inter / (a.sum((1, 2, 3)) + b.sum((1, 2, 3))).clamp_min(1).float()


@torch.no_grad()
def registration_dice(model: FlowNet, pairs: FlowPairs, batch: int = 256) -> dict[str, float]:
    """Mean Dice of moving -> fixed for the flow model and two baselines.

    ``identity``: the moving mask where it was (uncentred: the centroid shift
    undone); ``centroid``: the centred crops as they are (the motion of the
    centroid compensated, no deformation); ``flow``: the model's warp of the
    centred moving mask.
    """
    model = model.eval()
    device = next(model.parameters()).device
    flows = []
    for i in range(0, len(pairs), batch):
        flows.append(warp(pairs.moving[i:i + batch].to(device),
                          model(pairs.moving[i:i + batch].to(device), pairs.fixed[i:i + batch].to(device))).cpu())
    warped = torch.cat(flows)
    shifted = torch.stack([torch.roll(m, shifts=(int(round(-dy)), int(round(-dx))), dims=(-2, -1))
                           for m, (dy, dx) in zip(pairs.moving, pairs.shift)])
    return {"identity": float(dice(shifted, pairs.fixed).mean()),
            "centroid": float(dice(pairs.moving, pairs.fixed).mean()),
            "flow": float(dice(warped, pairs.fixed).mean())}
