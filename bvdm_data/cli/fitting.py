"""Fitting a bundle from real data: ``fit`` (every stage), ``fit-masks``, ``fit-texture``, ``fit-flow`` and
``fit-statistics``."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from bvdm_data.arguments import as_device
from bvdm_data.cli.common import (POSITIVE, _frame_range, _label_options, _label_source, _shape_options,
                                  _training_options, _verb)
from bvdm_data.errors import BVDMDataError


def run_fit_masks(args: argparse.Namespace) -> int:
    import numpy as np

    from bvdm_data.clip import tracks_from_masks
    from bvdm_data.ctc.sequence import LabelFolder
    from bvdm_data.masks import compare_statistics, fit_mask_model, format_comparison, label_video_statistics
    from bvdm_data.masks import simulate_masks
    from bvdm_data.masks.contours import measure_instances
    from bvdm_data.masks.fit import (calibrate_division_rate, calibrated, labels_every_cell, per_frame_tracks,
                                     refit_shapes, track_targets)

    labels = _label_source(args)
    masks = labels.read_all(progress=True)
    if labels.tracks is None and not args.no_lineage:
        raise BVDMDataError(f"{labels.folder}: no lineage file ({labels.kind.track_file}); "
                            "pass --no-lineage to read each label as one track without divisions")
    model = fit_mask_model(masks, labels.tracks, num_angles=args.num_angles, num_components=args.components,
                           assume_track_ids=args.no_lineage, progress=True)
    tracked = measure_instances(masks)  # once: calibration targets and the report both measure the tracked video
    print(f"fitted on {labels.folder}: {masks.shape[0]} frames of {masks.shape[1]}x{masks.shape[2]}, "
          f"{0 if labels.tracks is None else len(labels.tracks)} tracks")
    provenance = {"labels": str(labels.folder), "frames": int(masks.shape[0]), "frame_shape": list(masks.shape[1:])}
    shapes = None
    if args.shapes_from:
        folder = LabelFolder(args.shapes_from)
        frames = _frame_range(args.shapes_frames) or folder.frames
        shapes = np.stack([folder.read(f) for f in frames])
        same = [i for i, f in enumerate(frames) if 0 <= f < masks.shape[0]]  # frames the tracks also mark
        complete = not same or labels_every_cell(shapes[same], masks[[frames[i] for i in same]])
        outlined = measure_instances(shapes, num_angles=model.num_angles)  # once: the fit and the report
        model = refit_shapes(model, shapes, num_components=args.shape_components, density=complete,
                             touching=False if args.touching is None else args.touching,
                             tracked=track_targets(masks, tracked), inst=outlined)
        provenance["shapes"] = {"labels": str(folder.folder), "frames": [int(f) for f in frames],
                                "density_from": "shapes" if complete else "tracks"}
        print(f"shapes and sizes{' and density' if complete else ''} from {folder.folder} frames "
              f"{frames[0]}..{frames[-1]}: median area {np.exp(model.log_area_mean[0]):.0f} px, "
              f"{model.shape_components.shape[1]} shape modes"
              + ("" if complete else f"; it outlines only some of the cells {labels.folder} marks in the same "
                 "frames, so the density stays the tracks'"))
    if shapes is None:
        model = calibrated(model, masks.shape[1:], **track_targets(masks, tracked))
    fix = model.real_statistics["calibration"]
    print("calibrated by simulation (" + ", ".join(f"{k} {v:.4g}" for k, v in fix["targets"].items()) + "): "
          + ", ".join(f"{k} {fix['before'][k]:.4g} -> {fix['after'][k]:.4g}" for k in fix["after"]
                      if fix["after"][k] != fix["before"][k]))
    min_cycle = model.mitosis_frames + model.newborn_frames  # shorter cycles are tracking artefacts
    real_tracks = labels.tracks if labels.tracks is not None else tracks_from_masks(masks)
    real = label_video_statistics(masks, real_tracks, inst=tracked, min_cycle=min_cycle)
    model = calibrate_division_rate(model, float(real["divisions_per_cell_frame"][0]), seed=args.seed)
    fix = model.real_statistics.get("division_calibration")
    if fix:
        print(f"division rate calibrated by simulation: {fix['share_of_residual']:.0%} of the {fix['residual']:.0%} "
              f"not seen to divide divide at the observed lengths ({fix['simulated']:.4f} vs "
              f"{fix['target']:.4f} per cell-frame)")
    if args.min_separation is not None:  # last, so that no other law is calibrated against the hand-set spacing
        spacing = {"min_separation": args.min_separation, "fitted": model.min_separation, "source": "--min-separation"}
        model = replace(model, min_separation=args.min_separation,
                        real_statistics={**model.real_statistics, "spacing": spacing})
        print(f"spacing set by hand: min_separation {spacing['fitted']:.3f} -> {args.min_separation:.3f}")
    note = model.real_statistics.get("cycle_law", {})
    if note.get("source") == "division rate with a prior":
        cycle = (f"cycle: only {note['complete_cycles']} complete cycle(s) seen: a gamma law (CV prior "
                 f"{note['cv_prior']}) with mean {note['mean_frames']:.0f} frames = {note['cell_frames']} "
                 f"cell-frames / {note['divisions']} division(s) (thin data)")
    elif note.get("source") == "none":
        cycle = "cycle: no division seen: simulated cells never divide (thin data)"
    else:
        cycle = (f"cycle: {note.get('complete_cycles', '?')} complete cycles ({note.get('short_cycles_left_out', 0)} "
                 f"shorter than {note.get('min_length', 1)} frames left out), {model.cycle_lengths.size} distinct "
                 f"lengths, {1 - model.cycle_probabilities.sum():.0%} of cells never divide")
    print(f"  {cycle}; "
          f"motion: persistence {model.velocity_persistence:.2f}, noise {model.velocity_noise:.2f} px/frame; "
          f"density {model.density * 1e4:.2f} cells per 100x100 px")
    for fallback in model.real_statistics.get("fallbacks", []):
        print(f"  thin data: {fallback}")
    sim = simulate_masks(model, masks.shape[0], masks.shape[1:], seed=args.seed, progress=True)
    simulated = label_video_statistics(sim["masks"].numpy(), sim["tracks"].numpy(), min_cycle=min_cycle)
    if shapes is not None:
        # Outlines, sizes and density are compared with the segmentation they were fitted on.
        seg_sim = simulate_masks(model, min(3, len(shapes)), shapes.shape[1:], seed=args.seed)["masks"].numpy()
        seg_real = label_video_statistics(shapes, per_frame_tracks(shapes), inst=outlined)
        seg_simulated = label_video_statistics(seg_sim, per_frame_tracks(seg_sim))
        for name in ("area", "eccentricity", "solidity") + (("density",) if complete else ()):
            real[name], simulated[name] = seg_real[name], seg_simulated[name]
    rows = compare_statistics(real, simulated)
    print("simulated (same size and length, seed %d) vs real:" % args.seed)
    print(format_comparison(rows))
    model.save(args.out, provenance=provenance, report=rows)
    print(f"wrote the masks part of {args.out}")
    return 0


def run_fit_texture(args: argparse.Namespace) -> int:
    from bvdm_data.ctc.sequence import open_sequence
    from bvdm_data.diffusion import TrainConfig, UNetConfig, export_texture, extract_cell_crops, train_texture

    device = as_device(args.device)
    seq = open_sequence(args.ctc, args.seq, labels=args.annotation)
    crops = extract_cell_crops(seq, size=args.crop_size, frames=_frame_range(args.frames))
    print(f"{len(crops)} cell crops of {args.crop_size} px from {seq.name}")
    work = Path(args.work or f"{args.out.rstrip('/')}.texture-work")
    config = TrainConfig(iterations=args.iterations, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                         bf16=args.bf16)
    if args.channels < 1:
        raise BVDMDataError(f"--channels must be at least 1, got {args.channels}")
    unet, initial = UNetConfig(channels=args.channels), None
    if args.init_from:
        unet, initial = _texture_to_fine_tune(args.init_from, crops)
    result = train_texture(crops, work, config, unet, device=device,
                           time_budget_s=None if args.hours is None else args.hours * 3600, initial=initial)
    print(f"step {result.step}/{args.iterations}, {result.seconds / 3600:.2f} h in all; checkpoint {result.checkpoint}")
    if result.step < args.iterations:
        print("stopped by --hours: run the same command again to resume; the bundle is not written yet")
        return 0
    statistics, scene, source = _measure(_statistics_sequence(args), args.crop_size, crops.intensity_range,
                                         _frame_range(args.frames))
    provenance = {"images": str(seq.images.folder), "labels": str(seq.labels.folder), "frames": args.frames or "all"}
    export_texture(result.checkpoint, args.out, statistics,
                   provenance={**provenance, "crops": len(crops), "statistics_from": source})
    scene.save(args.out, provenance={**provenance, "statistics_from": source})
    print(f"wrote the texture and scene parts of {args.out} (background {scene.background_mean:.3f}, "
          f"slow variation {scene.background_smooth_std:.3f}, noise {scene.noise_std:.3f})")
    return 0


def _texture_to_fine_tune(name: str, crops):
    """The U-Net settings and EMA weights of bundle ``name``'s texture, checked against ``crops``."""
    from bvdm_data.bundle import Bundle
    from bvdm_data.diffusion import UNetConfig

    bundle = Bundle.load(name)
    info = bundle.read_json("texture", "texture.json")
    if info["crop_size"] != crops.size:
        raise BVDMDataError(f"--init-from {name}: its texture was trained on {info['crop_size']} px crops, these are "
                            f"{crops.size} px; pass --crop-size {info['crop_size']}")
    texture = bundle.part("texture")
    where = f"{bundle.name} texture, ema.pt sha256 {texture['files']['texture/ema.pt'][:12]}"
    print(f"fine-tuning {where}, trained {texture['config']['training'].get('steps_done', '?')} steps")
    return UNetConfig.from_dict(info["unet"]), (where, bundle.read_state_dict("texture", "ema.pt"))


