"""`mgm bench motion VIDEO...`: per clip, time to (a) decode the sampled frames to RGB without
motion, (b) the same with codec motion vectors, (c) with DIS optical flow instead, and, when
they are importable, the RGB frames of the same indices from decord and torchcodec
(``--against``; open included, one decoder thread each, like ours).

Runs are interleaved (all readers in a rotating order, the same clip for all within a repeat)
and reported as medians; the ratios are medians of the per-repeat ratios, so slow phases of a
loaded machine hit both sides of a ratio. Times are process CPU time (decoder threads
included) and wall-clock. ``--synthetic`` generates the reference clips (H.264 224x224 and
340x256, 10 s at 30 fps like Kinetics) and also reports how far the argmax of the motion
magnitude is from the nearest true object centre.

Module top level stays light (no av / cv2): ``mgm --help`` imports it.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

PEERS = ("decord", "torchcodec")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("videos", nargs="*", metavar="VIDEO", help="video files to time")
    p.add_argument("--synthetic", action="store_true",
                   help="also time generated H.264 clips at 224x224 and 340x256 (300 frames)")
    p.add_argument("--frames", type=int, default=16, help="frames per clip (default 16)")
    p.add_argument("--stride", type=int, default=4, help="raw frames between sampled frames (default 4)")
    p.add_argument("--cell", type=int, default=16, help="motion cell size in px (default 16)")
    p.add_argument("--repeats", type=int, default=9, help="interleaved repeats per video (default 9)")
    p.add_argument("--seed", type=int, default=0, help="seed for clip starts and synthetic clips")
    p.add_argument("--against", default="decord,torchcodec", metavar="LIST",
                   help="other decoders to time on the same indices, where importable "
                        "(comma list of decord, torchcodec; 'none' for none; default %(default)s)")
    p.add_argument("--keep", metavar="DIR", help="write the synthetic clips here instead of a temp dir")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def synthetic_bench_videos(out_dir, seed: int = 0, num_frames: int = 300):
    """The two reference clips; returns [(path, truth)]."""
    import numpy as np

    from mgm.video.synthetic import SyntheticObject, make_synthetic_video

    out = []
    for (w, h) in ((224, 224), (340, 256)):
        t = np.arange(num_frames)
        s = min(w, h) // 4
        # two objects on sinusoidal paths (speed up to ~3 px/frame) over a slowly panning
        # background with static textured distractors
        c1 = np.stack([w / 2 + w * 0.3 * np.sin(2 * np.pi * t / 100), h * 0.35 + h * 0.15 * np.sin(2 * np.pi * t / 170)], 1)
        c2 = np.stack([w * 0.5 + w * 0.25 * np.cos(2 * np.pi * t / 130), h * 0.7 + 0 * t], 1)
        objs = [SyntheticObject(size=(s, s), centres=c1, rotation=0.5),
                SyntheticObject(size=(s * 0.8, s * 1.2), centres=c2, shape="ellipse")]
        path = Path(out_dir) / f"synthetic_{w}x{h}.mp4"
        truth = make_synthetic_video(path, w, h, num_frames, fps=30, objects=objs, pan=(0.4, 0.0),
                                     distractors=3, seed=seed, gop=250, bframes=3, b_pyramid="normal")
        out.append((path, truth))
    return out


def argmax_distance(clip, truth) -> list[tuple[float, bool]]:
    """Per sampled frame with valid motion: (distance in px from the centre of the cell with the
    largest motion magnitude to the nearest true object centre, whether that point lies in a
    true object box)."""
    import numpy as np

    mag = np.linalg.norm(clip.motion, axis=-1) * clip.motion_valid
    out = []
    g = clip.cell
    for j, i in enumerate(np.asarray(clip.indices).tolist()):
        if not clip.motion_valid[j].any() or mag[j].max() <= 0:
            continue
        cy, cx = np.unravel_index(int(np.argmax(mag[j])), mag[j].shape)
        p = np.array([(cx + 0.5) * g, (cy + 0.5) * g])
        b = truth.boxes[i]
        inside = bool(((b[:, 0] <= p[0]) & (p[0] <= b[:, 2]) & (b[:, 1] <= p[1]) & (p[1] <= b[:, 3])).any())
        out.append((float(np.min(np.linalg.norm(truth.centres[i] - p[None], axis=1))), inside))
    return out


def peer_readers(names) -> tuple[dict, dict]:
    """({name: read(path, indices) -> uint8 (T, H, W, 3)}, {name: why it is not available}).
    Each reader opens the file itself and decodes with one thread, like ``read_clip``."""
    readers, missing = {}, {}
    for name in names:
        try:
            if name == "decord":
                import decord

                def read(path, indices, decord=decord):
                    vr = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
                    return vr.get_batch(list(indices)).asnumpy()
            elif name == "torchcodec":
                from torchcodec.decoders import VideoDecoder

                def read(path, indices, VideoDecoder=VideoDecoder):
                    d = VideoDecoder(str(path), num_ffmpeg_threads=1)
                    return d.get_frames_at(list(indices)).data.permute(0, 2, 3, 1).numpy()
            else:
                missing[name] = "unknown decoder (known: decord, torchcodec)"
                continue
        except Exception as e:  # ImportError, or a wheel whose native library does not load
            missing[name] = f"not importable ({e.__class__.__name__}: {str(e).splitlines()[0][:120] if str(e) else ''})"
            continue
        readers[name] = read
    return readers, missing


def _time(fn):
    """(wall seconds, CPU seconds of this process incl. decoder threads, result)."""
    w, c = time.perf_counter(), time.process_time()
    r = fn()
    return time.perf_counter() - w, time.process_time() - c, r


def bench_video(path, frames=16, stride=4, cell=16, repeats=9, seed=0, truth=None, peers=None) -> dict:
    import numpy as np

    from mgm.video.container import probe_video
    from mgm.video.decode import read_clip
    from mgm.video.indices import sample_indices

    info = probe_video(path)
    peers = peers or {}
    ours = ["none", "codec", "flow"] if info.has_motion_vectors else ["none", "flow"]
    names = ours + list(peers)
    rng = np.random.default_rng(seed)
    span = (frames - 1) * stride + 1
    times = {m: [] for m in names}
    cpu = {m: [] for m in names}
    dists = []
    same = {}

    def run_one(m, idx):
        if m in peers:
            return peers[m](path, idx)
        return read_clip(path, indices=idx, motion=m, cell=cell)

    warm = sample_indices(info.num_frames, frames, stride, 0)
    for m in names:  # warm-up (imports, OpenCV init), and whether the frames are the same
        out = run_one(m, warm)
        if m in peers:
            same[m] = bool(np.array_equal(out, read_clip(path, indices=warm, motion="none").frames))
    for r in range(repeats):
        start = int(rng.integers(0, max(1, info.num_frames - span + 1)))
        idx = sample_indices(info.num_frames, frames, stride, start)
        order = names[r % len(names):] + names[: r % len(names)]
        for m in order:
            dt, dc, out = _time(lambda: run_one(m, idx))
            times[m].append(dt)
            cpu[m].append(dc)
            if truth is not None and m == "codec":
                dists += argmax_distance(out, truth)
    res = {"video": str(path), "codec": info.codec, "size": f"{info.width}x{info.height}",
           "num_frames": info.num_frames, "clip": f"{frames}x{stride}", "repeats": repeats,
           "threads": "one decoder thread per reader"}

    def ratio(t, num, den):
        return round(statistics.median(y / x for x, y in zip(t[den], t[num]) if x > 0), 3)

    for clock, t in (("wall", times), ("cpu", cpu)):
        for m, key in (("none", "a_ms"), ("codec", "b_ms"), ("flow", "c_ms")):
            res[f"{key}_{clock}"] = round(1000 * statistics.median(t[m]), 2) if m in t else None
        res[f"b_over_a_{clock}"] = ratio(t, "codec", "none") if "codec" in t else None
        res[f"c_over_b_{clock}"] = ratio(t, "flow", "codec") if "codec" in t else None
        if "codec" not in t:
            res[f"c_over_a_{clock}"] = ratio(t, "flow", "none")
        for p in peers:
            res[f"{p}_ms_{clock}"] = round(1000 * statistics.median(t[p]), 2)
            res[f"a_over_{p}_{clock}"] = ratio(t, "none", p)
            if "codec" in t:
                res[f"b_over_{p}_{clock}"] = ratio(t, "codec", p)
    for p, v in same.items():
        res[f"{p}_frames_identical"] = v
    if truth is not None and dists:
        d = np.array([x for x, _ in dists])
        res["argmax_in_box_frac"] = round(float(np.mean([y for _, y in dists])), 3)
        res["argmax_dist_px_median"] = round(float(np.median(d)), 1)
        res["argmax_within_cell_frac"] = round(float(np.mean(d <= cell)), 3)
        res["argmax_frames"] = int(d.size)
    return res


def run(args) -> int:
    from mgm.errors import UserError
    from mgm.video.container import VideoError

    if not args.videos and not args.synthetic:
        raise UserError("give VIDEO files and/or --synthetic")
    wanted = [s.strip() for s in args.against.split(",") if s.strip() and s.strip() != "none"]
    peers, missing = peer_readers(wanted)
    if not args.json:
        for name, why in missing.items():
            print(f"--against {name}: skipped, {why}")
    results = []
    with tempfile.TemporaryDirectory(prefix="mgm-bench-") as tmp:
        jobs = [(v, None) for v in args.videos]
        if args.synthetic:
            out_dir = Path(args.keep) if args.keep else Path(tmp)
            out_dir.mkdir(parents=True, exist_ok=True)
            jobs += synthetic_bench_videos(out_dir, seed=args.seed)
        for path, truth in jobs:
            try:
                r = bench_video(path, args.frames, args.stride, args.cell, args.repeats, args.seed, truth, peers)
            except VideoError as e:
                r = {"video": str(path), "error": str(e)}
            results.append(r)
            if not args.json:
                _print_row(r, list(peers), header=len(results) == 1)
    if args.json:
        print(json.dumps({"benchmark": "motion", "against": list(peers), "skipped": missing, "results": results}))
    return 1 if any("error" in r for r in results) else 0


def _print_row(r: dict, peers: list, header: bool) -> None:
    if header:
        print("ms per clip (median process CPU time, robust on a loaded machine); ratios = median of "
              "per-repeat ratios; a = RGB only, b = + codec motion, c = + DIS flow" +
              "".join(f", {p} = {p} RGB" for p in peers))
        print(f"{'video':<26} {'size':>9} | {'a rgb':>7} {'b +mv':>7} {'c flow':>7}"
              + "".join(f" {p[:7]:>7}" for p in peers)
              + f" | {'b/a':>6} {'c/b':>6}" + "".join(f" {'b/' + p[:3]:>6} {'a/' + p[:3]:>6}" for p in peers)
              + " | argmax->centre")
    if "error" in r:
        print(f"{Path(r['video']).name[:26]:<26} error: {r['error']}")
        return

    def f(x, w, p=2):
        return f"{x:>{w}.{p}f}" if isinstance(x, (int, float)) else f"{'-':>{w}}"

    extra = ""
    if "argmax_dist_px_median" in r:
        extra = (f" median {r['argmax_dist_px_median']} px, {100 * r['argmax_within_cell_frac']:.0f}% <= 1 cell, "
                 f"{100 * r['argmax_in_box_frac']:.0f}% in a box ({r['argmax_frames']} frames)")
    same = [p for p in peers if r.get(f"{p}_frames_identical") is False]
    if same:
        extra += f" frames differ from: {', '.join(same)}"
    print(f"{Path(r['video']).name[:26]:<26} {r['size']:>9} | {f(r['a_ms_cpu'], 7, 1)} "
          f"{f(r['b_ms_cpu'], 7, 1)} {f(r['c_ms_cpu'], 7, 1)}"
          + "".join(f" {f(r.get(f'{p}_ms_cpu'), 7, 1)}" for p in peers)
          + f" | {f(r['b_over_a_cpu'], 6, 3)} {f(r['c_over_b_cpu'], 6, 3)}"
          + "".join(f" {f(r.get(f'b_over_{p}_cpu'), 6, 3)} {f(r.get(f'a_over_{p}_cpu'), 6, 3)}" for p in peers)
          + f" |{extra}")
    sys.stdout.flush()
