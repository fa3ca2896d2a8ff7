"""Check CTC folders against the format rules and report every problem found.

:func:`validate_path` takes a dataset folder (holding ``01``, ``01_GT`` ...), a
sequence folder, a ``NN_GT`` folder, or a ``TRA``/``SEG``/``RES`` folder, and
returns a list of :class:`Problem` (empty when clean). Each names the file,
frame, label and the rule broken. Legal oddities of the format (empty frames,
a gap between a parent's end and its children's start) are reported as notes.
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from bvdm_data.ctc.naming import IMAGES, RES, SEG, TRA, FrameKind, detect_kind, list_frames
from bvdm_data.ctc.sequence import read_tiff
from bvdm_data.ctc.tracks import parse_track_lines
from bvdm_data.errors import CTCFormatError

ERROR = "error"
NOTE = "note"
SEQUENCE_NAME = re.compile(r"^\d{2,}$")


@dataclass(frozen=True)
class Problem:
    """One violation of a format rule (or, with severity ``note``, a legal oddity)."""

    file: str
    rule: str
    message: str
    frame: int | None = None
    label: int | None = None
    severity: str = ERROR

    def __str__(self) -> str:
        where = [self.file]
        if self.frame is not None:
            where.append(f"frame {self.frame}")
        if self.label is not None:
            where.append(f"label {self.label}")
        return f"{self.severity}: {': '.join(where)}: [{self.rule}] {self.message}"


@dataclass
class FolderSummary:
    """What a frame folder held, for the checks that compare folders."""

    frames: list[int]
    shape: tuple[int, ...] | None


def _frames_or_problem(folder: Path, kind: FrameKind, problems: list[Problem]) -> dict[int, Path]:
    try:
        return list_frames(folder, kind)
    except CTCFormatError as err:
        problems.append(Problem(str(folder), "duplicate frame number", str(err)))
        return {}


def _check_numbering(folder: Path, kind: FrameKind, frames: list[int], problems: list[Problem]) -> None:
    if not frames:
        problems.append(Problem(str(folder), "frames present", f"no {kind.prefix}TTT.tif files"))
        return
    if kind is not SEG:
        expected = set(range(frames[0], frames[-1] + 1))
        missing = sorted(expected - set(frames))
        if missing:
            problems.append(Problem(
                str(folder), "frame numbering gap",
                f"frames {_span_text(missing)} are missing between {frames[0]} and {frames[-1]}",
                frame=missing[0]))
        if frames[0] != 0:
            problems.append(Problem(str(folder), "frame numbering gap",
                                    f"numbering starts at {frames[0]}, not 0", frame=frames[0]))


def _span_text(values: list[int], limit: int = 8) -> str:
    text = ", ".join(str(v) for v in values[:limit])
    return text + (f" and {len(values) - limit} more" if len(values) > limit else "")


def _read_frames(folder: Path, kind: FrameKind, paths: dict[int, Path], problems: list[Problem],
                 labels: bool) -> tuple[tuple[int, ...] | None, dict[int, set[int]]]:
    """Read every frame once: shapes, dtypes, and (for labels) which ids each holds."""
    shape: tuple[int, ...] | None = None
    dtype = None
    ids_per_frame: dict[int, set[int]] = {}
    for frame, path in tqdm(paths.items(), desc=f"validate {folder.name}", leave=False, disable=None):
        try:
            array = read_tiff(path)
        except CTCFormatError as err:
            problems.append(Problem(str(path), "readable file", str(err).split(": ", 1)[-1], frame=frame))
            continue
        if array.ndim != 2:
            problems.append(Problem(str(path), "2-D frames",
                                    f"frame has shape {list(array.shape)}; bvdm-data handles 2-D frames",
                                    frame=frame))
        if shape is None:
            shape, dtype = array.shape, array.dtype
        elif array.shape != shape:
            problems.append(Problem(str(path), "same shape", f"shape {list(array.shape)} differs from "
                                    f"{list(shape)} of the first frame", frame=frame))
        elif array.dtype != dtype:
            problems.append(Problem(str(path), "same dtype",
                                    f"dtype {array.dtype} differs from {dtype} of the first frame", frame=frame))
        if labels:
            if not np.issubdtype(array.dtype, np.integer):
                problems.append(Problem(str(path), "integer labels",
                                        f"label image has dtype {array.dtype}", frame=frame))
                continue
            if array.size and int(array.min()) < 0:
                problems.append(Problem(str(path), "non-negative labels",
                                        f"holds negative label {int(array.min())}", frame=frame))
            ids = np.unique(array)
            ids_per_frame[frame] = set(int(i) for i in ids[ids > 0])
            if not ids_per_frame[frame] and kind is not SEG:
                problems.append(Problem(str(path), "empty frame", "no labelled object (legal)",
                                        frame=frame, severity=NOTE))
    return shape, ids_per_frame


def _check_lineage_text(track_path: Path, problems: list[Problem]) -> np.ndarray:
    try:
        text = track_path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        problems.append(Problem(str(track_path), "readable file", f"cannot read lineage file ({err})"))
        return np.zeros((0, 4), dtype=np.int64)
    rows, bad = parse_track_lines(text)
    for number, reason in bad:
        problems.append(Problem(f"{track_path}:{number}", "malformed line", reason))
    ids, counts = np.unique(rows[:, 0], return_counts=True)
    for label in ids[counts > 1]:
        problems.append(Problem(str(track_path), "unique labels",
                                f"label has {int(counts[ids == label][0])} lines", label=int(label)))
    end_of = {int(l): int(e) for l, _, e, _ in rows}
    for label, begin, end, parent in rows.tolist():
        if label == 0:
            problems.append(Problem(str(track_path), "label positive", "label 0 is the background", label=0))
        if begin > end:
            problems.append(Problem(str(track_path), "begin before end",
                                    f"begins in frame {begin} after its end {end}", label=label))
        if parent == 0:
            continue
        if parent == label:
            problems.append(Problem(str(track_path), "parent known", "is its own parent", label=label))
        elif parent not in end_of:
            problems.append(Problem(str(track_path), "parent known",
                                    f"names parent {parent}, which has no line", label=label))
        elif begin <= end_of[parent]:
            problems.append(Problem(str(track_path), "child after parent",
                                    f"begins in frame {begin} but parent {parent} ends in frame {end_of[parent]}",
                                    label=label))
        elif begin > end_of[parent] + 1:
            problems.append(Problem(str(track_path), "gap before child",
                                    f"begins in frame {begin}, {begin - end_of[parent] - 1} frame(s) after parent "
                                    f"{parent} ends (legal)", label=label, severity=NOTE))
    return rows


def _check_track_presence(folder: Path, rows: np.ndarray, ids_per_frame: dict[int, set[int]],
                          track_path: Path, problems: list[Problem]) -> None:
    seen_in: dict[int, list[int]] = defaultdict(list)
    for frame, ids in ids_per_frame.items():
        for label in ids:
            seen_in[label].append(frame)
    spans = {int(l): (int(b), int(e)) for l, b, e, _ in rows}
    for label in sorted(set(seen_in) - set(spans)):
        problems.append(Problem(str(folder), "label in lineage file",
                                f"appears in frames {_span_text(seen_in[label])} but has no line in "
                                f"{track_path.name}", frame=seen_in[label][0], label=label))
    readable = set(ids_per_frame)
    for label, (begin, end) in spans.items():
        frames = set(seen_in.get(label, ()))
        if not frames:
            problems.append(Problem(str(track_path), "track in masks",
                                    f"listed for frames {begin}..{end} but never appears", label=label))
            continue
        missing = sorted(f for f in range(begin, end + 1) if f in readable and f not in frames)
        if missing:
            problems.append(Problem(str(folder), "present from begin to end",
                                    f"absent from frames {_span_text(missing)} inside its span {begin}..{end}",
                                    frame=missing[0], label=label))
        outside = sorted(f for f in frames if f < begin or f > end)
        if outside:
            problems.append(Problem(str(folder), "present from begin to end",
                                    f"appears in frames {_span_text(outside)} outside its span {begin}..{end}",
                                    frame=outside[0], label=label))


def segmentation_only(folder: Path) -> bool:
    """A result folder named ``..._SEG`` (such as ``NN_ERR_SEG``) holds per-frame ids and no lineage file."""
    return folder.name.upper().endswith("SEG")


def validate_frames(folder: str | os.PathLike, kind: FrameKind | None = None,
                    problems: list[Problem] | None = None) -> FolderSummary:
    """Check one folder of frames (and its lineage file, for TRA and RES).

    A ``maskTTT.tif`` folder named ``..._SEG`` may lack ``res_track.txt``: it
    is then a segmentation without lineage, and only the frames are checked.
    """
    folder = Path(folder)
    problems = [] if problems is None else problems
    kind = kind or detect_kind(folder)
    if kind is None:
        problems.append(Problem(str(folder), "frames present",
                                "no tTTT.tif, man_trackTTT.tif, man_segTTT.tif or maskTTT.tif files"))
        return FolderSummary([], None)
    paths = _frames_or_problem(folder, kind, problems)
    frames = list(paths)
    _check_numbering(folder, kind, frames, problems)
    shape, ids_per_frame = _read_frames(folder, kind, paths, problems, labels=kind is not IMAGES)
    if kind.track_file is not None:
        track_path = folder / kind.track_file
        if not track_path.is_file() and kind is RES and segmentation_only(folder):
            problems.append(Problem(str(folder), "lineage file present",
                                    "no res_track.txt: a segmentation without lineage (legal for *_SEG)",
                                    severity=NOTE))
        elif not track_path.is_file():
            problems.append(Problem(str(track_path), "lineage file present",
                                    f"{kind.track_file} is missing; it must list every label"))
        else:
            rows = _check_lineage_text(track_path, problems)
            _check_track_presence(folder, rows, ids_per_frame, track_path, problems)
            last = frames[-1] if frames else -1
            for label, begin, end, _ in rows.tolist():
                if end > last:
                    problems.append(Problem(str(track_path), "span inside sequence",
                                            f"ends in frame {end}, after the last frame {last}", label=label))
    return FolderSummary(frames, shape)


def _compare(reference: FolderSummary, other: FolderSummary, where: Path, what: str,
             problems: list[Problem], same_frames: bool) -> None:
    if reference.shape and other.shape and reference.shape != other.shape:
        problems.append(Problem(str(where), "image and mask shapes agree",
                                f"{what} frames are {list(other.shape)}, images are {list(reference.shape)}"))
    extra = sorted(set(other.frames) - set(reference.frames))
    if extra:
        problems.append(Problem(str(where), "frames have images",
                                f"{what} frames {_span_text(extra)} have no image", frame=extra[0]))
    if same_frames:
        lacking = sorted(set(reference.frames) - set(other.frames))
        if lacking:
            problems.append(Problem(str(where), "every image annotated",
                                    f"images {_span_text(lacking)} have no {what} frame", frame=lacking[0]))


def _validate_sequence(root: Path, seq: str, problems: list[Problem]) -> None:
    images = validate_frames(root / seq, IMAGES, problems)
    checks = [(root / f"{seq}_GT" / "TRA", TRA, True), (root / f"{seq}_GT" / "SEG", SEG, False),
              (root / f"{seq}_ST" / "SEG", SEG, False)]
    checks += [(p, RES, True) for p in sorted(root.glob(f"{seq}_*")) if detect_kind(p) is RES]
    for folder, kind, same_frames in checks:
        if folder.is_dir():
            summary = validate_frames(folder, kind, problems)
            _compare(images, summary, folder, kind.name.upper(), problems, same_frames)


def validate_path(path: str | os.PathLike) -> list[Problem]:
    """Validate a CTC dataset, sequence, GT, TRA, SEG or RES folder.

    Example:
        >>> problems = validate_path("tests/data/Fluo-N2DL-HeLa")
        >>> [p for p in problems if p.severity == "error"]
        []
    """
    path = Path(path)
    problems: list[Problem] = []
    if not path.exists():
        return [Problem(str(path), "path exists", "no such file or folder")]
    if not path.is_dir():
        return [Problem(str(path), "folder", "expected a CTC folder, got a file")]
    sequences = sorted(p.name for p in path.iterdir()
                       if p.is_dir() and SEQUENCE_NAME.match(p.name) and detect_kind(p) is IMAGES)
    if sequences:
        for seq in sequences:
            _validate_sequence(path, seq, problems)
        # Annotation folders of sequences whose images are not here (results shipped alone).
        for folder in sorted(path.iterdir()):
            seq = folder.name.split("_", 1)[0]
            if folder.is_dir() and "_" in folder.name and seq not in sequences:
                for sub in (folder / "TRA", folder / "SEG", folder):
                    if detect_kind(sub) not in (None, IMAGES):
                        validate_frames(sub, None, problems)
        return problems
    if SEQUENCE_NAME.match(path.name) and detect_kind(path) is IMAGES:
        _validate_sequence(path.parent, path.name, problems)
        return problems
    subfolders = [path / "TRA", path / "SEG"]
    if any(p.is_dir() for p in subfolders):
        for folder in subfolders:
            if folder.is_dir():
                validate_frames(folder, None, problems)
        return problems
    validate_frames(path, None, problems)
    return problems


def errors_only(problems: list[Problem]) -> list[Problem]:
    """The problems that break a rule (notes dropped)."""
    return [p for p in problems if p.severity == ERROR]