def _measure(seq, crop_size: int, intensity: tuple[float, float], frames: list[int] | None):
    """What the texture and scene parts measure on real frames (brightness law, edge profile, label law,
    background, unlabelled objects), in the texture's units; with where it was measured."""
    from bvdm_data.ctc.outlines import OutlinedLabels
    from bvdm_data.diffusion.crops import extract_cell_crops
    from bvdm_data.scene.model import SceneModel
    from bvdm_data.synth.annotation import fit_label_law

    frames = None if frames is None else [f for f in frames if f in seq.labels.paths]
    crops = extract_cell_crops(seq, size=crop_size, frames=frames, intensity=intensity)
    statistics = {**crops.statistics(), "image_dtype": str(seq.images.dtype)}  # files are written back in it
    statistics["label_law"] = fit_label_law(crops.images[:, 0].double().numpy(), crops.masks.numpy(),
                                            crops.empty.numpy())
    scene = SceneModel.fit(seq, intensity, frames)
    labels = repr(seq.labels) if isinstance(seq.labels, OutlinedLabels) else str(seq.labels.folder)
    source = {"images": str(seq.images.folder), "labels": labels, "frames": frames or "all", "crops": len(crops)}
    return statistics, scene, source


def _statistics_sequence(args: argparse.Namespace):
    """The sequence whose labels the statistics are measured with: ``--annotation``, completed by ``--outlines``."""
    from bvdm_data.ctc.outlines import with_outlines
    from bvdm_data.ctc.sequence import open_sequence

    seq = open_sequence(args.ctc, args.seq, labels=args.annotation)
    if not args.outlines:
        return seq
    markers = seq.labels.folder.name
    seq = with_outlines(seq, args.outlines)
    labels = seq.labels
    print(f"cells' edges from {labels.outlines.folder} ({len(labels)} frames); cells it leaves out are masked by "
          f"their {markers} markers grown by {labels.rim_px:.1f} px (percentile {labels.rim_quantile:g} "
          f"of how far an outline reaches beyond its marker)")
    return seq


