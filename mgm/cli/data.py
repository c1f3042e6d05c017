"""`mgm data check|transcode|synth|subset`: validate, re-encode, generate and subset datasets."""
from __future__ import annotations

import json
import os
from pathlib import Path


def _default_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def register(sub) -> None:
    p = sub.add_parser("data", help="datasets: check, transcode to H.264, generate the demo set, subsets")
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION")

    c = dsub.add_parser("check", help="validate every video of a list / JSON / folder")
    c.add_argument("source", metavar="LIST_OR_DIR",
                   help="VideoMAE list, SSv2 JSON, class-folder tree or folder of videos")
    c.add_argument("--data-root", default="", help="prefix for relative paths in the list")
    c.add_argument("--format", default="auto", choices=["auto", "list", "ssv2", "folders", "unlabeled"],
                   help="how to read LIST_OR_DIR (default auto: from the path)")
    c.add_argument("--splits", default="", help="folder of official UCF101/HMDB51 split files")
    c.add_argument("--split-id", type=int, default=1, help="official split number (default 1)")
    c.add_argument("--split", default="train", choices=["train", "test"],
                   help="which part of an official split to check")
    c.add_argument("--write-clean", metavar="OUT", default="",
                   help="write the videos that passed as a VideoMAE list")
    c.add_argument("--json", action="store_true", help="print the findings as one JSON object")
    c.add_argument("--workers", type=int, default=_default_workers(), help="parallel processes (default: up to 8 cores)")
    c.add_argument("--min-frames", type=int, default=16,
                   help="fewer frames than this is bad (default 16)")
    c.add_argument("--span", type=int, default=64,
                   help="warn when a video is shorter than one clip (frames x stride, default 64)")
    c.add_argument("--deep", action="store_true",
                   help="decode every video to the end (finds truncated files; slower)")
    c.set_defaults(func=_check)

    t = dsub.add_parser("transcode", help="re-encode a dataset to H.264 (codec motion vectors)")
    t.add_argument("source", metavar="SRC_LIST", help="list, SSv2 JSON or folder (as for check)")
    t.add_argument("out_dir", metavar="OUT_DIR", help="where the H.264 videos and the new list go")
    t.add_argument("--data-root", default="", help="prefix for relative paths in the list")
    t.add_argument("--format", default="auto", choices=["auto", "list", "ssv2", "folders", "unlabeled"],
                   help="how to read SRC_LIST (default auto)")
    t.add_argument("--workers", type=int, default=_default_workers(), help="parallel encoders (default: up to 8 cores)")
    t.add_argument("--crf", type=int, default=23, help="libx264 quality, lower is better (default 23)")
    t.add_argument("--preset", default="veryfast", help="libx264 speed preset (default veryfast)")
    t.add_argument("--json", action="store_true", help="print the counts as one JSON object")
    t.set_defaults(func=_transcode)

    s = dsub.add_parser("synth", help="generate a synthetic dataset: stick-figure actions (the demo's) or motion classes")
    s.add_argument("out_dir", metavar="OUT_DIR", help="videos/, lists, classes.txt and boxes.json go here")
    s.add_argument("--videos", type=int, default=400, help="how many clips (default 400)")
    s.add_argument("--size", type=int, default=112, help="width = height in pixels (default 112)")
    s.add_argument("--frames", type=int, default=32, help="frames per clip (default 32)")
    s.add_argument("--seed", type=int, default=0, help="the same seed gives the same bytes (default 0)")
    s.add_argument("--style", default="natural", choices=["natural", "bold", "actions"],
                   help="actions: stick figures doing 8 actions (mgm demo's and mgm study's set); natural / bold: motion classes, low / high contrast")
    s.add_argument("--workers", type=int, default=_default_workers(), help="parallel processes (default: up to 8 cores)")
    s.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    s.set_defaults(func=_synth)

    b = dsub.add_parser(
        "subset", help="a class or sample subset of a list (Mini-K200, few-shot splits, UCF14/HMDB14)",
        description="Write a subset of LIST as a VideoMAE list (path label) with classes.txt beside it, "
                    "and print the videos per class. --classes N keeps N classes: the N with most "
                    "videos (--choose frequent, the default; ties to the lower class id; how "
                    "Mini-Kinetics-200 takes K400's largest classes) or N drawn with --seed (--choose "
                    "random). --classes FILE keeps the classes named in FILE (one name or id per line, "
                    "in the order that numbers them), or a built-in set: ucf14, hmdb14, ucf7, hmdb7. "
                    "A class subset renumbers labels 0..N-1. --per-class K then keeps K videos of each "
                    "class drawn with --seed (a K-shot split is inside the 2K-shot split of the same "
                    "seed). Deterministic.")
    b.add_argument("source", metavar="LIST", help="list, SSv2 JSON or class-folder tree (as for check)")
    b.add_argument("--out", required=True, metavar="OUT", help="the subset list (classes.txt goes beside it)")
    b.add_argument("--classes", metavar="FILE|N|SET", default=None,
                   help="class file, number of classes, or built-in set (default: every class)")
    b.add_argument("--choose", default="frequent", choices=["frequent", "random"],
                   help="with --classes N: the N largest classes (default) or a seeded draw")
    b.add_argument("--per-class", type=int, default=0, metavar="K", help="videos kept per class (0: all)")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--data-root", default="",
                   help="prefix of relative paths in LIST; OUT's paths are then relative to it (else absolute)")
    b.add_argument("--format", default="auto", choices=["auto", "list", "ssv2", "folders", "unlabeled"])
    b.add_argument("--splits", default="",
                   help="folder of official UCF101/HMDB51 split files (LIST is then the video tree)")
    b.add_argument("--split-id", type=int, default=1)
    b.add_argument("--split", default="train", choices=["train", "test"],
                   help="which part of an official split to read")
    b.add_argument("--json", action="store_true", help="print the counts as one JSON object")
    b.set_defaults(func=_subset)

    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _user_errors(fn):
    def run(args):
        from mgm.errors import UserError
        from mgm.data.annotations import AnnotationError

        try:
            return fn(args)
        except AnnotationError as e:
            raise UserError(str(e)) from None

    return run


