"""`mgm masks VIDEO`: the masks of one clip drawn over its frames (paper Fig. 2 / Fig. 5).

Top level stays light: numpy / torch / av are imported inside the command.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from mgm.masking.options import DEFAULT_OPTIONS, INITS, STRATEGIES


def register(sub) -> None:
    p = sub.add_parser(
        "masks", help="draw the masks of a clip over its frames (one row per strategy with 'all')",
        description="Decode a clip with its motion, make masks and draw them over the sampled frames. "
                    "The clip is centre-cropped to a square and resized to --size; the patch grid is "
                    "(frames/tubelet, size/patch, size/patch).")
    p.add_argument("video", nargs="?", help="video file (or --synthetic)")
    p.add_argument("--synthetic", action="store_true",
                   help="use a generated H.264 clip: a moving textured square and static distractors")
    p.add_argument("--strategy", default="all", choices=STRATEGIES + ("all",), help="default: all")
    p.add_argument("--ratio", type=float, default=0.75, help="mask ratio (default 0.75)")
    p.add_argument("--frames", type=int, default=16, help="sampled frames (default 16)")
    p.add_argument("--stride", type=int, default=2, help="raw frames between sampled frames (default 2)")
    p.add_argument("--start", type=int, default=None, help="first raw frame (default: random with --seed)")
    p.add_argument("--size", type=int, default=224, help="square side in px after crop+resize (default 224)")
    p.add_argument("--patch", type=int, default=16, help="patch size in px (default 16)")
    p.add_argument("--tubelet", type=int, default=2, help="frames per temporal index (default 2)")
    p.add_argument("--motion", default="auto", choices=("auto", "codec", "flow", "none"),
                   help="motion source for read_clip (default auto)")
    p.add_argument("--seed", type=int, default=0, help="seed of the clip start and the masks")
    o = DEFAULT_OPTIONS
    p.add_argument("--topk", type=int, default=o["topk"], help="MGM: centre on the top-K motion patches (default 1)")
    p.add_argument("--no-jitter", dest="jitter", action="store_false", help="no aspect/scale jitter")
    p.add_argument("--init", default=o["init"], choices=INITS,
                   help="MGM first index: random position (paper) or centred on motion")
    p.add_argument("--velocity", type=float, default=o["velocity"],
                   help="SMM max speed, patches per index (default 1)")
    p.add_argument("--scale-step", type=float, default=o["scale_step"],
                   help="SMM/MGM max shape step in patches (default 1)")
    p.add_argument("--min-motion", type=float, default=o["min_motion"], help="MGM: px of motion that count as motion")
    p.add_argument("--out", help="write the picture: .png/.jpg (grid), .gif or .mp4 (animation)")
    p.add_argument("--tile", type=int, default=160, help="tile side in px in the picture (default 160)")
    p.add_argument("--save-npy", metavar="FILE",
                   help="write the bool mask (T', Hp, Wp); with 'all': (strategies, T', Hp, Wp) in the "
                        "order printed")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from mgm.data import transforms
    from mgm.errors import UserError
    from mgm.masking import STRATEGIES, make_mask, motion_to_patch_magnitude

    if args.video is None and not args.synthetic:
        raise UserError("give a VIDEO or --synthetic")
    if not 0 < args.ratio < 1:
        raise UserError(f"--ratio must be in (0, 1), got {args.ratio}")
    if args.frames % args.tubelet or args.size % args.patch:
        raise UserError("--frames must divide by --tubelet and --size by --patch")
    from mgm.video import VideoError, read_clip

    tmp = None
    truth = None
    path = args.video
    if args.synthetic:
        from mgm.video.synthetic import SyntheticObject, make_synthetic_video

        tmp = tempfile.TemporaryDirectory()
        path = str(Path(tmp.name) / "synthetic.mp4")
        n = args.frames * args.stride + 8
        truth = make_synthetic_video(path, 224, 224, n, objects=[
            SyntheticObject(size=(48, 48), start=(40, 70), velocity=(140 / n, 60 / n))], distractors=2,
            seed=args.seed)
        args.start = 0 if args.start is None else args.start
    try:
        clip = read_clip(path, num_frames=args.frames, stride=args.stride, start=args.start,
                         motion=args.motion, cell=args.patch, seed=args.seed)
    except VideoError as e:
        raise UserError(str(e)) from e
    if clip.frames.shape[0] != args.frames:
        raise UserError(f"got {clip.frames.shape[0]} frames, asked for {args.frames}")
    h, w = clip.frames.shape[1:3]
    frames, motion, valid = transforms.apply_clip(clip.frames, clip.motion, clip.motion_valid,
                                                  transforms.center_crop(h, w, args.size), args.patch)
    grid = (args.frames // args.tubelet, args.size // args.patch, args.size // args.patch)
    mag, mag_valid = motion_to_patch_magnitude(motion, valid, grid, args.tubelet)
    names = STRATEGIES if args.strategy == "all" else (args.strategy,)
    options = dict(topk=args.topk, jitter=args.jitter, init=args.init, velocity=args.velocity,
                   scale_step=args.scale_step, min_motion=args.min_motion)
    masks, rows = {}, []
    for name in names:
        m, info = make_mask(name, grid=grid, ratio=args.ratio, magnitude=mag, magnitude_valid=mag_valid,
                            seed=args.seed, return_info=True, **options)
        masks[name] = m
        row = {"strategy": name, "masked": int(m.sum()), "masked_per_index": [int(x) for x in m.sum((1, 2))],
               "fallback": info.fallback}
        if info.centres is not None:
            row["centres"] = [[float(a), float(b)] for a, b in info.centres]
        if truth is not None:
            c = truth.centres[clip.indices][:, 0]                                  # (T, 2) px
            scale = args.size / 224.0
            hits = []
            for t in range(grid[0]):
                cx, cy = c[t * args.tubelet:(t + 1) * args.tubelet].mean(0) * scale
                py, px = int(cy // args.patch), int(cx // args.patch)
                if 0 <= py < grid[1] and 0 <= px < grid[2]:
                    hits.append(bool(m[t, py, px]))
            row["object_centre_covered"] = float(np.mean(hits)) if hits else None
        rows.append(row)
    summary = {"video": str(args.video or "synthetic"), "motion_source": clip.motion_source,
               "frames": [int(i) for i in clip.indices], "grid": list(grid), "ratio": args.ratio,
               "motion_found": [bool(x) for x in (mag_valid & (mag >= args.min_motion)).any((1, 2))],
               "strategies": rows}
    if args.save_npy:
        arr = masks[names[0]] if len(names) == 1 else np.stack([masks[n] for n in names])
        np.save(args.save_npy, arr)
        summary["npy"] = {"path": args.save_npy, "shape": list(arr.shape), "order": list(names)}
    if args.out:
        from mgm.masking.plot import save_visual

        try:
            save_visual(args.out, frames, masks, args.tubelet, mag, mag_valid, tile=args.tile)
        except ValueError as e:
            raise UserError(str(e)) from e
        summary["out"] = args.out
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"{summary['video']}: frames {summary['frames'][0]}..{summary['frames'][-1]} "
              f"(stride {args.stride}), motion {clip.motion_source}, grid {tuple(grid)}, ratio {args.ratio}; "
              f"indices with motion: {sum(summary['motion_found'])}/{grid[0]}")
        cov = truth is not None
        print(f"{'strategy':<11} {'masked':>6}  per index{'  object covered' if cov else ''}  note")
        for r in rows:
            per = sorted(set(r["masked_per_index"]))
            per_s = str(per[0]) if len(per) == 1 else f"{per[0]}..{per[-1]}"
            c = (f"  {r['object_centre_covered']:>14.0%}" if cov and r.get("object_centre_covered") is not None
                 else ("  " + " " * 14 if cov else ""))
            note = f"no motion: fell back to {r['fallback']}" if r["fallback"] else ""
            print(f"{r['strategy']:<11} {r['masked']:>6}  {per_s:>9}{c}  {note}")
        if args.save_npy:
            print(f"wrote {args.save_npy} {tuple(summary['npy']['shape'])} bool (True = masked)"
                  + (f", order {', '.join(names)}" if len(names) > 1 else ""))
        if args.out:
            print(f"wrote {args.out}")
    if tmp is not None:
        tmp.cleanup()
    return 0
