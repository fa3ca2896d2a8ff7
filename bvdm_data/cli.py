"""The ``bvdm-data`` command line (also ``python -m bvdm_data``).

Every verb has ``--help`` with an example; bad input ends with a one-line
reason on stderr and a non-zero exit status, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from bvdm_data import __version__
from bvdm_data.arguments import as_device
from bvdm_data.errors import BVDMDataError

EXIT_PROBLEMS = 1
EXIT_BAD_INPUT = 2


def _count(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer of at least ``minimum`` (argparse prints the one-line error and exits 2)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value
    parse.__name__ = f"integer >= {minimum}"
    return parse


def _density(text: str) -> float:
    """An argparse type: a finite, non-negative number of cells per px^2."""
    from bvdm_data.arguments import as_density

    try:
        return as_density(float(text))
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


POSITIVE, NON_NEGATIVE = _count(1), _count(0)


def _verb(sub: argparse._SubParsersAction, name: str, help_text: str, example: str,
          run: Callable[[argparse.Namespace], int]) -> argparse.ArgumentParser:
    parser = sub.add_parser(name, help=help_text, description=help_text,
                            epilog=f"example:\n  {example}", formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.set_defaults(run=run)
    return parser


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


def _label_source(args: argparse.Namespace):
    """The label folder named by --labels, or by --ctc/--seq/--annotation."""
    from bvdm_data.ctc.sequence import LabelFolder, label_folder

    if args.labels:
        return LabelFolder(args.labels)
    if not args.ctc:
        raise BVDMDataError("give --labels FOLDER (a TRA or RES folder) or --ctc DATASET --seq NN")
    return LabelFolder(label_folder(Path(args.ctc), args.seq, args.annotation))


def run_fit_masks(args: argparse.Namespace) -> int:
    import numpy as np

    from bvdm_data.clip import tracks_from_masks
    from bvdm_data.ctc.sequence import LabelFolder
    from bvdm_data.masks import compare_statistics, fit_mask_model, format_comparison, label_video_statistics
    from bvdm_data.masks import simulate_masks
    from bvdm_data.masks.fit import labels_every_cell, per_frame_tracks, refit_shapes

    labels = _label_source(args)
    masks = labels.read_all(progress=True)
    if labels.tracks is None and not args.no_lineage:
        raise BVDMDataError(f"{labels.folder}: no lineage file ({labels.kind.track_file}); "
                            "pass --no-lineage to read each label as one track without divisions")
    model = fit_mask_model(masks, labels.tracks, num_angles=args.num_angles, num_components=args.components,
                           assume_track_ids=args.no_lineage, progress=True)
    print(f"fitted on {labels.folder}: {masks.shape[0]} frames of {masks.shape[1]}x{masks.shape[2]}, "
          f"{0 if labels.tracks is None else len(labels.tracks)} tracks")
    provenance = {"labels": str(labels.folder), "frames": int(masks.shape[0]), "frame_shape": list(masks.shape[1:])}
    shapes = None
    if args.shapes_from:
        folder = LabelFolder(args.shapes_from)
        frames = _frame_range(args.shapes_frames) or folder.frames
        shapes = np.stack([folder.read(f) for f in frames])
        same = [f for f in frames if 0 <= f < masks.shape[0]]
        complete = not same or labels_every_cell(np.stack([folder.read(f) for f in same]), masks[same])
        model = refit_shapes(model, shapes, num_components=args.shape_components, density=complete)
        provenance["shapes"] = {"labels": str(folder.folder), "frames": [int(f) for f in frames],
                                "density_from": "shapes" if complete else "tracks"}
        print(f"shapes and sizes{' and density' if complete else ''} from {folder.folder} frames "
              f"{frames[0]}..{frames[-1]}: median area {np.exp(model.log_area_mean[0]):.0f} px, "
              f"{model.shape_components.shape[1]} shape modes"
              + ("" if complete else f"; it outlines only some of the cells {labels.folder} marks in the same "
                 "frames, so the density stays the tracks'"))
    note = model.real_statistics.get("cycle_law", {})
    if note.get("source") == "division rate with a prior":
        cycle = (f"cycle: only {note['complete_cycles']} complete cycle(s) seen: a gamma law (CV prior "
                 f"{note['cv_prior']}) with mean {note['mean_frames']:.0f} frames = {note['cell_frames']} "
                 f"cell-frames / {note['divisions']} division(s) (thin data)")
    elif note.get("source") == "none":
        cycle = "cycle: no division seen: simulated cells never divide (thin data)"
    else:
        cycle = (f"cycle: {note.get('complete_cycles', '?')} complete cycles, {model.cycle_lengths.size} distinct "
                 f"lengths, {1 - model.cycle_probabilities.sum():.0%} of cells not seen to divide")
    print(f"  {cycle}; "
          f"motion: persistence {model.velocity_persistence:.2f}, noise {model.velocity_noise:.2f} px/frame; "
          f"density {model.density * 1e4:.2f} cells per 100x100 px")
    for fallback in model.real_statistics.get("fallbacks", []):
        print(f"  thin data: {fallback}")
    sim = simulate_masks(model, masks.shape[0], masks.shape[1:], seed=args.seed, progress=True)
    real_tracks = labels.tracks if labels.tracks is not None else tracks_from_masks(masks)
    real = label_video_statistics(masks, real_tracks)
    simulated = label_video_statistics(sim["masks"].numpy(), sim["tracks"].numpy())
    if shapes is not None:
        # Outlines, sizes and density are compared with the segmentation they were fitted on.
        seg_sim = simulate_masks(model, min(3, len(shapes)), shapes.shape[1:], seed=args.seed)["masks"].numpy()
        seg_real, seg_simulated = (label_video_statistics(m, per_frame_tracks(m)) for m in (shapes, seg_sim))
        for name in ("area", "eccentricity", "solidity") + (("density",) if complete else ()):
            real[name], simulated[name] = seg_real[name], seg_simulated[name]
    rows = compare_statistics(real, simulated)
    print("simulated (same size and length, seed %d) vs real:" % args.seed)
    print(format_comparison(rows))
    model.save(args.out, provenance=provenance, report=rows)
    print(f"wrote the masks part of {args.out}")
    return 0


def _frame_range(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        first, last = (int(v) for v in text.split(":"))
    except ValueError as err:
        raise BVDMDataError(f"--frames takes FIRST:STOP (e.g. 0:11), got {text!r}") from err
    return list(range(first, last))


def run_fit_texture(args: argparse.Namespace) -> int:
    import torch

    from bvdm_data.ctc.sequence import open_sequence
    from bvdm_data.diffusion import TrainConfig, UNetConfig, export_texture, extract_cell_crops, train_texture
    from bvdm_data.scene.model import SceneModel

    device = as_device(args.device)
    seq = open_sequence(args.ctc, args.seq, labels=args.annotation)
    crops = extract_cell_crops(seq, size=args.crop_size, frames=_frame_range(args.frames))
    print(f"{len(crops)} cell crops of {args.crop_size} px from {seq.name}")
    work = Path(args.work or f"{args.out.rstrip('/')}.texture-work")
    config = TrainConfig(iterations=args.iterations, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                         bf16=args.bf16)
    result = train_texture(crops, work, config, UNetConfig(), device=device,
                           time_budget_s=None if args.hours is None else args.hours * 3600)
    print(f"step {result.step}/{args.iterations}, {result.seconds / 3600:.2f} h in all; checkpoint {result.checkpoint}")
    if result.step < args.iterations:
        print("stopped by --hours: run the same command again to resume; the bundle is not written yet")
        return 0
    provenance = {"images": str(seq.images.folder), "labels": str(seq.labels.folder), "frames": args.frames or "all"}
    statistics = {**crops.statistics(), "image_dtype": str(seq.images.dtype)}  # files are written back in it
    export_texture(result.checkpoint, args.out, statistics, provenance={**provenance, "crops": len(crops)})
    scene = SceneModel.fit(seq, crops.intensity_range, _frame_range(args.frames))
    scene.save(args.out, provenance=provenance)
    print(f"wrote the texture and scene parts of {args.out} (background {scene.background_mean:.3f}, "
          f"slow variation {scene.background_smooth_std:.3f}, noise {scene.noise_std:.3f})")
    return 0


def run_fit_statistics(args: argparse.Namespace) -> int:
    from bvdm_data.bundle import BundleWriter, resolve_bundle
    from bvdm_data.ctc.sequence import open_sequence
    from bvdm_data.diffusion.crops import extract_cell_crops
    from bvdm_data.diffusion.texture import TextureModel
    from bvdm_data.scene.model import SceneModel

    root = resolve_bundle(args.bundle)
    texture = TextureModel.load(root)
    seq = open_sequence(args.ctc, args.seq, labels=args.annotation)
    frames = _frame_range(args.frames)
    crops = extract_cell_crops(seq, size=texture.crop_size, frames=frames)
    lo, hi = texture.intensity_range
    if any(abs(a - b) > 0.01 * (hi - lo) for a, b in zip(crops.intensity_range, texture.intensity_range)):
        raise BVDMDataError(f"these frames normalise to {crops.intensity_range}, the texture model was trained on "
                            f"{texture.intensity_range}: measure on the frames it was trained on (--frames)")
    statistics = {**crops.statistics(), "image_dtype": str(seq.images.dtype)}
    provenance = {"statistics_from": {"images": str(seq.images.folder), "labels": str(seq.labels.folder),
                                      "frames": args.frames or "all", "crops": len(crops)}}
    writer = BundleWriter(root)
    info = json.loads((Path(root) / "texture" / "texture.json").read_text())
    writer.update_json("texture", "texture.json", {**info, "statistics": statistics}, provenance)
    scene = SceneModel.fit(seq, crops.intensity_range, frames)
    scene.save(root, provenance={**writer.manifest["parts"].get("scene", {}).get("provenance", {}), **provenance})
    profile = ", ".join(f"{v:.2f}" for v in statistics["edge_profile"])
    print(f"{root}: {len(crops)} cells; edge profile (core -> outside) {profile}; unlabelled objects "
          f"{scene.unlabelled_rate:.3f} per labelled cell; background {scene.background_mean:.3f}")
    return 0


def run_fit_flow(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from bvdm_data.flow import FlowConfig, export_flow, extract_flow_pairs, registration_dice, train_flow
    from bvdm_data.flow.train import flow_model
    from bvdm_data.training import TrainConfig, load_checkpoint

    as_device(args.device)
    labels = _label_source(args)
    if labels.tracks is None:
        raise BVDMDataError(f"{labels.folder}: the flow model learns from tracks; no lineage file found")
    masks = labels.read_all(progress=True)
    pairs = extract_flow_pairs(masks, labels.tracks, size=args.crop_size)
    frames = _frame_range(args.frames)
    train_pairs = pairs if frames is None else pairs.select(np.isin(pairs.frame, frames) & np.isin(pairs.frame + 1, frames))
    held = None if frames is None else pairs.select(~np.isin(pairs.frame, frames) & ~np.isin(pairs.frame + 1, frames))
    print(f"{len(train_pairs)} training pairs ({int((train_pairs.kind == 1).sum())} mother->daughter)"
          + ("" if held is None else f", {len(held)} held out"))
    work = Path(args.work or f"{args.out.rstrip('/')}.flow-work")
    config = TrainConfig(iterations=args.iterations, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                         checkpoint_every=100)
    result = train_flow(train_pairs, work, config, FlowConfig(diffeomorphic=args.diffeomorphic),
                        args.smoothness, device=as_device(args.device),
                        time_budget_s=None if args.hours is None else args.hours * 3600)
    print(f"step {result.step}/{args.iterations}, {result.seconds / 3600:.2f} h in all; checkpoint {result.checkpoint}")
    if result.step < args.iterations:
        print("stopped by --hours: run the same command again to resume; the bundle is not written yet")
        return 0
    state = load_checkpoint(result.checkpoint)
    model = flow_model(state["meta"], state["ema"], str(result.checkpoint))
    metrics = {}
    if held is not None and len(held):
        metrics = {f"dice_{k}": v for k, v in registration_dice(model, held).items()}
        metrics["held_out_pairs"] = len(held)
        print("held-out mean Dice: " + ", ".join(f"{k[5:]} {v:.3f}" for k, v in metrics.items() if k.startswith("dice")))
    export_flow(result.checkpoint, args.out, metrics,
                provenance={"labels": str(labels.folder), "frames": args.frames or "all", "pairs": len(train_pairs)})
    print(f"wrote the flow part of {args.out}")
    return 0


def _gen_batch(args: argparse.Namespace) -> int:
    from bvdm_data.synth.pipeline import default_gen_batch

    return args.gen_batch or default_gen_batch(args.device)


def _synthesis(args: argparse.Namespace) -> dict:
    """The painting settings the generation verbs share, as keyword arguments."""
    return dict(t_s=args.t_s, t_f=args.t_f, sampler=args.sampler, stride=args.stride, density=args.density,
                bf16=args.bf16, texture=args.texture, cell_batch=args.cell_batch, edge=args.edge,
                edge_shift=args.edge_shift, unlabelled=args.unlabelled, labels=args.labels)


def _stream(args: argparse.Namespace, num_clips: int):
    from bvdm_data.stream import BVDMStream

    return BVDMStream(args.bundle, clip_len=args.frames, size=tuple(args.size), seed=args.seed, num_clips=num_clips,
                      device=args.device, gen_batch=_gen_batch(args), **_synthesis(args))


def run_generate(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from bvdm_data.ctc.writer import write_ctc_sequence
    from bvdm_data.diffusion.texture import image_units

    if args.clips < 1:
        raise BVDMDataError(f"--clips must be at least 1, got {args.clips}")
    out = Path(args.out)
    existing = [f"{k + 1:02d}" for k in range(args.clips) if (out / f"{k + 1:02d}").exists()]
    if existing and not args.overwrite:
        raise BVDMDataError(f"{out} already holds sequences {existing}; pass --overwrite to replace them")
    stream = _stream(args, args.clips)
    band, dtype = image_units(stream.bundle)
    for clip in tqdm(stream, total=args.clips, desc="generate", unit="clip"):
        seq = f"{clip['meta']['index'] + 1:02d}"
        write_ctc_sequence(clip, out, seq, overwrite=args.overwrite, intensity_range=band, dtype=dtype)
    print(f"wrote {args.clips} CTC sequence(s) of {args.frames} frames to {out}, {dtype} in the fitted data's band "
          f"{band[0]:.0f}..{band[1]:.0f} (check: bvdm-data validate {out})")
    return 0


def run_preview(args: argparse.Namespace) -> int:
    from bvdm_data.preview import contour_frames, write_gif, write_lineage_png

    clip = next(iter(_stream(args, 1)))
    gif = write_gif(contour_frames(clip["video"], clip["masks"]), args.out)
    png = write_lineage_png(clip["tracks"], args.frames, gif.with_name(gif.stem + "_lineage.png"), clip["meta"])
    print(f"wrote {gif} and {png}: {len(clip['tracks'])} tracks, {int((clip['tracks'][:, 3] > 0).sum())} with a parent")
    return 0


def run_cache(args: argparse.Namespace) -> int:
    import os

    import torch.distributed as dist

    from bvdm_data.cache import SHARDS, bundle_hash, shard_path, write_cache, write_shard_manifest
    from bvdm_data.stream import paint_indices
    from bvdm_data.synth import SynthesisSettings, Synthesizer

    if args.clips < 1:
        raise BVDMDataError(f"--clips must be at least 1, got {args.clips}")
    world, rank = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0"))
    if world == 1 and ((Path(args.out) / SHARDS).is_file() or any(Path(args.out).glob("shard-*-of-*"))):
        raise BVDMDataError(f"{args.out} is a sharded cache ({SHARDS}, shard-*); resume it with torchrun and the "
                            "same --nproc_per_node, or write to another path")
    device = args.device
    if world > 1:  # under torchrun: each rank writes its own shard of the same index partition as BVDMStream
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
        if device == "cuda":
            device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    try:
        painting = _synthesis(args)
        synth = Synthesizer(args.bundle, device, SynthesisSettings(**painting))
        size = synth.check_size(tuple(args.size))  # before the cache is created
        meta = {"bundle": synth.bundle.name, "bundle_sha256": bundle_hash(synth.bundle.root), "seed": args.seed,
                "frames": args.frames, "size": list(size), "num_clips": args.clips,
                **{k: v for k, v in painting.items() if k != "cell_batch"}}  # pixels do not depend on cell_batch

        def generate(indices):
            return list(paint_indices(synth, indices, args.seed, 0, args.frames, size, _gen_batch(args)))

        target = shard_path(args.out, rank, world) if world > 1 else Path(args.out)
        written = write_cache(target, meta, range(rank, args.clips, world), generate, args.commit_every,
                              args.compression, progress=rank == 0)
        print(f"rank {rank}/{world}: wrote {written} clip(s) to {target}" if world > 1 else
              f"wrote {written} clip(s) to {target} ({args.clips - written} were already there)")
        if world > 1:
            dist.barrier()
            if rank == 0:
                write_shard_manifest(args.out, world)
        return 0
    finally:
        if world > 1 and dist.is_initialized():
            dist.destroy_process_group()


def _generation_options(p: argparse.ArgumentParser, frames: int, size: tuple[int, int]) -> None:
    p.add_argument("--bundle", default="hela", help="shipped bundle name or bundle folder (default hela)")
    p.add_argument("--frames", type=POSITIVE, default=frames, help=f"frames per clip (default {frames})")
    p.add_argument("--size", type=POSITIVE, nargs=2, default=list(size), metavar=("H", "W"),
                   help=f"frame size (default {size[0]} {size[1]})")
    p.add_argument("--seed", type=NON_NEGATIVE, default=0, help="clip k depends on (seed, k) only (default 0)")
    p.add_argument("--t-s", type=int, default=200, help="SDEdit noise step of a cell's first frame (default 200)")
    p.add_argument("--t-f", type=int, default=10, help="refinement steps after warping (default 10)")
    p.add_argument("--sampler", default="ddpm", choices=["ddpm", "ddim"], help="denoising sampler (default ddpm)")
    p.add_argument("--stride", type=int, default=1, help="DDIM step stride (default 1)")
    p.add_argument("--density", type=_density, help="cells per px^2 in the first frame (default: fitted)")
    p.add_argument("--texture", default="ddpm", choices=["ddpm", "flat", "detail"],
                   help="ddpm; flat: CellCycleGAN-style flat cells, the baseline for ablations; detail: the DDPM's "
                   "fine texture on the flat cell's measured envelope (default ddpm)")
    p.add_argument("--cell-batch", type=POSITIVE, help="at most this many cells per network call, to cap "
                   "memory; pixels do not depend on it (default: 256 on cpu, 4096 on cuda)")
    p.add_argument("--edge", default="by_brightness", choices=["by_brightness", "mean", "blur"],
                   help="a new cell's edge: the profile measured on the real annotation per brightness (default), "
                   "one mean profile, or a flat mask blurred 1 px (ablations)")
    p.add_argument("--edge-shift", type=float, default=0.0, help="px the painted edge sits outside the mask "
                   "beyond the measured profile, negative inside (default 0; see benchmarks/downstream.py "
                   "--calibrate-edge)")
    p.add_argument("--labels", default="auto", choices=["auto", "painted", "masks"], help="painted: each label "
                   "redrawn from its painted cell by the real annotation's measured convention; masks: the simulated "
                   "masks (an ablation); auto (default): painted where the bundle has a measured edge profile")
    p.add_argument("--unlabelled", action="store_true", help="also paint, unlabelled, the nuclei the real "
                   "annotation leaves out, at its measured rate (an ablation: it lowered SEG on HeLa)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast for the networks")
    p.add_argument("--gen-batch", type=POSITIVE, help="clips painted together (default: 1 on cpu, where batching "
                   "measured no gain, 64 on cuda)")


def run_fit(args: argparse.Namespace) -> int:
    """All stages from one CTC sequence with lineage: masks, then flow, then texture and scene."""
    from bvdm_data.masks.fit import crop_size_for
    from bvdm_data.masks.model import MaskModel

    def stage(verb: str, *options: str | None) -> argparse.Namespace:
        """The stage's own parser reads the options, so its defaults hold; ``None`` options are left out."""
        given = [str(o) for o in options if o is not None]
        return build_parser().parse_args([verb, *given])

    where = ["--ctc", args.ctc, "--seq", args.seq, "--annotation", args.annotation, "--out", args.out,
             "--seed", args.seed]
    optional = lambda flag, value: (flag, value) if value is not None else ()  # noqa: E731
    shapes_from = args.shapes_from
    gold = Path(args.ctc) / f"{args.seq}_GT" / "SEG"
    if shapes_from is None and args.annotation == "GT" and gold.is_dir() and any(gold.glob("man_seg*.tif")):
        # TRA marks each cell (on GOWT1 often with a drawn disk); SEG outlines them: shapes follow the outlines.
        shapes_from = str(gold)
        print(f"shapes and sizes from {gold} (the segmentation truth; TRA only marks cells); --shapes-from to change")
    print("== masks ==")
    run_fit_masks(stage("fit-masks", *where, *optional("--shapes-from", shapes_from),
                        *optional("--shapes-frames", args.shapes_frames),
                        *optional("--shape-components", args.shape_components)))
    crop = args.crop_size or crop_size_for(MaskModel.load(args.out))
    print(f"crops of {crop} px for texture and flow ({'--crop-size' if args.crop_size else 'from the cells size'})")
    training = ["--crop-size", crop, "--device", args.device, *optional("--hours", args.hours),
                *optional("--frames", args.frames)]
    print("== flow ==")
    run_fit_flow(stage("fit-flow", *where, *training, "--iterations", args.flow_iterations))
    print("== texture and scene ==")
    return run_fit_texture(stage("fit-texture", *where, *training, "--iterations", args.texture_iterations,
                                 *(("--bf16",) if args.bf16 else ())))


