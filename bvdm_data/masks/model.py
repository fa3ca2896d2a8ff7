"""The fitted mask model: shapes, sizes, lineage and motion of one cell line.

Plain arrays and numbers, stored in a bundle's ``masks`` part as
``model.npz`` (arrays) and ``model.json`` (numbers and the fit report):
nothing is pickled.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

from bvdm_data.bundle import Bundle, BundleWriter

PHASES = ("interphase", "mitosis", "newborn")
PART = "masks"
PART_VERSION = 1


def _finite(value: Any) -> Any:
    """NaN and infinities as None, so the JSON is standard."""
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


@dataclass
class MaskModel:
    """Statistics of cell shape, size, lineage and motion, fitted from a real label video.

    Phases: ``mitosis`` is the last ``mitosis_frames`` frames of a cell that
    divides, ``newborn`` the first ``newborn_frames`` of a daughter,
    ``interphase`` the rest. Shapes are radial profiles (see
    :mod:`bvdm_data.masks.contours`) with a PCA per phase; sizes are log-normal
    per phase, with a trend over the cell cycle in interphase.
    """

    # Shape: PCA of unit-area radial profiles, per phase.
    shape_mean: np.ndarray          # [P, K]
    shape_components: np.ndarray    # [P, C, K] orthonormal rows
    shape_std: np.ndarray           # [P, C]
    shape_persistence: float        # frame-to-frame correlation of the shape latent
    # Size: log(area in px) per phase; interphase grows by area_slope over a cycle.
    log_area_mean: np.ndarray       # [P]
    log_area_std: np.ndarray        # [P]
    area_slope: float
    # Lineage.
    cycle_lengths: np.ndarray       # frames from birth to the last frame before division (Kaplan-Meier support)
    cycle_probabilities: np.ndarray  # their probabilities; 1 - sum = fraction that never divides
    division_separation: np.ndarray  # px between the daughters' centroids in their first frame
    division_angle: np.ndarray      # division axis relative to the mother's major axis, radians
    mitosis_frames: int
    newborn_frames: int
    # Motion.
    velocity_persistence: float     # AR(1) coefficient of the per-frame displacement
    velocity_noise: float           # px per frame, per axis
    rotation_std: float             # radians per frame
    # Scene.
    density: float                  # cells per px^2 in the first frame
    min_separation: float           # closest centroid distance / (r_i + r_j) tolerated
    real_statistics: dict[str, Any] = field(default_factory=dict)  # summary of the fitting data

    @property
    def num_angles(self) -> int:
        return int(self.shape_mean.shape[1])

    @property
    def divides(self) -> bool:
        return self.cycle_lengths.size > 0

    def median_radius(self) -> float:
        """Radius in px of a cell of median interphase size."""
        return float(np.sqrt(np.exp(self.log_area_mean[0]) / np.pi))

    def save(self, bundle_root: str, provenance: dict[str, Any] | None = None,
             report: list[dict[str, Any]] | None = None) -> None:
        """Write the model as the ``masks`` part of a bundle (created if needed).

        ``report``, the comparison of simulated with real statistics, is kept
        beside it as ``fit_report.json``.
        """
        arrays, numbers = {}, {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, np.ndarray):
                arrays[f.name] = value
            else:
                numbers[f.name] = value
        BundleWriter(bundle_root).write_part(
            PART, PART_VERSION,
            json_files={"model.json": numbers, **({"fit_report.json": _finite(report)} if report else {})},
            array_files={"model.npz": arrays},
            config={"phases": list(PHASES), "num_angles": self.num_angles}, provenance=provenance)

    @classmethod
    def load(cls, bundle: Bundle | str) -> MaskModel:
        """Read the ``masks`` part of a bundle (a :class:`Bundle`, a path or a shipped name)."""
        bundle = bundle if isinstance(bundle, Bundle) else Bundle.load(bundle)
        bundle.part(PART, version=PART_VERSION)
        values = {**bundle.read_json(PART, "model.json"), **bundle.read_arrays(PART, "model.npz")}
        return cls(**{f.name: values[f.name] for f in fields(cls)})

    def to_dict(self) -> dict[str, Any]:
        return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in asdict(self).items()}
