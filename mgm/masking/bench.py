"""`mgm bench masks`: microseconds per mask per strategy, per clip (numpy) and batched (torch),
optionally next to the decode time of the same clips and the coverage of a moving object.

Timings are medians over interleaved repeats (every strategy once per round, so a busy phase
of a shared machine hits all of them). Module top level stays light (no torch / av).
"""
from __future__ import annotations

import argparse
import json
import statistics
import time


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("videos", nargs="*", metavar="VIDEO",
                   help="also time decoding these (read_clip) and use their motion as guidance")
    p.add_argument("--synthetic", action="store_true",
                   help="also time decoding a generated H.264 224x224 clip (moving object, distractors)")
    p.add_argument("--grid", default="8,14,14", help="T',Hp,Wp (default 8,14,14)")
    p.add_argument("--ratio", type=float, default=0.75, help="mask ratio (default 0.75)")
    p.add_argument("--batch", type=int, default=64, help="batch size of the torch timing (default 64)")
    p.add_argument("--device", default="auto", help="torch device for the batched timing (auto: cuda if any)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads for the batched timing (default 1: stable on a shared machine)")
    p.add_argument("--repeats", type=int, default=200, help="per-clip repeats per strategy (default 200)")
    p.add_argument("--frames", type=int, default=16, help="decode: frames per clip (default 16)")
    p.add_argument("--stride", type=int, default=4, help="decode: stride (default 4)")
    p.add_argument("--coverage", type=int, default=0, metavar="N",
                   help="also measure on N generated clips how often each strategy masks the moving "
                        "object's centre (ratios 0.5, 0.75, 0.9)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print one JSON object")


def _median_us(ts):
    return statistics.median(ts) * 1e6