def run_evaluate(args: argparse.Namespace) -> int:
    from bvdm_data.evaluate import evaluate_ctc

    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scores = evaluate_ctc(args.res, args.gt, args.metrics)
    for warning in caught:
        print(f"bvdm-data evaluate: note: {warning.message}", file=sys.stderr)
    print(" ".join(f"{name} {value:.4f}" for name, value in scores.items()))
    return 0


def run_evaluate_realism(args: argparse.Namespace) -> int:
    from bvdm_data.ctc.sequence import open_sequence
    from bvdm_data.diffusion.texture import TextureModel
    from bvdm_data.evaluate.realism import ENCODER_NAME, markdown, split_crops, temporal_rows, texture_rows
    from bvdm_data.synth import SynthesisSettings

    seq = open_sequence(args.ctc, args.seq, labels=args.annotation)
    texture = TextureModel.load(args.bundle)
    held_out = _frame_range(args.held_out)
    held, reference = split_crops(seq, texture.crop_size, held_out, args.cells, args.seed)
    rows = texture_rows(texture, held, reference, [(f"BVDM t_s={args.t_s}", {"t_s": args.t_s})])
    print(f"texture: {len(held)} held-out cells of frames {args.held_out}; lower is closer to real; "
          f"Fréchet on {ENCODER_NAME} features")
    print(markdown(rows, ["setting", "intensity", "spectrum", "frechet"]))
    settings = [(f"BVDM t_f={args.t_f}", SynthesisSettings(t_s=args.t_s, t_f=args.t_f, density=args.density)),
                ("independent frames", SynthesisSettings(t_s=args.t_s, t_f=0, density=args.density,
                                                         independent_frames=True))]
    rows = temporal_rows(args.bundle, seq, texture.intensity_range, args.clips, args.frames, tuple(args.size),
                         settings)
    print("\ntemporal flicker (mean absolute change inside cells between frames, 0..1):")
    print(markdown(rows, ["setting", "flicker"]))
    return 0


