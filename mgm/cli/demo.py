"""`mgm demo`, `mgm ablate masks|ratio|motion`, `mgm saliency LIST --boxes BOXES.json`,
`mgm recon CHECKPOINT LIST`.

Top level stays light: torch / av are imported inside the commands.
"""
from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

from mgm.masking.options import RATIO_SWEEP, STRATEGIES


def register(sub) -> None:
    d = sub.add_parser(
        "demo", help="does MGM pretraining help with few labels? tube vs MGM vs scratch -> report (md + html)",
        description="Generate (or reuse) the actions set, pretrain a tiny ViT with tube masks and with "
                    "motion-guided masks, fine-tune it and the same ViT from scratch on 4 labelled clips per "
                    "class (3 seeds), probe it (linear, k-NN), and write OUT/report.md, OUT/report.html "
                    "(self-contained), OUT/metrics.json and OUT/figures/*.png. About 7.5–9 minutes on 2 idle cores "
                    "of a recent CPU, more on slower ones (docs/results.md); --quick well under a minute (a smoke test: its numbers mean "
                    "nothing).")
    d.add_argument("--out", default="mgm-demo", help="report directory (default ./mgm-demo)")
    d.add_argument("--quick", action="store_true", help="a smoke test of the whole path (under a minute)")
    d.add_argument("--data", default=None, help="where the generated sets live (default OUT/data)")
    d.add_argument("--jobs", type=int, default=2, help="runs in parallel, one torch thread each (default 2)")
    d.add_argument("--json", action="store_true", help="print the metrics as JSON")
    d.set_defaults(func=_demo)

    st = sub.add_parser(
        "study", help="data-efficiency protocol: pretrain per arm, fine-tune / probe / k-NN with K labels per class",
        description="Generate (or reuse) an unlabeled pretraining set, a labelled pool and a test set of the "
                    "'actions' style; pretrain one encoder per arm (same data, steps, schedule, initial "
                    "weights; only the mask differs) and compare them with training from scratch by fine-tuning, "
                    "linear probe and k-NN on K labelled clips per class. Mean ± std over seeds in "
                    "OUT/table_study.md, OUT/study.png, OUT/summary_study.json; every run in OUT/results.jsonl "
                    "(a second call runs only what is missing; mgm ablate with the same OUT reuses the runs "
                    "they share). See docs/results.md.")
    st.add_argument("--arms", nargs="+", default=["scratch", "random", "tube", "mgm"],
                    choices=("scratch",) + STRATEGIES, help="default: scratch random tube mgm")
    _protocol_arguments(st, "runs/study")
    st.set_defaults(func=_study)

    a = sub.add_parser(
        "ablate", help="the paper's ablations under the study protocol: masks (Table 4e), ratio (Fig. 4a), motion (4b)",
        description="mgm study with arms along one axis: every mask strategy (masks), one strategy at several "
                    "mask ratios (ratio), or codec motion vectors vs DIS optical flow as MGM's guidance (motion); "
                    "scratch (no pretraining) is always the baseline.")
    a.add_argument("kind", choices=("masks", "ratio", "motion"))
    a.add_argument("--strategies", nargs="+", choices=STRATEGIES, default=None,
                   help="masks: the strategies (default all seven)")
    a.add_argument("--strategy", choices=STRATEGIES, default="mgm", help="ratio / motion: the strategy (default mgm)")
    a.add_argument("--ratios", nargs="+", type=float, default=None,
                   help=f"ratio: the ratios (default {' '.join(f'{r:g}' for r in RATIO_SWEEP)})")
    a.add_argument("--sources", nargs="+", choices=("codec", "flow"), default=None,
                   help="motion: the motion sources (default codec flow)")
    _protocol_arguments(a, "runs/ablate")
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
    s.add_argument("--cell", type=int, default=16, help="motion cell size in px (default 16)")
    s.add_argument("--frames", type=int, default=0, help="frames per video (default 0: all)")
    s.add_argument("--stride", type=int, default=1, help="raw frames between sampled frames (default 1)")
    s.add_argument("--limit", type=int, default=0, help="only the first N videos")
    s.add_argument("--json", action="store_true", help="print everything as JSON")
    s.set_defaults(func=_saliency)

    r = sub.add_parser(
        "recon", help="how much of a pretrainer's reconstruction comes from the clip, how much from the mask alone",
        description="Masked-patch loss of a pretraining checkpoint on the first clips of LIST (centre crop), "
                    "per mask strategy, for the real clip, for the clip blanked to its mean colour (the "
                    "encoder sees no content; the decoder still gets the mask), and for predicting 0. A "
                    "motion-guided mask is centred on the motion, so its shape alone tells the decoder "
                    "where the moving thing is: compare pretraining losses across strategies with this. "
                    "See mgm.experiments.recon and docs/results.md.")
    r.add_argument("checkpoint", metavar="CHECKPOINT", help="a pretraining checkpoint with its decoder "
                   "(mgm pretrain's OUT/pretrained.safetensors)")
    r.add_argument("list", metavar="LIST", help="the videos: list / JSON / folder, as data.val")
    r.add_argument("--strategies", nargs="+", choices=STRATEGIES, default=["random", "mgm"],
                   help="mask strategies (default random mgm)")
    r.add_argument("--ratio", type=float, default=None, help="mask ratio (default the checkpoint's mask.ratio)")
    r.add_argument("--config", default=None, metavar="CONFIG",
                   help="preset / YAML for the data and mask settings (default the checkpoint's own config)")
    r.add_argument("--data-root", default="", help="prefix for relative paths in the list")
    r.add_argument("--clips", type=int, default=160, help="the first N clips of LIST (default 160)")
    r.add_argument("--seed", type=int, default=0, help="seed of the mask draws (default 0)")
    r.add_argument("--device", default="auto", help="auto (cuda if available) | cpu | cuda (default auto)")
    r.add_argument("--json", action="store_true", help="print the losses as JSON")
    r.set_defaults(func=_recon)