def _synthetic_motion(grid, tubelet=2, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    tp, hp, wp = grid
    t = tp * tubelet
    motion = rng.normal(0, 0.2, (t, hp, wp, 2)).astype(np.float32)
    valid = rng.random((t, hp, wp)) > 0.15
    for i in range(t):
        x = int(1 + i * (wp - 5) / max(t - 1, 1))
        motion[i, hp // 3:hp // 3 + 3, x:x + 3] = (8.0, 2.0)
    return motion, valid


def time_per_clip(grid, ratio, repeats, motion, valid, tubelet=2, seed=0) -> dict:
    import numpy as np

    from mgm.masking import STRATEGIES, make_mask, motion_to_patch_magnitude

    rng = np.random.default_rng(seed)
    mag, mval = motion_to_patch_magnitude(motion, valid, grid, tubelet)
    ts = {s: [] for s in STRATEGIES}
    ts["guidance"] = []
    for s in STRATEGIES:       # warm up (caches, first-call imports)
        make_mask(s, grid=grid, ratio=ratio, magnitude=mag, magnitude_valid=mval, rng=rng)
    for _ in range(repeats):
        t0 = time.perf_counter()
        motion_to_patch_magnitude(motion, valid, grid, tubelet)
        ts["guidance"].append(time.perf_counter() - t0)
        for s in STRATEGIES:
            t0 = time.perf_counter()
            make_mask(s, grid=grid, ratio=ratio, magnitude=mag, magnitude_valid=mval, rng=rng)
            ts[s].append(time.perf_counter() - t0)
    return {k: _median_us(v) for k, v in ts.items()}


def time_batched(grid, ratio, batch, device, repeats, motion, valid, tubelet=2, seed=0) -> dict:
    import numpy as np
    import torch

    from mgm.masking import STRATEGIES, make_masks_torch, motion_to_patch_magnitude

    mag, mval = motion_to_patch_magnitude(motion, valid, grid, tubelet)
    magb = torch.tensor(np.broadcast_to(mag, (batch,) + mag.shape).copy(), device=device)
    valb = torch.tensor(np.broadcast_to(mval, (batch,) + mval.shape).copy(), device=device)
    g = torch.Generator(device=device).manual_seed(seed)
    sync = (lambda: torch.cuda.synchronize(device)) if torch.device(device).type == "cuda" else (lambda: None)
    ts = {s: [] for s in STRATEGIES}
    for s in STRATEGIES:
        make_masks_torch(s, magnitude=magb, magnitude_valid=valb, grid=grid, ratio=ratio, generator=g)
    sync()
    for _ in range(repeats):
        for s in STRATEGIES:
            t0 = time.perf_counter()
            make_masks_torch(s, magnitude=magb, magnitude_valid=valb, grid=grid, ratio=ratio, generator=g)
            sync()
            ts[s].append((time.perf_counter() - t0) / batch)
    return {k: _median_us(v) for k, v in ts.items()}


def time_decode_and_masks(path, frames, stride, repeats, grid, ratio, tubelet=2, seed=0, inner=15):
    """Paired measurement: per repeat, decode a clip (read_clip, random start), then time the
    masks of *that* clip (median of ``inner`` calls per strategy, guidance included for the
    guided ones). Returns the median decode time (s), the median per-repeat ratio mask/decode
    per strategy (so load spikes hit both sides), and the last clip."""
    import numpy as np

    from mgm.masking import STRATEGIES, make_mask, motion_to_patch_magnitude
    from mgm.masking.strategies import GUIDED
    from mgm.video import read_clip

    rng = np.random.default_rng(seed)
    dec, ratios, clip = [], {s: [] for s in STRATEGIES}, None
    for i in range(repeats):
        t0 = time.perf_counter()
        clip = read_clip(path, num_frames=frames, stride=stride, seed=seed + i)
        d = time.perf_counter() - t0
        dec.append(d)
        g = (clip.motion.shape[0] // tubelet,) + tuple(grid[1:])
        for s in STRATEGIES:
            ts = []
            for _ in range(inner):
                t0 = time.perf_counter()
                if s in GUIDED:
                    mag, val = motion_to_patch_magnitude(clip.motion, clip.motion_valid, g, tubelet)
                    make_mask(s, grid=g, ratio=ratio, magnitude=mag, magnitude_valid=val, rng=rng)
                else:
                    make_mask(s, grid=g, ratio=ratio, rng=rng)
                ts.append(time.perf_counter() - t0)
            ratios[s].append(statistics.median(ts) / d)
    return statistics.median(dec), {s: 100 * statistics.median(v) for s, v in ratios.items()}, clip


def coverage_clips(n, out_dir, seed=0, frames=16, stride=2):
    """n generated 224² H.264 clips: one 40 px textured square moving in a straight line at
    1–3 px/frame in a random direction (every other clip along a border) over a textured
    background with two static textured distractors. Returns [(clip, centres (T, 2) px)]."""
    import numpy as np

    from mgm.video import read_clip
    from mgm.video.synthetic import SyntheticObject, make_synthetic_video

    rng = np.random.default_rng(seed)
    out = []
    length = frames * stride + 4
    lo, hi = 28.0, 196.0
    for i in range(n):
        speed = rng.uniform(1.0, 3.0)
        ang = rng.uniform(0, 2 * np.pi)
        if i % 2:                                    # along a border
            ang = rng.choice([0.0, 0.5, 1.0, 1.5]) * np.pi
        v = speed * np.array([np.cos(ang), np.sin(ang)])
        span = v * length
        a = np.array([rng.uniform(lo + max(-s, 0), hi - max(s, 0)) for s in span])
        if i % 2:
            k = 1 if abs(v[0]) > abs(v[1]) else 0    # pin the other coordinate to a border
            a[k] = rng.choice([lo, hi])
        path = f"{out_dir}/cov{i}.mp4"
        truth = make_synthetic_video(path, 224, 224, length, objects=[
            SyntheticObject(size=(40, 40), start=tuple(a), velocity=tuple(v))],
            distractors=2, seed=seed * 1000 + i)
        clip = read_clip(path, num_frames=frames, stride=stride, start=0, motion="codec", grid=16)
        out.append((clip, truth.centres[clip.indices][:, 0]))
    return out


def coverage(clips, ratios=(0.5, 0.75, 0.9), seeds=4, tubelet=2) -> dict:
    """Per ratio and strategy: fraction of temporal indices whose mask hides the object's centre
    patch (object centre = mean over the tubelet's frames)."""
    import numpy as np

    from mgm.masking import STRATEGIES, make_mask, motion_to_patch_magnitude

    variants = [(s, {}) for s in STRATEGIES] + [("mgm init=motion", {"init": "motion"})]
    res = {}
    for ratio in ratios:
        hits = {name: [] for name, _ in variants}
        for clip, centres in clips:
            t = clip.motion.shape[0] // tubelet
            grid = (t, clip.frames.shape[1] // 16, clip.frames.shape[2] // 16)
            mag, val = motion_to_patch_magnitude(clip.motion, clip.motion_valid, grid, tubelet)
            for seed in range(seeds):
                for name, opts in variants:
                    m = make_mask(name.split()[0], grid=grid, ratio=ratio, magnitude=mag, magnitude_valid=val,
                                  rng=np.random.default_rng(seed), **opts)
                    for i in range(t):
                        cx, cy = centres[i * tubelet:(i + 1) * tubelet].mean(0)
                        py, px = int(cy // 16), int(cx // 16)
                        if 0 <= py < grid[1] and 0 <= px < grid[2]:
                            hits[name].append(bool(m[i, py, px]))
        res[str(ratio)] = {k: float(np.mean(v)) for k, v in hits.items()}
    return res


def run(args) -> int:
    import tempfile

    import torch

    from mgm.cli import UserError
    from mgm.masking import STRATEGIES

    try:
        grid = tuple(int(x) for x in args.grid.split(","))
        assert len(grid) == 3
    except (ValueError, AssertionError):
        raise UserError(f"--grid must be T',Hp,Wp, got {args.grid!r}") from None
    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    motion, valid = _synthetic_motion(grid, seed=args.seed)
    result = {"grid": list(grid), "ratio": args.ratio, "batch": args.batch, "device": device,
              "threads": torch.get_num_threads(), "repeats": args.repeats}
    tmp = tempfile.TemporaryDirectory()
    videos = list(args.videos)
    if args.synthetic:
        from mgm.video.synthetic import make_synthetic_video

        p = f"{tmp.name}/synthetic_224.mp4"
        make_synthetic_video(p, 224, 224, 300, distractors=2, seed=args.seed)
        videos.append(p)
    decode = []
    for path in videos:
        try:
            from mgm.video import probe_video

            info = probe_video(path)
            size = (info.height, info.width)
        except Exception as e:  # noqa: BLE001 - a user error, not a traceback
            raise UserError(f"{path}: {e}") from e
        g = (grid[0], size[0] // 16, size[1] // 16)
        sec, pct, clip = time_decode_and_masks(path, args.frames, args.stride, 9, g, args.ratio, seed=args.seed)
        decode.append({"video": str(path), "decode_ms": sec * 1e3, "size": list(clip.frames.shape[1:3]),
                       "motion_source": clip.motion_source, "mask_over_decode_pct": pct})
        if clip.frames.shape[0] == grid[0] * 2 and clip.motion.shape[1:3] == grid[1:]:
            motion, valid = clip.motion, clip.motion_valid   # time on real guidance
    result["per_clip_us"] = time_per_clip(grid, args.ratio, args.repeats, motion, valid, seed=args.seed)
    result["batched_us_per_mask"] = time_batched(grid, args.ratio, args.batch, device,
                                                 max(5, args.repeats // 20), motion, valid, seed=args.seed)
    if decode:
        result["decode"] = decode
    if args.coverage:
        clips = coverage_clips(args.coverage, tmp.name, seed=args.seed)
        result["coverage"] = coverage(clips)
        result["coverage_clips"] = args.coverage
    tmp.cleanup()
    if args.json:
        print(json.dumps(result))
        return 0
    pc, bt = result["per_clip_us"], result["batched_us_per_mask"]
    print(f"mask time, grid {grid}, ratio {args.ratio}: median µs per mask; per clip = numpy make_mask from "
          f"the patch-grid magnitude; batched = torch B={args.batch} on {device} "
          f"({result['threads']} threads)")
    print(f"{'strategy':<12}{'per clip':>10}{'batched':>10}")
    for s in STRATEGIES:
        print(f"{s:<12}{pc[s]:>10.1f}{bt[s]:>10.1f}")
    print(f"{'guidance':<12}{pc['guidance']:>10.1f}{'':>10}   motion grid -> patch magnitude (mgm only)")
    for d in result.get("decode", []):
        worst = max(d["mask_over_decode_pct"].items(), key=lambda kv: kv[1])
        print(f"decode {d['video']} ({d['size'][1]}x{d['size'][0]}, {args.frames} frames, stride {args.stride}, "
              f"motion {d['motion_source']}): median {d['decode_ms']:.1f} ms; mask/decode (median of paired "
              f"ratios): mgm {d['mask_over_decode_pct']['mgm']:.2f}% (incl. guidance), "
              f"worst {worst[0]} {worst[1]:.2f}%")
    if "coverage" in result:
        names = list(next(iter(result["coverage"].values())))
        print(f"moving-object centre masked (fraction of temporal indices, {args.coverage} generated clips x 4 seeds)")
        print(f"{'ratio':<7}" + "".join(f"{n:>17}" for n in names))
        for r, row in result["coverage"].items():
            print(f"{r:<7}" + "".join(f"{row[n]:>17.3f}" for n in names))
    return 0
