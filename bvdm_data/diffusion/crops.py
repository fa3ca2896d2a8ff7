"""Cell-centred crops of real frames: the training data of the texture DDPM.

Intensities map to 0..1 through percentiles of the data (stored with the
model), then to -1..1 for the network. Cells whose crop would leave the frame,
or that do not fit in the crop, are skipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from bvdm_data.cells import cell_windows
from bvdm_data.ctc.clips import intensity_range, to_unit
from bvdm_data.ctc.sequence import CTCSequence
from bvdm_data.diffusion.edges import mean_inside, measure_edge_profile, measure_edge_profiles
from bvdm_data.errors import BVDMDataError
from bvdm_data.robust import robust_std
from bvdm_data.training import dihedral

AREA_BINS = 5            # size classes of the brightness law by area (quintiles of the real cells' areas)
MIN_CELLS_PER_BIN = 20   # fewer real cells than this per class: no law by area (101 quantiles of a handful mislead)


@dataclass
class CellCrops:
    """Crops ``[N, 1, S, S]`` in -1..1, the centre cell's mask ``[N, S, S]`` and where each came from.

    ``empty`` marks the pixels of each crop that no cell (centre or neighbour) covers.
    """

    images: torch.Tensor
    masks: torch.Tensor
    frames: np.ndarray
    intensity_range: tuple[float, float]
    empty: torch.Tensor

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def size(self) -> int:
        return int(self.images.shape[-1])

    def select(self, keep: np.ndarray) -> CellCrops:
        keep_t = torch.as_tensor(keep)
        return CellCrops(self.images[keep_t], self.masks[keep_t], self.frames[keep], self.intensity_range,
                         self.empty[keep_t])

    def statistics(self) -> dict[str, Any]:
        """Cell and background intensity (-1..1) for SDEdit's flat start images.

        ``cell_mean_quantiles`` (101 values, 0th to 100th percentile) keep the
        real, skewed law of cell brightness, dim cells included, for sampling.
        The background is measured where no cell is, by median and MAD: cells
        the segmentation missed are outliers, not noise (counting neighbours
        as background made HeLa's background 0.05 too bright and its noise 10x too strong).
        ``cell_mean_by_area`` (:func:`brightness_by_area`) keeps the same law per size class.
        """
        cell_means = mean_inside(self.images, self.masks)
        background = self.images[:, 0][self.empty].double().numpy()
        if background.size == 0:
            raise BVDMDataError("the crops have no pixel outside every cell to measure the background on")
        median = float(np.median(background))
        quantiles = np.percentile(cell_means.numpy(), np.arange(101))
        usable = self.empty & ~self.masks.bool()
        return {"cell_mean": float(cell_means.mean()), "cell_std": float(cell_means.std()),
                "cell_mean_quantiles": [float(q) for q in quantiles],
                "cell_mean_by_area": brightness_by_area(cell_means.numpy(), self.masks.flatten(1).sum(1).numpy()),
                "background_mean": median, "background_std": robust_std(background),
                "edge_profile": measure_edge_profile(self.images, self.masks, usable, median),
                "edge_profiles": measure_edge_profiles(self.images, self.masks, usable, median)}


def brightness_by_area(cell_means: np.ndarray, areas: np.ndarray, bins: int = AREA_BINS,
                       min_cells: int = MIN_CELLS_PER_BIN) -> dict | None:
    """The brightness law per size class: area edges (px) at the quantiles of ``areas`` and 101 quantiles of
    ``cell_means`` in each class; None with fewer than ``min_cells`` cells a class.

    On HeLa the median brightness barely follows size, but its spread does: the smallest fifth of the cells holds
    the dimmest and the brightest nuclei (mitotic figures), while large ones are rarely dim (benchmarks/RESULTS.md
    section 1, "Brightness by size").

    Example:
        >>> means = np.r_[np.linspace(0, 1, 50), np.full(50, 0.5)]  # small cells spread, large ones alike
        >>> law = brightness_by_area(means, np.r_[np.full(50, 100), np.full(50, 400)], bins=2)
        >>> law["area_edges"], round(law["quantiles"][0][0], 2), law["quantiles"][1][0]
        ([250.0], 0.0, 0.5)
    """
    if len(areas) < bins * min_cells:
        return None
    ordered = np.sort(areas.astype(np.float64))
    # class k holds the k-th run of len/bins cells by area (ties split by rank), edges halfway between the runs
    cut = [len(ordered) * k // bins for k in range(1, bins)]
    edges = [float((ordered[c - 1] + ordered[c]) / 2) for c in cut]
    rank = np.argsort(np.argsort(areas, kind="stable"), kind="stable")
    which = np.searchsorted(np.asarray(cut), rank, side="right")
    quantiles = [np.percentile(cell_means[which == k], np.arange(101)) for k in range(bins)]
    return {"area_edges": edges, "quantiles": [[float(q) for q in row] for row in quantiles]}


def size_class(law: dict, areas: Sequence[float] | np.ndarray) -> np.ndarray:
    """Each area's class in a law by size (:func:`brightness_by_area`): how many of its edges lie below it.

    Example:
        >>> size_class({"area_edges": [250.0, 500.0]}, [100, 250, 300, 900]).tolist()
        [0, 0, 1, 2]
    """
    return np.searchsorted(law["area_edges"], np.asarray(areas, dtype=np.float64))


def sample_brightness(statistics: dict[str, Any], count: int, generator: torch.Generator,
                      areas: Sequence[float] | np.ndarray | None = None) -> torch.Tensor:
    """Cell intensities drawn from the fitted law (inverse CDF of the stored quantiles).

    With ``areas`` (px, one per cell) and a law by area in ``statistics``, each cell is drawn from the law of
    its size class; the same uniform draws are used either way, so a clip's other randomness does not move.
    """
    u = torch.rand(count, generator=generator, dtype=torch.float64)
    law = statistics.get("cell_mean_by_area")
    if areas is None or law is None:
        table = torch.tensor(statistics["cell_mean_quantiles"], dtype=torch.float64).expand(count, -1)
    else:
        if len(areas) != count:
            raise BVDMDataError(f"{len(areas)} areas for {count} cells")
        table = torch.tensor(law["quantiles"], dtype=torch.float64)[torch.from_numpy(size_class(law, areas))]
    u = u * (table.shape[1] - 1)
    low = u.floor().long().clamp_max(table.shape[1] - 2)
    frac = u - low
    pick = table.gather(1, torch.stack([low, low + 1], 1))
    return (pick[:, 0] * (1 - frac) + pick[:, 1] * frac).float()


def augment(images: torch.Tensor, rng: np.random.Generator, jitter: float = 0.05) -> torch.Tensor:
    """Random flips and 90-degree rotations per crop, and a mild intensity gain about -1 (black)."""
    out = images.clone()
    k = rng.integers(0, 4, len(out))
    flip = rng.random(len(out)) < 0.5
    for i in range(len(out)):  # per crop, not per pixel: a handful of views
        out[i] = dihedral(out[i], int(k[i]), bool(flip[i]))
    gain = torch.as_tensor(1 + jitter * rng.standard_normal(len(out)), dtype=out.dtype).view(-1, 1, 1, 1)
    return ((out + 1) * gain - 1).clamp(-1, 1)


def extract_cell_crops(seq: CTCSequence, size: int = 64, percentiles: tuple[float, float] = (1.0, 99.9),
                       min_area: int = 20, frames: list[int] | None = None,
                       intensity: tuple[float, float] | None = None) -> CellCrops:
    """Crops centred on every whole cell of the labelled frames of ``seq``.

    Works with per-frame ids (a segmentation without lineage) as well as
    track ids: each frame's labels are read independently. With
    :class:`~bvdm_data.ctc.outlines.OutlinedLabels` as labels, crops are
    centred on the outlined cells only, and the other cells' grown markers
    are not background. Intensities map to -1..1 by the ``percentiles`` of
    these frames, or by ``intensity`` (counts at -1 and 1) when given, e.g.
    a trained texture model's range.
    """
    if seq.labels is None:
        raise BVDMDataError(f"{seq.images.folder}: no labels to find cells in")
    use = [f for f in (frames if frames is not None else seq.images.frames) if f in seq.labels.paths]
    if not use:
        raise BVDMDataError(f"{seq.labels.folder}: no labelled frame to crop cells from")
    lo, hi = intensity if intensity is not None else intensity_range(seq, percentiles, max_frames=len(use), frames=use)
    images = to_unit(np.stack([seq.images.read(f) for f in use]), (lo, hi)) * 2 - 1
    crops, masks, empty, where = [], [], [], []
    # A label source that completes sparse outlines with markers (ctc.outlines) says which labels are outlines.
    last_outlined = getattr(seq.labels, "last_outlined", None)
    for image, f in zip(images, use):
        labels = seq.labels.read(f)
        outlined = last_outlined(f) if last_outlined is not None else None
        for cell in cell_windows(labels, size):
            if cell.area < min_area or not (cell.fits and cell.inside):
                continue
            if outlined is not None and cell.label > outlined:
                continue
            window = cell.window(size)
            crops.append(image[window])
            masks.append(labels[window] == cell.label)
            empty.append(labels[window] == 0)
            where.append(f)
    if not crops:
        raise BVDMDataError(f"{seq.labels.folder}: no whole cell fits a {size}x{size} crop")
    return CellCrops(torch.from_numpy(np.stack(crops)[:, None].astype(np.float32)),
                     torch.from_numpy(np.stack(masks)), np.asarray(where), (lo, hi), torch.from_numpy(np.stack(empty)))