def _protocol_arguments(p, out: str) -> None:
    """The study protocol's options (``mgm.experiments.study.Study``)."""
    p.add_argument("--out", default=out, help=f"output directory (default {out})")
    p.add_argument("--data", default=None, help="where the generated sets live (default OUT/data)")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--labels", nargs="+", type=int, default=[4, 16], help="labelled clips per class (default 4 16)")
    p.add_argument("--draws", type=int, default=1,
                   help="labelled draws per seed, each its own K-shot subset and fine-tune over the seed's "
                        "pretraining; a seed's number is their mean (default 1)")
    p.add_argument("--shared-pretraining", action="store_true",
                   help="one pretraining per arm (seed 0); the seeds then vary only the fine-tuning")
    p.add_argument("--unlabeled", type=int, default=1200, help="pretraining videos (default 1200)")
    p.add_argument("--pool", type=int, default=16, help="labelled videos per class generated (default 16)")
    p.add_argument("--test", type=int, default=480, help="test videos (default 480)")
    p.add_argument("--ratio", type=float, default=None,
                   help="mask ratio of every arm (default: study: each strategy's paper ratio, random and tube "
                        "0.9, MGM 0.75; masks / motion: 0.75)")
    p.add_argument("--pretrain-steps", type=int, default=2000)
    p.add_argument("--pretrain-ema", type=float, default=0.0, metavar="DECAY",
                   help="pretrainings hand on the moving average of their weights with this decay per step "
                        "(optim.ema; e.g. 0.998 for 2000 steps; default 0: the last weights)")
    p.add_argument("--finetune-steps", type=int, default=300)
    p.add_argument("--probe-epochs", type=int, default=40)
    p.add_argument("--jobs", type=int, default=2, help="runs in parallel, one torch thread each (default 2)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--set", nargs="+", default=[], dest="overrides", metavar="KEY=VALUE",
                   help="config overrides for every run, e.g. --set model.depth=6 mask.jitter=false")


def _run_study(args, arms: dict, title: str, name: str) -> int:
    from mgm.errors import UserError
    from mgm.experiments.progress import Progress, runs_to_do
    from mgm.experiments.runner import run_study
    from mgm.experiments.study import Study, plan, prepare_data
    from mgm.experiments.tables import format_table, write_outputs

    for o in args.overrides:
        if "=" not in o:
            raise UserError(f"{o!r} is not of the form key=value")
    s = Study(out_dir=args.out, arms=arms, seeds=tuple(args.seeds), labels=tuple(args.labels), draws=args.draws,
              pretrain_seeds=(args.seeds[0],) if args.shared_pretraining else None, unlabeled=args.unlabeled,
              pool=args.pool, test=args.test, pretrain_steps=args.pretrain_steps,
              pretrain_ema=args.pretrain_ema, finetune_steps=args.finetune_steps,
              probe_epochs=args.probe_epochs, jobs=args.jobs,
              data_dir=args.data or "", overrides=list(args.overrides))

    # the bar on a terminal; in a log file (a cluster job) only the line per run, which says the time left
    total = sum(map(len, plan(s)))
    todo = runs_to_do(s)        # read once: the bar's total and the line about the reused runs
    bar = Progress.for_study(s, title, enabled=sys.stderr.isatty(), todo=todo)

    def progress(i, n, label, reused):
        bar.run_done(i, n, label, reused)
        if not (reused or args.json):          # the reused runs were said in one line, before
            bar.write(f"[{title} {i}/{n}, {bar.eta()}] done: {label}")

    try:
        earlier = total - len(todo)
        if earlier and not args.json:
            bar.write(f"[{title}] {earlier} of {total} runs were finished by an earlier call: "
                      f"reused (their records: {Path(s.out_dir) / 'results.jsonl'})")
        bar.stage("data")
        data = prepare_data(s, progress=False)
        bar.stage("pretrain, fine-tune, probe", bar.data_seconds)
        rows = run_study(s, progress=progress, notice=lambda line: bar.write(f"{title}: {line}"), data=data)
    finally:
        bar.close()
    summary = write_outputs(s, rows, title=title, name=name)
    if args.json:
        print(json.dumps(summary, default=str))
    else:
        print(format_table(summary, "finetune_top1"))
        print(f"wrote {args.out}/table_{name}.md (fine-tune, linear probe, k-NN), {args.out}/{name}.png, "
              f"{args.out}/summary_{name}.json, {args.out}/results.jsonl")
    return 0


