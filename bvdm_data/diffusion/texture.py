"""The texture part of a bundle: EMA weights of the denoiser and what sampling needs to know."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch

from bvdm_data.bundle import Bundle, BundleWriter
from bvdm_data.diffusion.sample import Denoiser
from bvdm_data.diffusion.schedule import CosineSchedule
from bvdm_data.diffusion.train import texture_model
from bvdm_data.training import load_checkpoint, training_summary

PART = "texture"
PART_VERSION = 1


@dataclass
class TextureModel:
    """A loaded texture DDPM: the denoiser, crop size, intensity range and cell/background statistics."""

    denoiser: Denoiser
    crop_size: int
    intensity_range: tuple[float, float]
    statistics: dict[str, float]

    @classmethod
    def load(cls, bundle: Bundle | str, device: str | torch.device = "cpu", bf16: bool = False,
             compile: bool = False) -> TextureModel:
        """Read the ``texture`` part of a bundle (a :class:`Bundle`, a path or a shipped name).

        ``compile``: run the denoiser through ``torch.compile`` (see :class:`Denoiser`).

        Example:
            >>> texture = TextureModel.load("hela")  # doctest: +SKIP
        """
        bundle = bundle if isinstance(bundle, Bundle) else Bundle.load(bundle)
        bundle.part(PART, version=PART_VERSION)
        info = bundle.read_json(PART, "texture.json")
        state = bundle.read_state_dict(PART, "ema.pt", map_location="cpu")
        model = texture_model(info, state, source=f"{bundle.root}/{PART}/ema.pt")
        denoiser = Denoiser(model, CosineSchedule(info["num_steps"]), torch.device(device), bf16, compile)
        return cls(denoiser, int(info["crop_size"]), tuple(info["intensity_range"]), info["statistics"])


def image_units(bundle: Bundle | str) -> tuple[tuple[float, float], str]:
    """The real frames' ``(lo, hi)`` counts that a clip's 0..1 stands for, and their dtype, for writing files.

    The dtype is the one recorded at fit time (``image_dtype``); bundles from
    before it was recorded get uint8 when their band fits 0..255, else uint16.

    Example:
        >>> image_units("hela")  # doctest: +SKIP
        ((32980.0, 36860.0), 'uint16')
    """
    bundle = bundle if isinstance(bundle, Bundle) else Bundle.load(bundle)
    info = bundle.read_json(PART, "texture.json")
    lo, hi = (float(v) for v in info["intensity_range"])
    dtype = info["statistics"].get("image_dtype") or ("uint8" if hi <= 255 else "uint16")
    return (lo, hi), str(dtype)


def export_texture(checkpoint: str | os.PathLike, bundle_root: str | os.PathLike,
                   statistics: dict[str, float], provenance: dict[str, Any] | None = None) -> None:
    """Write a checkpoint's EMA weights as the ``texture`` part of a bundle."""
    state = load_checkpoint(checkpoint)
    info = {**state["meta"], "statistics": statistics}
    training = training_summary(state)
    BundleWriter(bundle_root).write_part(PART, PART_VERSION, json_files={"texture.json": info},
                                         state_dicts={"ema.pt": state["ema"]},
                                         config={"training": training}, provenance=provenance)