def _outline_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--outlines", help="a segmentation that outlines only some cells (e.g. the CTC's gold NN_GT/SEG) "
                   "to measure cells' edges and brightness on, when --annotation only marks cells (GOWT1's TRA "
                   "markers cover 58 %% of a nucleus); the other marked cells are kept out of the background")


def run_fit_statistics(args: argparse.Namespace) -> int:
    from bvdm_data.bundle import BundleWriter, resolve_bundle
    from bvdm_data.diffusion.texture import TextureModel

    root = resolve_bundle(args.bundle)
    texture = TextureModel.load(root)
    statistics, scene, source = _measure(_statistics_sequence(args), texture.crop_size, texture.intensity_range,
                                         _frame_range(args.frames))
    provenance = {"statistics_from": source}
    writer = BundleWriter(root)
    info = json.loads((Path(root) / "texture" / "texture.json").read_text())
    writer.update_json("texture", "texture.json", {**info, "statistics": statistics}, provenance)
    scene.save(root, provenance={**writer.manifest["parts"].get("scene", {}).get("provenance", {}), **provenance})
    profile = ", ".join(f"{v:.2f}" for v in statistics["edge_profile"])
    law = statistics["label_law"]
    shares = ", ".join(f"{v:.2f}" for v in law["share"])
    agree = sum(i * n for i, n in zip(law["iou"], law["cells"])) / sum(law["cells"])
    print(f"label law: outline at {shares} of the mean contrast (dim -> bright), IoU with the annotation {agree:.3f}")
    print(f"{root}: {source['crops']} cells; edge profile (core -> outside) {profile}; unlabelled objects "
          f"{scene.unlabelled_rate:.3f} per labelled cell; background {scene.background_mean:.3f}; glow "
          f"{scene.glow_weight:.3f} of each cell's light over {scene.glow_sigma:g} px; noise grain {scene.noise_sigma} px (y, x)")
    return 0


