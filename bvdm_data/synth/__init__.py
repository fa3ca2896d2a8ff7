"""The BVDM pipeline: masks -> textures (SDEdit, flow + refinement) -> scene, batched over cells and clips."""

from bvdm_data.synth.pipeline import SynthesisSettings, Synthesizer
from bvdm_data.synth.scene import SceneModel, compose

__all__ = ["SceneModel", "SynthesisSettings", "Synthesizer", "compose"]
