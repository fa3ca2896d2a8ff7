"""Flow model: a VoxelMorph-style registration net carries a cell's texture from one frame's mask to the next."""

from bvdm_data.flow.model import export_flow, load_flow
from bvdm_data.flow.network import FlowConfig, FlowNet
from bvdm_data.flow.pairs import FlowPairs, extract_flow_pairs
from bvdm_data.flow.train import registration_dice, train_flow
from bvdm_data.flow.warp import integrate_velocity, smoothness, warp

__all__ = [
    "FlowConfig",
    "FlowNet",
    "FlowPairs",
    "export_flow",
    "extract_flow_pairs",
    "integrate_velocity",
    "load_flow",
    "registration_dice",
    "smoothness",
    "train_flow",
    "warp",
]
