"""`mgm motion VIDEO`: decode one clip with its motion and summarise it.

Top level stays light (no av / cv2 / torch): ``mgm --help`` imports it.
"""
from __future__ import annotations

import json
import sys
import tempfile


def register(sub) -> None:
    p = sub.add_parser(
        "motion",
        help="decode a clip with its codec motion vectors and summarise it",
        description="Decode NUM frames STRIDE apart with their motion (codec vectors, or DIS "
                    "optical flow for codecs without vectors) and print a summary.",
    )
    p.add_argument("video", nargs="?", metavar="VIDEO", help="video file (omit with --synthetic)")
    p.add_argument("--synthetic", action="store_true",
                   help="generate a sample H.264 clip with known motion in a temp dir and use it")
    p.add_argument("--frames", type=int, default=16, help="frames to sample (default 16)")
    p.add_argument("--stride", type=int, default=4, help="raw frames between samples (default 4)")
    p.add_argument("--start", type=int, default=None, help="first raw frame (default: random, see --seed)")
    p.add_argument("--seed", type=int, default=None, help="seed for the random start")
    p.add_argument("--cell", type=int, default=16, help="motion cell size in px (default 16)")
    p.add_argument("--motion", choices=["auto", "codec", "flow", "none"], default="auto",
                   help="motion source (default auto: codec vectors, flow if the codec has none)")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.add_argument("--save", metavar="NPZ", help="save frames, motion, validity, indices to an .npz")
    p.add_argument("--plot", metavar="PNG", help="draw the sampled frames with motion magnitude and arrows")
    p.set_defaults(func=run)


def summarize(clip, info) -> dict:
    import numpy as np

    mag = np.linalg.norm(clip.motion, axis=-1)
    v = clip.motion_valid
    return {
        "video": str(info.path),
        "codec": info.codec,
        "width": info.width,
        "height": info.height,
        "fps": round(float(info.fps), 3),
        "num_frames": int(info.num_frames),
        "num_frames_exact": bool(info.num_frames_exact),
        "sampled": [int(i) for i in clip.indices],
        "frame_types": clip.frame_types,
        "raw_start": int(clip.raw_start),
        "motion_source": clip.motion_source,
        "grid": [int(x) for x in clip.motion.shape[1:3]],
        "valid_fraction": round(float(v.mean()), 3) if v.size else 0.0,
        "mean_magnitude": round(float(mag[v].mean()), 3) if v.any() else 0.0,
        "max_magnitude": round(float(mag[v].max()), 3) if v.any() else 0.0,
    }


def run(args) -> int:
    from mgm.errors import UserError
    from mgm.video import VideoError, probe_video, read_clip

    if args.frames < 1 or args.stride < 1 or args.cell < 1:
        raise UserError("--frames, --stride and --cell must be >= 1")
    if bool(args.video) == bool(args.synthetic):
        raise UserError("give a VIDEO or --synthetic (one of them)")
    with tempfile.TemporaryDirectory(prefix="mgm-motion-") as tmp:
        path = args.video
        if args.synthetic:
            from mgm.video.synthetic import make_synthetic_video

            path = f"{tmp}/synthetic.mp4"
            make_synthetic_video(path, width=224, height=224, num_frames=96, fps=25, distractors=2,
                                 seed=0 if args.seed is None else args.seed)
        try:
            info = probe_video(path)
            clip = read_clip(path, num_frames=args.frames, stride=args.stride, start=args.start,
                             motion=args.motion, cell=args.cell, seed=args.seed)
        except VideoError as e:
            raise UserError(str(e)) from None
        s = summarize(clip, info)
        if args.synthetic:
            s["video"] = "(synthetic) " + s["video"]
        if args.save:
            import numpy as np

            np.savez_compressed(args.save, frames=clip.frames, motion=clip.motion,
                                motion_valid=clip.motion_valid, indices=np.asarray(clip.indices),
                                frame_types=np.array(clip.frame_types), motion_source=np.array(clip.motion_source))
            s["saved"] = args.save
        if args.plot:
            from mgm.video.plot import plot_clip

            plot_clip(clip, args.plot, title=f"{s['video']}  ({clip.motion_source} motion)")
            s["plot"] = args.plot
    if args.json:
        print(json.dumps(s))
    else:
        _print(s)
    return 0


def _print(s: dict) -> None:
    w = sys.stdout.write
    w(f"video         {s['video']}\n")
    w(f"codec         {s['codec']}  {s['width']}x{s['height']}  {s['fps']:g} fps  "
      f"{s['num_frames']} frames{'' if s['num_frames_exact'] else ' (estimated)'}\n")
    w(f"sampled       {len(s['sampled'])} frames: {s['sampled']}\n")
    w(f"frame types   {s['frame_types']}  (raw frames from {s['raw_start']})\n")
    w(f"motion        {s['motion_source']} on a {s['grid'][0]}x{s['grid'][1]} grid, "
      f"{100 * s['valid_fraction']:.0f}% of cells valid\n")
    w(f"magnitude     mean {s['mean_magnitude']:.2f} px, max {s['max_magnitude']:.2f} px "
      f"(valid cells, per sampled frame)\n")
    for k in ("saved", "plot"):
        if k in s:
            w(f"{k:<14}{s[k]}\n")
