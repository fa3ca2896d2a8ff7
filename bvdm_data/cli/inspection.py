"""Looking at data: ``validate`` (the CTC format rules) and ``info`` (what a bundle, cache or dataset holds)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bvdm_data.cli.common import EXIT_PROBLEMS, NON_NEGATIVE, _verb
from bvdm_data.errors import BVDMDataError


def run_validate(args: argparse.Namespace) -> int:
    from bvdm_data.ctc.validate import ERROR, validate_path

    problems = validate_path(args.path)
    errors = [p for p in problems if p.severity == ERROR]
    shown = problems if args.notes else errors
    for problem in shown[: args.max_problems]:
        print(problem)
    if len(shown) > args.max_problems:
        print(f"... and {len(shown) - args.max_problems} more")
    notes = len(problems) - len(errors)
    status = "OK" if not errors else "FAILED"
    print(f"{status}: {args.path}: {len(errors)} error(s), {notes} note(s)"
          + ("" if args.notes or not notes else " (--notes lists them)"))
    return EXIT_PROBLEMS if errors else 0


def _describe_ctc(path: Path) -> dict:
    from bvdm_data.ctc.naming import IMAGES, detect_kind
    from bvdm_data.ctc.sequence import FrameFolder, LabelFolder

    info: dict = {"ctc_dataset": str(path), "sequences": {}}
    for seq_dir in sorted(p for p in path.iterdir() if p.is_dir() and detect_kind(p) is IMAGES):
        images = FrameFolder(seq_dir)
        entry: dict = {"frames": len(images), "shape": list(images.shape), "dtype": str(images.dtype),
                       "annotations": {}}
        for label_dir in sorted(path.glob(f"{seq_dir.name}_*")):
            for folder in [label_dir / "TRA", label_dir / "SEG", label_dir]:
                kind = detect_kind(folder)
                if kind is None or kind is IMAGES:
                    continue
                labels = LabelFolder(folder)
                ann = {"kind": kind.name, "frames": len(labels)}
                if labels.tracks is not None:
                    ann["tracks"] = int(len(labels.tracks))
                    ann["tracks_with_parent"] = int((labels.tracks[:, 3] > 0).sum())
                entry["annotations"][str(folder.relative_to(path))] = ann
        info["sequences"][seq_dir.name] = entry
    if not info["sequences"]:
        raise BVDMDataError(f"{path}: neither a bundle (manifest.json) nor a CTC dataset folder (NN/tTTT.tif)")
    return info


def run_info(args: argparse.Namespace) -> int:
    from bvdm_data.bundle import MANIFEST, Bundle, resolve_bundle
    from bvdm_data.cache import SHARDS, LMDBClips

    path, bundle = Path(args.path), None
    if (path / "data.mdb").is_file() or (path / SHARDS).is_file():
        cache = LMDBClips(path)
        info = {"cache": str(path), "clips": len(cache), "shards": len(cache.shards), **cache.meta}
    elif path.is_dir() and not (path / MANIFEST).is_file():
        info = _describe_ctc(path)
    else:
        bundle = Bundle.load(resolve_bundle(args.path))
        info = {"bundle": bundle.name, "path": str(bundle.root), **bundle.manifest}
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        print(_summary(info, bundle))
        print("(--json prints everything)")
    return 0


def _summary(info: dict, bundle=None) -> str:
    """A few lines a person reads first: what it is, how big, how it was made."""
    if "cache" in info:
        keys = ("frames", "size", "bundle", "texture", "t_s", "t_f", "sampler", "stride", "density", "labels")
        return (f"LMDB cache {info['cache']}: {info['clips']} clips in {info['shards']} shard(s)\n  "
                + ", ".join(f"{k} {info[k]}" for k in keys if info.get(k) is not None))
    if "ctc_dataset" in info:
        lines = [f"CTC dataset {info['ctc_dataset']}"]
        for name, seq in info["sequences"].items():
            anns = "; ".join(f"{k}: {a['kind']}, {a['frames']} frames"
                             + (f", {a['tracks']} tracks ({a['tracks_with_parent']} with a parent)" if "tracks" in a
                                else "") for k, a in seq["annotations"].items())
            lines.append(f"  {name}: {seq['frames']} frames {seq['shape']} {seq['dtype']}; {anns or 'no annotation'}")
        return "\n".join(lines)
    import numpy as np

    from bvdm_data.masks.model import MaskModel

    parts = info["parts"]
    lines = [f"bundle {info['bundle']} ({info['path']}): parts {', '.join(sorted(parts))}"]
    try:
        masks = MaskModel.load(bundle) if "masks" in parts else None
    except BVDMDataError as err:  # info describes whatever it is given; the summary says what it cannot read
        masks = None
        lines.append(f"  masks: cannot be read as a mask model ({err})")
    if masks is not None:
        made = parts["masks"].get("provenance", {})
        lines.append(f"  cells: {masks.density * 1e4:.2f} per 100x100 px in the first frame, median interphase area "
                     f"{float(np.exp(masks.log_area_mean[0])):.0f} px; lineage from {made.get('labels', '?')}, "
                     f"shapes from {made.get('shapes', {}).get('labels', made.get('labels', '?'))}")
    for name in ("texture", "flow"):
        training = parts.get(name, {}).get("config", {}).get("training", {})
        if training:
            lines.append(f"  {name}: {training.get('steps_done', training.get('iterations'))} steps, "
                         f"{training.get('hours', 0) * 60:.0f} min of training")
    metrics = parts.get("flow", {}).get("config", {}).get("metrics", {})
    if metrics:
        lines.append(f"  flow on held-out pairs: Dice {metrics['dice_flow']:.3f} (identity {metrics['dice_identity']:.3f})")
    card = bundle.root / "MODEL_CARD.md"
    if card.is_file():
        lines.append(f"  model card: {card}")
    return "\n".join(lines)


def add_verbs(sub: argparse._SubParsersAction) -> None:
    """Register this group's verbs on the ``bvdm-data`` parser."""
    p = _verb(sub, "validate", "Check a CTC dataset, sequence, GT, TRA, SEG or RES folder against the format rules.",
              "bvdm-data validate synth/", run_validate)
    p.add_argument("path", help="folder to check")
    p.add_argument("--notes", action="store_true", help="also list legal oddities (empty frames, gaps before children)")
    p.add_argument("--max-problems", type=NON_NEGATIVE, default=200, help="print at most this many (default 200)")

    p = _verb(sub, "info", "Show what a bundle, an LMDB cache or a CTC dataset folder holds.",
              "bvdm-data info hela", run_info)
    p.add_argument("path", help="bundle name or folder, an LMDB cache, or a CTC dataset folder")
    p.add_argument("--json", action="store_true", help="print everything as JSON instead of a summary")