@_user_errors
def _check(args) -> int:
    from mgm.data.check import check_dataset, format_report, write_clean

    rep, ann, recs = check_dataset(
        args.source, root=args.data_root, format=args.format, workers=max(1, args.workers),
        min_frames=args.min_frames, span=args.span, deep=args.deep,
        progress=not args.json,
        split=args.split, splits=args.splits, split_id=args.split_id)
    if args.write_clean:
        rep["clean_list"] = args.write_clean
        rep["clean_count"] = write_clean(args.write_clean, ann, recs, root=args.data_root)
    if args.json:
        print(json.dumps(rep))
    else:
        print(format_report(rep))
        if args.write_clean:
            print(f"wrote {rep['clean_count']} videos to {args.write_clean}")
    return 1 if rep["bad"] else 0


@_user_errors
def _transcode(args) -> int:
    from mgm.data.transcode import transcode_dataset

    rep = transcode_dataset(args.source, args.out_dir, root=args.data_root, format=args.format,
                            workers=max(1, args.workers), crf=args.crf, preset=args.preset,
                            progress=not args.json)
    if args.json:
        print(json.dumps(rep))
    else:
        print(f"{rep['total']} videos: {rep['transcoded']} transcoded, {rep['skipped']} already done, "
              f"{len(rep['failed'])} failed; annotations: {rep['annotations']}")
        for f in rep["failed"]:
            print(f"FAILED {f['path']}: {f['reason']}")
    return 1 if rep["failed"] else 0


def _synth(args) -> int:
    from mgm.errors import UserError
    from mgm.data.synth import make_synth_dataset

    if args.videos < 1 or args.size < 32 or args.frames < 2:
        raise UserError("need --videos >= 1, --size >= 32 and --frames >= 2")
    rep = make_synth_dataset(args.out_dir, videos=args.videos, size=args.size, frames=args.frames,
                             seed=args.seed, workers=max(1, args.workers), progress=not args.json, style=args.style)
    if args.json:
        print(json.dumps(rep))
    else:
        print(f"{rep['dir']}: {rep['train']} train + {rep['val']} val videos, {rep['classes']} classes "
              f"(train.txt, val.txt, classes.txt, boxes.json)")
    return 0


@_user_errors
def _subset(args) -> int:
    from mgm.data.annotations import load_annotations
    from mgm.data.subset import format_counts, make_subset, write_subset
    from mgm.errors import UserError

    classes = args.classes
    if classes is not None and classes.isdigit() and not Path(classes).exists():
        classes = int(classes)
    if classes is None and not args.per_class:
        raise UserError("nothing to subset: give --classes FILE|N|SET and/or --per-class K")
    fmt = "folders" if args.splits and args.format == "auto" else args.format    # split files: a class tree
    ann = load_annotations(args.source, root=args.data_root, format=fmt, split=args.split,
                           splits=args.splits, split_id=args.split_id)
    sub = make_subset(ann, classes, args.per_class, args.seed, args.choose)
    out = write_subset(sub, args.out, root=args.data_root)
    if args.json:
        print(json.dumps({"out": str(out), "videos": len(sub.samples), "classes": sub.classes,
                          "counts": {sub.classes[k]: v for k, v in sorted(sub.counts.items())},
                          "available": {sub.classes[k]: v for k, v in sorted(sub.available.items())}}))
    else:
        print(format_counts(sub))
        print(f"wrote {out} and {out.parent / 'classes.txt'}")
    return 0
