"""The flow part of a bundle: EMA weights of the flow network and its crop size."""

from __future__ import annotations

import os
from typing import Any

import torch

from bvdm_data.bundle import Bundle, BundleWriter
from bvdm_data.flow.network import FlowNet
from bvdm_data.flow.train import flow_model
from bvdm_data.training import load_checkpoint, training_summary

PART = "flow"
PART_VERSION = 1


def load_flow(bundle: Bundle | str, device: str | torch.device = "cpu") -> tuple[FlowNet, int]:
    """The flow network of a bundle (a :class:`Bundle`, a path or a shipped name) and its crop size."""
    bundle = bundle if isinstance(bundle, Bundle) else Bundle.load(bundle)
    bundle.part(PART, version=PART_VERSION)
    info = bundle.read_json(PART, "flow.json")
    model = flow_model(info, bundle.read_state_dict(PART, "ema.pt"), source=f"{bundle.root}/{PART}/ema.pt")
    return model.to(device).eval(), int(info["crop_size"])


def export_flow(checkpoint: str | os.PathLike, bundle_root: str | os.PathLike,
                metrics: dict[str, Any] | None = None, provenance: dict[str, Any] | None = None) -> None:
    """Write a checkpoint's EMA weights as the ``flow`` part of a bundle."""
    state = load_checkpoint(checkpoint)
    training = training_summary(state)
    BundleWriter(bundle_root).write_part(PART, PART_VERSION, json_files={"flow.json": state["meta"]},
                                         state_dicts={"ema.pt": state["ema"]},
                                         config={"training": training, "metrics": dict(metrics or {})},
                                         provenance=provenance)
