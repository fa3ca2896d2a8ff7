"""Making clips: ``generate`` (CTC sequences), ``preview`` (a GIF) and ``cache`` (an LMDB cache, sharded
under torchrun)."""

from __future__ import annotations

import argparse
from dataclasses import asdict, is_dataclass
from pathlib import Path

from bvdm_data.cli.common import NON_NEGATIVE, POSITIVE, _density, _sampler_options, _verb, share
from bvdm_data.errors import BVDMDataError
from bvdm_data.photometric import CHANGES, Photometric  # loaded with the package already: no start-up cost

# painting settings added after caches existed, with the value those caches were painted with (the meta of a cache
# names such a setting only when it differs, so older caches still resume)
PAINTED_BEFORE = {"compile": False, "pressed": 0.0, "brightness": "marginal", "contrast": None, "formation": None,
                  "magnification": None}


def _gen_batch(args: argparse.Namespace) -> int:
    from bvdm_data.synth.pipeline import default_gen_batch

    return args.gen_batch or default_gen_batch(args.device)


def formation(changes: list[str]) -> Photometric | None:
    """``--formation``'s choice as ``SynthesisSettings.formation``: the changes named, or None for ``none``."""
    if "none" not in changes:
        return Photometric().only(changes)
    if len(changes) > 1:
        others = ", ".join(c for c in changes if c != "none")
        raise BVDMDataError(f"--formation none draws nothing; it cannot go with {others}")
    return None


def _synthesis(args: argparse.Namespace) -> dict:
    """The painting settings the generation verbs share, as keyword arguments."""
    from bvdm_data.diffusion.sample import resolve_stride

    # resolved here: caches record the stride taken
    return dict(t_s=args.t_s, t_f=args.t_f, sampler=args.sampler, stride=resolve_stride(args.sampler, args.stride),
                density=args.density, bf16=args.bf16, compile=args.compile, texture=args.texture,
                cell_batch=args.cell_batch, edge=args.edge,
                edge_shift=args.edge_shift, unlabelled=args.unlabelled, glow=args.glow, labels=args.labels,
                overlap=args.overlap, pressed=args.pressed, brightness=args.brightness, contrast=args.contrast,
                formation=formation(args.formation), magnification=args.magnification)


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
    from bvdm_data.synth.pipeline import FORMATION_NOISE

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
                # pixels do not depend on cell_batch; a setting added later is recorded only when it differs
                # from what caches made before it were painted with, so that they lack the key and still resume
                **{k: asdict(v) if is_dataclass(v) else v for k, v in painting.items()
                   if k != "cell_batch" and (k not in PAINTED_BEFORE or v != PAINTED_BEFORE[k])},
                **({"formation_noise": FORMATION_NOISE} if painting["formation"] is not None else {})}

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
    _sampler_options(p)
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
    p.add_argument("--labels", default="auto", choices=["auto", "painted", "profile", "masks"], help="painted: each "
                   "label redrawn from its painted cell at the threshold the real annotation uses (the bundle's label "
                   "law); profile: redrawn at the edge profile's midpoint (the rule before the label law); masks: the "
                   "simulated masks (an ablation); auto (default): painted where the bundle has a label law, else "
                   "profile where it has an edge profile and --edge is not blur, else masks")
    p.add_argument("--unlabelled", action="store_true", help="also paint, unlabelled, the nuclei the real "
                   "annotation leaves out, at its measured rate (an ablation: it lowered SEG on HeLa)")
    p.add_argument("--glow", action="store_true", help="add the cells' out-of-focus glow at the share and spread "
                   "measured on the real frames (the scene's glow law; an ablation: it left SEG unchanged on HeLa)")
    p.add_argument("--overlap", default="add", choices=["add", "average"], help="where cells' soft footprints "
                   "meet: add their light, as fluorescence does (default), or average their paintings (a dark seam "
                   "between touching cells; the rule before 2026-11-27)")
    p.add_argument("--pressed", type=share, default=1.0, help="share of touching cell pairs painted pressed against "
                   "each other: no dark seam where they meet, their light giving way across the contact line "
                   "(default 1; 0: free cells whose light adds, the rule until 2026-11-27)")
    p.add_argument("--brightness", default="marginal", choices=["marginal", "by_area"], help="draw each new cell's "
                   "brightness from the real cells' law (marginal, default) or from the law of real cells of its "
                   "size (by_area: small cells hold the dimmest and the brightest nuclei)")
    p.add_argument("--contrast", type=float, nargs=2, metavar=("LO", "HI"), help="scale each clip's light above the "
                   "background by a gain drawn log-uniformly from LO..HI, as another recording normalised by its own "
                   "percentiles would show it (domain randomisation, an ablation: it cost SEG on HeLa and GOWT1; labels "
                   "unchanged; default: off)")
    p.add_argument("--formation", nargs="+", choices=[*CHANGES, "none"], default=list(CHANGES), metavar="CHANGE",
                   help="draw each clip's image formation anew, as another microscope would record the same cells: "
                   "contrast x0.5..2, blur 0.3..2 px, noise x1..4, each with probability 0.5 (bvdm_data.Photometric's "
                   "ranges; labels unchanged); name the changes to draw (default: contrast blur noise), or none to "
                   "show every clip as the fitted recording would")
    p.add_argument("--magnification", type=float, nargs=2, metavar=("LO", "HI"), help="show each clip's cells at a "
                   "magnification drawn log-uniformly from LO..HI (another objective or binning: cells and labels "
                   "larger or smaller, the frame the same size; below 1 a larger field is painted; default: off)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--bf16", action="store_true", help="run the DDPM in bf16 (weights and activations)")
    p.add_argument("--compile", action="store_true", help="torch.compile the DDPM (CUDA graphs on a GPU): 10-25 s "
                   "to compile, then faster denoising calls (2.3x painting on an H200); pixels change by float rounding")
    p.add_argument("--gen-batch", type=POSITIVE, help="clips painted together (default: 1 on cpu, where batching "
                   "measured no gain, 64 on cuda)")


def add_verbs(sub: argparse._SubParsersAction) -> None:
    """Register this group's verbs on the ``bvdm-data`` parser."""
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