def _label_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--labels", help="a TRA folder (man_trackTTT.tif + man_track.txt) or RES folder")
    p.add_argument("--ctc", help="a CTC dataset folder, instead of --labels")
    p.add_argument("--seq", default="01", help="sequence in --ctc (default 01)")
    p.add_argument("--annotation", default="GT", help="annotation in --ctc: GT, RES ... (default GT)")


def _shape_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--shapes-from", help="a per-frame segmentation folder (maskTTT.tif, e.g. 02_ERR_SEG) to take "
                   "outlines, sizes and density from, so that they follow the annotation a segmenter is scored "
                   "against; lineage and motion still come from the tracks")
    p.add_argument("--shapes-frames", help="frames FIRST:STOP of --shapes-from (default all)")
    p.add_argument("--shape-components", type=int, help="shape modes fitted on --shapes-from (default: as --components)")


def _training_options(p: argparse.ArgumentParser, part: str, crop_multiple: int, iterations: int, lr: float) -> None:
    p.add_argument("--out", required=True, help="bundle folder to write (created or updated)")
    p.add_argument("--work", help=f"checkpoint folder (default OUT.{part}-work)")
    p.add_argument("--crop-size", type=int, default=64, help=f"crop size in px, a multiple of {crop_multiple} (default 64)")
    p.add_argument("--iterations", type=int, default=iterations, help=f"training steps (default {iterations})")
    p.add_argument("--batch-size", type=int, default=32, help="examples per step (default 32)")
    p.add_argument("--lr", type=float, default=lr, help=f"AdamW learning rate (default {lr:g})")
    p.add_argument("--hours", type=float, help="stop after this long, leaving a checkpoint")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--seed", type=int, default=0, help="training seed (default 0)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bvdm-data",
        description="Synthetic annotated cell microscopy videos (BVDM) as a PyTorch data source.",
    )
    parser.add_argument("--version", action="version", version=f"bvdm-data {__version__}")
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    p = _verb(sub, "validate", "Check a CTC dataset, sequence, GT, TRA, SEG or RES folder against the format rules.",
              "bvdm-data validate synth/", run_validate)
    p.add_argument("path", help="folder to check")
    p.add_argument("--notes", action="store_true", help="also list legal oddities (empty frames, gaps before children)")
    p.add_argument("--max-problems", type=NON_NEGATIVE, default=200, help="print at most this many (default 200)")

    p = _verb(sub, "info", "Show what a bundle, an LMDB cache or a CTC dataset folder holds.",
              "bvdm-data info hela", run_info)
    p.add_argument("path", help="bundle name or folder, an LMDB cache, or a CTC dataset folder")
    p.add_argument("--json", action="store_true", help="print everything as JSON instead of a summary")

    p = _verb(sub, "generate", "Write synthetic annotated clips as CTC sequences (NN/, NN_GT/TRA, NN_GT/SEG).",
              "bvdm-data generate --bundle hela --out synth/ --clips 4 --frames 20", run_generate)
    p.add_argument("--out", required=True, help="dataset folder to write")
    p.add_argument("--clips", type=POSITIVE, default=1, help="sequences to write (default 1)")
    p.add_argument("--overwrite", action="store_true", help="replace sequences that exist")
    _generation_options(p, 20, (256, 256))

    p = _verb(sub, "preview", "Write an animated GIF of one synthetic clip with coloured instance contours, "
              "and a lineage plot beside it (NAME_lineage.png).",
              "bvdm-data preview --bundle hela --out preview.gif", run_preview)
    p.add_argument("--out", default="preview.gif", help="GIF to write (default preview.gif)")
    _generation_options(p, 8, (256, 256))

    p = _verb(sub, "cache", "Pre-generate clips into an LMDB cache; run again to resume; under torchrun each rank "
              "writes one shard of the same cache.",
              "bvdm-data cache --bundle hela --out synth.lmdb --clips 100000   "
              "(many GPUs: torchrun --nproc_per_node=8 -m bvdm_data cache ... --device cuda)", run_cache)
    p.add_argument("--out", required=True, help="cache folder to write or resume")
    p.add_argument("--clips", type=POSITIVE, required=True, help="clips in the finished cache")
    p.add_argument("--commit-every", type=POSITIVE, default=16, help="clips per transaction (default 16)")
    p.add_argument("--compression", default="zlib", choices=["zlib", "raw"], help="record encoding (default zlib)")
    _generation_options(p, 8, (256, 256))

    p = _verb(sub, "evaluate", "CTC SEG, DET and TRA of a result folder against ground truth (needs the [eval] "
              "extra: py-ctcmetrics, the challenge's own Python metrics).",
              "bvdm-data evaluate --res Fluo-N2DL-HeLa/01_RES --gt Fluo-N2DL-HeLa/01_GT", run_evaluate)
    p.add_argument("--res", required=True, help="result folder (maskTTT.tif + res_track.txt)")
    p.add_argument("--gt", required=True, help="ground-truth folder holding TRA/ (and SEG/ for SEG)")
    p.add_argument("--metrics", nargs="+", default=["SEG", "DET", "TRA"], help="any of SEG DET TRA (default all)")

    p = _verb(sub, "evaluate-realism", "Texture distances (intensity, spectrum, Fréchet) of SDEdit-painted held-out "
              "masks and temporal flicker of synthetic clips, next to real-vs-real and the flat baseline.",
              "bvdm-data evaluate-realism --bundle hela --ctc Fluo-N2DL-HeLa --seq 02 --annotation ERR_SEG "
              "--held-out 11:14", run_evaluate_realism)
    p.add_argument("--bundle", default="hela", help="bundle to evaluate (default hela)")
    p.add_argument("--ctc", required=True, help="CTC dataset folder with the real frames")
    p.add_argument("--seq", default="01", help="sequence (default 01)")
    p.add_argument("--annotation", default="GT", help="labels to find cells (default GT)")
    p.add_argument("--held-out", required=True, help="frames FIRST:STOP the bundle did not learn from")
    p.add_argument("--cells", type=int, default=64, help="held-out cells to paint (default 64)")
    p.add_argument("--t-s", type=int, default=200, help="SDEdit step (default 200)")
    p.add_argument("--t-f", type=int, default=10, help="refinement steps (default 10)")
    p.add_argument("--clips", type=int, default=2, help="synthetic clips for flicker (default 2)")
    p.add_argument("--frames", type=int, default=6, help="frames per synthetic clip (default 6)")
    p.add_argument("--size", type=POSITIVE, nargs=2, default=[192, 192], metavar=("H", "W"),
                   help="synthetic frame size (default 192 192)")
    p.add_argument("--density", type=float, default=3e-4, help="cells per px^2 in synthetic clips (default 3e-4)")
    p.add_argument("--seed", type=int, default=0, help="seed (default 0)")

    p = _verb(sub, "fit", "Fit every part of a bundle (masks, flow, texture, scene) from one CTC sequence with "
              "lineage; resumable: run the same command again after a stop.",
              "bvdm-data fit --ctc path/to/Fluo-N2DL-HeLa --seq 02 --out mybundle/", run_fit)
    p.add_argument("--ctc", required=True, help="CTC dataset folder")
    p.add_argument("--seq", default="01", help="sequence (default 01)")
    p.add_argument("--annotation", default="GT", help="annotation with lineage: GT or RES (default GT)")
    p.add_argument("--frames", help="frames FIRST:STOP to learn from (default all)")
    p.add_argument("--out", required=True, help="bundle folder to write")
    _shape_options(p)
    p.add_argument("--texture-iterations", type=int, default=10_000, help="DDPM training steps (default 10000)")
    p.add_argument("--flow-iterations", type=int, default=2000, help="flow training steps (default 2000)")
    p.add_argument("--crop-size", type=POSITIVE, help="texture and flow crop size in px, a multiple of 16 (default: "
                   "from the cells' size: a 95th-percentile cell plus 20 px, at least 64)")
    p.add_argument("--hours", type=float, help="stop each training after this long (run again to resume)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast for the DDPM")
    p.add_argument("--seed", type=int, default=0, help="seed (default 0)")

    p = _verb(sub, "fit-masks", "Fit the mask model (shape, size, lineage, motion) from a real label video with "
              "lineage, write it into a bundle and report simulated vs real statistics.",
              "bvdm-data fit-masks --labels Fluo-N2DL-HeLa/01_RES --out mybundle/", run_fit_masks)
    _label_options(p)
    p.add_argument("--out", required=True, help="bundle folder to write (created or updated)")
    p.add_argument("--num-angles", type=int, default=32, help="radii per outline (default 32)")
    p.add_argument("--components", type=int, default=6, help="shape modes per phase (default 6)")
    p.add_argument("--no-lineage", action="store_true", help="labels without lineage file: no divisions")
    _shape_options(p)
    p.add_argument("--seed", type=int, default=0, help="seed of the simulation used for the report")

    p = _verb(sub, "fit-statistics", "Measure again, without retraining, what a bundle's texture and scene parts "
              "take from real frames: cell brightness law, edge profile, background, and the nuclei the annotation "
              "leaves out.",
              "bvdm-data fit-statistics --bundle mybundle --ctc Fluo-N2DL-HeLa --seq 02 --annotation ERR_SEG "
              "--frames 0:11", run_fit_statistics)
    p.add_argument("--bundle", required=True, help="bundle folder to update")
    p.add_argument("--ctc", required=True, help="CTC dataset folder with the frames the texture was trained on")
    p.add_argument("--seq", default="01", help="sequence (default 01)")
    p.add_argument("--annotation", default="GT", help="labels: GT, ERR_SEG ... (default GT)")
    p.add_argument("--frames", help="frames FIRST:STOP the texture was trained on (default all)")

    p = _verb(sub, "fit-texture", "Train the texture DDPM on cell-centred crops of real frames (resumable: run "
              "the same command again to continue) and write it, with the scene statistics, into a bundle.",
              "bvdm-data fit-texture --ctc Fluo-N2DL-HeLa --seq 02 --annotation ERR_SEG --frames 0:11 "
              "--out mybundle/ --hours 2", run_fit_texture)
    p.add_argument("--ctc", required=True, help="CTC dataset folder")
    p.add_argument("--seq", default="01", help="sequence (default 01)")
    p.add_argument("--annotation", default="GT", help="labels to find cells: GT, ST, ERR_SEG ... (default GT)")
    p.add_argument("--frames", help="frames FIRST:STOP to crop from (default all; keep some for evaluation)")
    _training_options(p, "texture", crop_multiple=16, iterations=10_000, lr=1e-4)
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (faster on GPUs and AMX CPUs)")

    p = _verb(sub, "fit-flow", "Train the flow model on one cell's masks in consecutive frames (and mother -> "
              "daughter) of a label video with lineage; resumable; writes it into a bundle.",
              "bvdm-data fit-flow --labels Fluo-N2DL-HeLa/01_RES --frames 0:80 --out mybundle/", run_fit_flow)
    _label_options(p)
    p.add_argument("--frames", help="train on pairs inside frames FIRST:STOP; the others are held out for Dice")
    _training_options(p, "flow", crop_multiple=8, iterations=2000, lr=1e-3)
    p.add_argument("--smoothness", type=float, default=0.01, help="weight of the flow smoothness (default 0.01)")
    p.add_argument("--diffeomorphic", action="store_true", help="integrate a velocity field (scaling and squaring)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except (BVDMDataError, OSError, ValueError) as err:
        print(f"bvdm-data {args.verb}: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"bvdm-data {args.verb}: interrupted", file=sys.stderr)
        return 130
