"""The scene part of a bundle: background, pasting alpha, and the nuclei the annotation leaves out."""

from bvdm_data.scene.model import SceneModel, unlabelled_objects

__all__ = ["SceneModel", "unlabelled_objects"]
