"""Texture DDPM: cosine schedule, small U-Net, training on real cell crops, batched SDEdit/DDIM sampling."""

from bvdm_data.diffusion.crops import CellCrops, extract_cell_crops
from bvdm_data.diffusion.sample import Denoiser, flat_cells, refine, sdedit
from bvdm_data.diffusion.schedule import CosineSchedule
from bvdm_data.diffusion.texture import TextureModel, export_texture
from bvdm_data.diffusion.train import train_texture
from bvdm_data.diffusion.unet import UNet, UNetConfig
from bvdm_data.training import TrainConfig

__all__ = [
    "CellCrops",
    "CosineSchedule",
    "Denoiser",
    "TextureModel",
    "TrainConfig",
    "UNet",
    "UNetConfig",
    "export_texture",
    "extract_cell_crops",
    "flat_cells",
    "refine",
    "sdedit",
    "train_texture",
]
