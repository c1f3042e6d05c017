"""`mgm demo`, `mgm ablate masks|ratio|motion`, `mgm saliency LIST --boxes BOXES.json`.

Top level stays light: torch / av are imported inside the commands.
"""
from __future__ import annotations

import json
import math

from mgm.masking.options import STRATEGIES


def register(sub) -> None:
    d = sub.add_parser(
        "demo", help="synthetic motion classes -> MGM pretraining -> linear probe -> report (md + html)",
        description="Generate (or reuse) the synthetic motion-classes set, pretrain a tiny ViT with "
                    "motion-guided masks, linearly probe it, and write OUT/report.md, OUT/report.html "
                    "(self-contained), OUT/metrics.json and OUT/figures/*.png. About 10 minutes on 2 "
                    "CPU cores; --quick about 1-2 minutes (a smoke test: its metrics mean nothing).")
    d.add_argument("--out", default="mgm-demo", help="report directory (default ./mgm-demo)")
    d.add_argument("--quick", action="store_true", help="small set, one pretraining epoch")
    d.add_argument("--data", default=None, help="dataset directory to generate or reuse (default OUT/data)")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--norm-pix", action="store_true",
                   help="VideoMAE's per-patch normalised targets (default: pixel targets; see docs/results.md)")
    d.add_argument("--videos", type=int, default=None, help=argparseSUPPRESS())
    d.add_argument("--epochs", type=int, default=None, help="pretraining epochs (default 60; --quick 1)")
    d.add_argument("--probe-epochs", type=int, default=None, help=argparseSUPPRESS())
    d.add_argument("--max-steps", type=int, default=None, help=argparseSUPPRESS())
    d.add_argument("--json", action="store_true", help="print the metrics as JSON")
    d.set_defaults(func=_demo)

    a = sub.add_parser(
        "ablate", help="mini ablations on the synthetic set: masks (Table 4e), ratio (Fig. 4a), motion (Table 4b)",
        description="Identical tiny pretraining per variant (only the mask changes), then linear probe "
                    "(and --finetune-epochs of fine-tuning) on the synthetic motion classes; a table "
                    "(mean ± std over seeds) and a plot in OUT. Finished runs are kept in "
                    "OUT/results.jsonl and skipped when the command is run again.")
    a.add_argument("kind", choices=("masks", "ratio", "motion"),
                   help="masks: strategies; ratio: MGM mask ratio 0.5..0.95; motion: codec vs DIS flow")
    a.add_argument("--strategies", nargs="+", choices=STRATEGIES, default=None,
                   help="masks: which strategies (default all seven); ratio/motion: the strategy (default mgm)")
    a.add_argument("--ratios", nargs="+", type=float, default=None,
                   help="ratio: the ratios (default 0.5 0.6 0.75 0.85 0.9 0.95); others: the ratio (0.75)")
    a.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    a.add_argument("--epochs", type=int, default=4, help="pretraining epochs (default 4)")
    a.add_argument("--probe-epochs", type=int, default=30)
    a.add_argument("--finetune-epochs", type=int, default=1, help="0: no fine-tuning (default 1)")
    a.add_argument("--max-steps", type=int, default=0, help="cap pretraining (and fine-tuning) steps")
    a.add_argument("--videos", type=int, default=240, help="synthetic videos to generate if --data is new")
    a.add_argument("--data", default=None, help="synthetic set to generate or reuse (default OUT/data)")
    a.add_argument("--out", default="runs/ablate", help="output directory (default runs/ablate)")
    a.add_argument("--no-baseline", dest="baseline", action="store_false",
                   help="masks: leave out the no-pretraining (random init) row")
    a.add_argument("--norm-pix", action="store_true",
                   help="VideoMAE's per-patch normalised targets (default: pixel targets; see docs/results.md)")
    a.add_argument("--workers", type=int, default=1, help="DataLoader workers (default 1)")
    a.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's)")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=_ablate)

    s = sub.add_parser(
        "saliency", help="motion saliency r_bbox / r_non_bbox of videos with object boxes",
        description="Average motion magnitude inside the object boxes over outside, per video and "
                    "overall (the paper's saliency score). BOXES: mgm data synth's boxes.json (per-frame "
                    "xyxy pixel boxes) or Something-Else bounding_box_annotations.json. See "
                    "mgm.experiments.saliency for the formats.")
    s.add_argument("list", metavar="LIST", help="VideoMAE list / SSv2 JSON / folder of the videos")
    s.add_argument("--boxes", required=True, metavar="BOXES.json")
    s.add_argument("--data-root", default="", help="prefix for relative paths in the list")
    s.add_argument("--motion", default="auto", choices=("auto", "codec", "flow"))
    s.add_argument("--grid", type=int, default=16, help="motion cell size in px (default 16)")
    s.add_argument("--frames", type=int, default=0, help="frames per video (default 0: all)")
    s.add_argument("--stride", type=int, default=1, help="raw frames between sampled frames (default 1)")
    s.add_argument("--limit", type=int, default=0, help="only the first N videos")
    s.add_argument("--json", action="store_true", help="print everything as JSON")
    s.set_defaults(func=_saliency)


def argparseSUPPRESS():
    import argparse

    return argparse.SUPPRESS