def _study(args) -> int:
    from mgm.experiments.study import SCRATCH, arms_for

    strategies = [a for a in args.arms if a != SCRATCH]
    return _run_study(args, arms_for("study", strategies=strategies, baseline=SCRATCH in args.arms, ratio=args.ratio),
                      "mgm study", "study")


def _ablate(args) -> int:
    from mgm.errors import UserError
    from mgm.experiments.study import arms_for

    for r in (args.ratios or []) + ([args.ratio] if args.ratio else []):
        if not 0 < r < 1:
            raise UserError(f"ratios must be in (0, 1), got {r}")
    arms = arms_for(args.kind, strategies=args.strategies, ratios=args.ratios, sources=args.sources,
                    strategy=args.strategy, ratio=args.ratio)
    return _run_study(args, arms, f"mgm ablate {args.kind}", args.kind)


def _demo(args) -> int:
    from mgm.experiments.demo import run_demo
    from mgm.experiments.write import verdict

    m = run_demo(args.out, quick=args.quick, data_dir=args.data, jobs=args.jobs)
    if args.json:
        print(json.dumps(m, default=str))
        return 0
    k = m["labels_per_class"]
    print(f"fine-tune top-1 with {k} labelled clips per class, mean ± std over seeds {m['seeds']} "
          f"(chance {m['chance']:.1f}%):")
    for arm, c in m["finetune"].items():
        print(f"  {arm:<8} {c['mean']:5.1f} ± {c['std']:4.1f}   seeds: {', '.join(f'{v:.1f}' for v in c['values'])}")
    print(verdict(m))
    reused = f" ({m['runs_reused']} runs reused from an earlier call)" if m.get("runs_reused") else ""
    print(f"{m['wall_s']:.0f} s{reused}; report: {args.out}/report.html  ({args.out}/report.md, metrics.json, figures/)")
    return 0


def _saliency(args) -> int:
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
    res = saliency(paths, boxes, keys, motion=args.motion, cell=args.cell, frames=args.frames,
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


def _recon(args) -> int:
    import torch

    from mgm.config import config_from_dict, load_config
    from mgm.errors import UserError
    from mgm.experiments.recon import format_recon, run_recon
    from mgm.models.checkpoint import load_checkpoint

    model = load_checkpoint(args.checkpoint, kind="pretrainer")
    saved = model.checkpoint_info.get("config")
    if args.config:
        cfg = load_config(args.config)
    elif saved:
        cfg = config_from_dict(saved)
    else:
        raise UserError(f"{args.checkpoint}: no saved config (not written by mgm pretrain); pass --config "
                        "PRESET for the data and mask settings")
    spec = model.spec
    if (cfg.data.num_frames, cfg.data.size) != (spec.num_frames, spec.img_size):
        raise UserError(f"{args.checkpoint}: the model takes {spec.num_frames} frames of {spec.img_size}², the "
                        f"config gives {cfg.data.num_frames} of {cfg.data.size}²")
    cfg.data.val, cfg.data.root = args.list, args.data_root
    if args.ratio is not None:
        cfg.mask.ratio = args.ratio
    if args.clips < 1:
        raise UserError(f"--clips must be >= 1, got {args.clips}")
    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        model = model.to(device)
    except (RuntimeError, AssertionError) as e:      # no CUDA build / no device
        raise UserError(f"--device {args.device}: {str(e).splitlines()[0]}") from None
    result = run_recon(model, cfg, args.strategies, clips=args.clips, seed=args.seed)
    if args.json:
        print(json.dumps(result))
    else:
        print(format_recon(result))
    return 0