def run_fit_flow(args: argparse.Namespace) -> int:
    import numpy as np

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


def run_fit(args: argparse.Namespace) -> int:
    """All stages from one CTC sequence with lineage: masks, then flow, then texture and scene."""
    from bvdm_data.masks.fit import crop_size_for
    from bvdm_data.masks.model import MaskModel

    from bvdm_data.cli import build_parser

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
                        *optional("--shape-components", args.shape_components),
                        *optional("--touching", None if args.touching is None else
                                  "real" if args.touching is True else args.touching),
                        *optional("--min-separation", args.min_separation)))
    crop = args.crop_size or crop_size_for(MaskModel.load(args.out))
    print(f"crops of {crop} px for texture and flow ({'--crop-size' if args.crop_size else 'from the cells size'})")
    training = ["--crop-size", crop, "--device", args.device, *optional("--hours", args.hours),
                *optional("--frames", args.frames)]
    print("== flow ==")
    run_fit_flow(stage("fit-flow", *where, *training, "--iterations", args.flow_iterations))
    print("== texture and scene ==")
    # Gold SEG outlines what TRA only marks: cells' edges and brightness are measured on the outlines.
    outlines = str(gold) if shapes_from == str(gold) else None
    return run_fit_texture(stage("fit-texture", *where, *training, "--iterations", args.texture_iterations,
                                 *(("--bf16",) if args.bf16 else ()), *optional("--outlines", outlines)))


def add_verbs(sub: argparse._SubParsersAction) -> None:
    """Register this group's verbs on the ``bvdm-data`` parser."""
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
    p.add_argument("--frames", help="frames FIRST:STOP to measure on (default all; keep test frames out)")
    _outline_option(p)

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
    p.add_argument("--channels", type=int, default=16, help="the U-Net's base width (default 16: 0.9 M parameters; "
                   "parameters grow with its square); with --init-from, the bundle's")
    p.add_argument("--init-from", metavar="BUNDLE", help="fine-tune this bundle's texture (name or folder; same crop "
                   "size) instead of starting from random weights; --work must be a new folder")
    _outline_option(p)

    p = _verb(sub, "fit-flow", "Train the flow model on one cell's masks in consecutive frames (and mother -> "
              "daughter) of a label video with lineage; resumable; writes it into a bundle.",
              "bvdm-data fit-flow --labels Fluo-N2DL-HeLa/01_RES --frames 0:80 --out mybundle/", run_fit_flow)
    _label_options(p)
    p.add_argument("--frames", help="train on pairs inside frames FIRST:STOP; the others are held out for Dice")
    _training_options(p, "flow", crop_multiple=8, iterations=2000, lr=1e-3)
    p.add_argument("--smoothness", type=float, default=0.01, help="weight of the flow smoothness (default 0.01)")
    p.add_argument("--diffeomorphic", action="store_true", help="integrate a velocity field (scaling and squaring)")