def _demo(args) -> int:
    from mgm.experiments.demo import run_demo

    m = run_demo(args.out, quick=args.quick, data_dir=args.data, seed=args.seed, progress=True,
                 norm_pix_loss=args.norm_pix,
                 videos=args.videos, epochs=args.epochs, probe_epochs=args.probe_epochs,
                 max_steps=args.max_steps)
    if args.json:
        print(json.dumps(m, default=str))
        return 0
    lp, pre = m["linprobe"], m["pretrain"]
    print(f"linear probe top-1 {lp['top1']:.1f}% (random-init encoder {lp['random_init_top1']:.1f}%, "
          f"chance {lp['chance_top1']:.1f}%); pretraining loss {pre['first_loss']:.3f} -> "
          f"{pre['final_loss']:.3f} in {pre['steps']} steps; {m['wall_seconds']:.0f} s")
    print(f"report: {args.out}/report.html  ({args.out}/report.md, metrics.json, figures/)")
    return 0


def _ablate(args) -> int:
    import dataclasses
    from pathlib import Path

    from mgm.errors import UserError
    from mgm.experiments.ablate import Recipe, format_table, run_ablation
    from mgm.experiments.demo import ensure_dataset

    out = Path(args.out)
    data = Path(args.data) if args.data else out / "data"
    if args.kind != "masks" and args.strategies and len(args.strategies) != 1:
        raise UserError(f"ablate {args.kind}: give one strategy (--strategies mgm)")
    if args.kind != "ratio" and args.ratios and len(args.ratios) != 1:
        raise UserError(f"ablate {args.kind}: give one ratio (--ratios 0.75)")
    for r in args.ratios or []:
        if not 0 < r < 1:
            raise UserError(f"ratios must be in (0, 1), got {r}")
    ensure_dataset(data, args.videos)
    base = Recipe(data_dir=str(data), out_dir=str(out), epochs=args.epochs, probe_epochs=args.probe_epochs,
                  finetune_epochs=args.finetune_epochs, max_steps=args.max_steps,
                  finetune_max_steps=args.max_steps, workers=args.workers, threads=args.threads,
                  norm_pix_loss=args.norm_pix)
    variants = None
    if args.kind == "masks":
        variants = args.strategies
        if args.ratios:
            base = dataclasses.replace(base, ratio=args.ratios[0])
    else:
        if args.strategies:
            base = dataclasses.replace(base, strategy=args.strategies[0])
        if args.kind == "ratio":
            variants = args.ratios
        elif args.ratios:
            base = dataclasses.replace(base, ratio=args.ratios[0])

    def progress(i, n, label):
        if not args.json and i < n:
            print(f"[ablate {args.kind} {i + 1}/{n}] {label}", flush=True)

    res = run_ablation(args.kind, str(data), str(out), variants=variants, seeds=args.seeds, base=base,
                       baseline=args.baseline and args.kind == "masks", progress=progress)
    if args.json:
        print(json.dumps({"kind": res.kind, "summary": res.summary}, default=str))
    else:
        print(format_table(res))
        print(f"wrote {out}/table_{args.kind}.md, {out}/ablate_{args.kind}.png, {out}/results.jsonl")
    return 0


def _saliency(args) -> int:
    import os
    from pathlib import Path

    from mgm.errors import UserError
    from mgm.data.annotations import AnnotationError, load_annotations
    from mgm.experiments.saliency import load_boxes_file, saliency

    try:
        ann = load_annotations(args.list, root=args.data_root)
        boxes = load_boxes_file(args.boxes)
    except (AnnotationError, OSError, ValueError) as e:
        raise UserError(str(e)) from None
    samples = ann.samples[: args.limit] if args.limit else ann.samples
    base = Path(args.data_root) if args.data_root else (Path(args.list).parent if Path(args.list).is_file()
                                                         else Path(args.list))
    paths, keys = [], []
    for smp in samples:
        paths.append(str(smp.path))
        rel = os.path.relpath(str(smp.path), str(base))
        keys.append(rel if not rel.startswith("..") else str(smp.path))
    res = saliency(paths, boxes, keys, motion=args.motion, grid=args.grid, frames=args.frames,
                   stride=args.stride, progress=not args.json)
    if args.json:
        print(json.dumps({"videos": res.videos, "overall": res.overall}, default=float))
        return 0 if res.overall["videos"] else 1
    f = lambda x: "–" if x is None or not math.isfinite(x) else f"{x:.3f}"  # noqa: E731
    print(f"{'video':<32} {'score':>7} {'r_bbox':>8} {'r_non':>8} {'frames':>6}")
    for r in res.videos:
        if "error" in r:
            print(f"{r['path']:<32} skipped: {r['error']}")
        else:
            print(f"{r['path']:<32} {f(r['score']):>7} {f(r['r_bbox']):>8} {f(r['r_non_bbox']):>8} {r['frames']:>6}")
    o = res.overall
    print(f"overall (pooled cells): {f(o['score'])}  (r_bbox {f(o['r_bbox'])} px, r_non_bbox "
          f"{f(o['r_non_bbox'])} px); mean of per-video scores {f(o['mean_video_score'])}, median "
          f"{f(o['median_video_score'])}; {o['videos']} videos, {o['skipped']} skipped")
    return 0 if o["videos"] else 1
