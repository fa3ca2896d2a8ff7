"""The BVDM pipeline: masks -> textures (SDEdit, flow + refinement) -> scene, batched over cells and clips."""

from bvdm_data.synth.compose import compose
from bvdm_data.synth.pipeline import SynthesisSettings, Synthesizer

__all__ = ["SynthesisSettings", "Synthesizer", "compose"]
