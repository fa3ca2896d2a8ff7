"""Pictures of a clip: an animated GIF with coloured instance contours, and a lineage plot.

Drawn with Pillow (already a torchvision dependency); no plotting library needed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw

from bvdm_data.atomic_io import atomic_file


def track_colours(ids: np.ndarray) -> np.ndarray:
    """A stable, well-spread RGB colour per track id (golden-ratio hues)."""
    hue = (np.asarray(ids, dtype=np.float64) * 0.618033988749895) % 1.0
    k = (np.arange(3)[None, :] / 3.0 + hue[:, None]) % 1.0
    rgb = 0.5 + 0.5 * np.cos(2 * np.pi * k)
    return (55 + 200 * rgb).astype(np.uint8)


def contour_frames(video: torch.Tensor, masks: torch.Tensor) -> list[np.ndarray]:
    """RGB uint8 frames: the video in grey with each cell's outline in its track colour."""
    grey = (video[:, 0].clamp(0, 1) * 255).to(torch.uint8).numpy()
    m = masks.numpy()
    # A cell pixel is on the outline when any 4-neighbour holds another label.
    edge = np.zeros_like(m, dtype=bool)
    edge[:, 1:, :] |= m[:, 1:, :] != m[:, :-1, :]
    edge[:, :-1, :] |= m[:, :-1, :] != m[:, 1:, :]
    edge[:, :, 1:] |= m[:, :, 1:] != m[:, :, :-1]
    edge[:, :, :-1] |= m[:, :, :-1] != m[:, :, 1:]
    edge &= m > 0
    lut = np.zeros((int(m.max(initial=0)) + 1, 3), dtype=np.uint8)
    lut[1:] = track_colours(np.arange(1, lut.shape[0]))
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    rgb[edge] = lut[m[edge]]
    return list(rgb)


def write_gif(frames: list[np.ndarray], path: str | os.PathLike, frame_ms: int = 250, scale: int = 2) -> Path:
    """Write RGB frames as a looping animated GIF (atomically)."""
    images = [Image.fromarray(f).resize((f.shape[1] * scale, f.shape[0] * scale), Image.NEAREST) for f in frames]
    with atomic_file(path) as tmp:
        images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:], duration=frame_ms, loop=0)
    return Path(path)


def write_lineage_png(tracks: torch.Tensor, num_frames: int, path: str | os.PathLike, meta: Mapping[str, Any]
                      | None = None) -> Path:
    """One horizontal bar per track over its frames, a vertical link from each parent to its children."""
    rows = tracks.numpy()
    order = {int(l): i for i, l in enumerate(_tree_order(rows))}
    px, row_h, left, top = 24, 12, 60, 30
    width = left + px * max(num_frames, 1) + 20
    height = top + row_h * max(len(rows), 1) + 30
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    title = f"{len(rows)} tracks, {int((rows[:, 3] > 0).sum())} with a parent"
    if meta:
        title += f" - {meta.get('source', '')} index {meta.get('index', '')}"
    draw.text((left, 8), title, fill="black")
    for t in range(num_frames + 1):
        x = left + t * px
        draw.line([(x, top - 4), (x, height - 26)], fill=(230, 230, 230))
        if t < num_frames and t % 5 == 0:
            draw.text((x + 2, height - 22), str(t), fill="black")
    colours = track_colours(rows[:, 0]) if len(rows) else np.zeros((0, 3), np.uint8)
    y_of = {int(l): top + order[int(l)] * row_h + row_h // 2 for l in rows[:, 0]}
    for (label, first, last, parent), colour in zip(rows.tolist(), colours):
        y = y_of[label]
        draw.line([(left + first * px + 2, y), (left + (last + 1) * px - 2, y)], fill=tuple(colour.tolist()), width=6)
        draw.text((4, y - 6), str(label), fill="black")
        if parent in y_of:
            x = left + first * px + 2
            draw.line([(x, y_of[parent]), (x, y)], fill="black", width=1)
    with atomic_file(path) as tmp:
        img.save(tmp, format="PNG")
    return Path(path)


def _tree_order(rows: np.ndarray) -> list[int]:
    """Tracks ordered depth-first from the roots, so children sit under their parent."""
    children: dict[int, list[int]] = {}
    for label, _, _, parent in rows.tolist():
        children.setdefault(parent, []).append(label)
    known = set(rows[:, 0].tolist())
    roots = [l for l, _, _, p in rows.tolist() if p == 0 or p not in known]
    order: list[int] = []
    stack = list(reversed(roots))
    while stack:
        label = stack.pop()
        order.append(label)
        stack.extend(reversed(children.get(label, [])))
    return order
