"""Mask model: fit cell shape, size, lineage and motion from real tracks; simulate label videos."""

from bvdm_data.masks.contours import measure_instances, rasterize
from bvdm_data.masks.fidelity import compare_statistics, format_comparison, label_video_statistics
from bvdm_data.masks.fit import fit_mask_model
from bvdm_data.masks.model import MaskModel
from bvdm_data.masks.simulate import simulate_masks

__all__ = [
    "MaskModel",
    "compare_statistics",
    "fit_mask_model",
    "format_comparison",
    "label_video_statistics",
    "measure_instances",
    "rasterize",
    "simulate_masks",
]
