"""`mgm bench masks`: the cost of masks, per clip and batched, against decoding and against the
pretraining step they are built in; with ``--device cuda``, whether CUDA masks equal CPU masks.

Timings are medians over interleaved repeats (every variant once per round, so a busy phase of a
shared machine hits all of them). Module top level stays light (no torch / av): the CLI's parser
imports it.
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("videos", nargs="*", metavar="VIDEO",
                   help="also time decoding these (read_clip) against their masks")
    p.add_argument("--synthetic", action="store_true",
                   help="also time decoding a generated H.264 224x224 clip (moving object, distractors)")
    p.add_argument("--grid", default="8,14,14", help="T',Hp,Wp (default 8,14,14)")
    p.add_argument("--ratio", type=float, default=0.75, help="mask ratio (default 0.75)")
    p.add_argument("--batch", type=int, default=64, help="batch size of the batched timing (default 64)")
    p.add_argument("--device", default="auto",
                   help="device of the batched timing (auto: cuda if any); cuda also checks that CUDA "
                        "masks equal CPU masks for the same draws (exit 1 if not)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default 1: stable on a shared machine)")
    p.add_argument("--repeats", type=int, default=50, help="repeats per strategy (default 50)")
    p.add_argument("--frames", type=int, default=16, help="decode: frames per clip (default 16)")
    p.add_argument("--stride", type=int, default=4, help="decode: stride (default 4)")
    p.add_argument("--step", metavar="ARCH", nargs="?", const="vit_tiny", default=None,
                   help="also time the masks of a pretraining step against the step itself "
                        "(ARCH, default vit_tiny; batch 8, 16x112x112, tubelets 2x16x16)")
    p.add_argument("--coverage", type=int, default=0, metavar="N",
                   help="also measure on N generated clips how often each strategy masks the moving "
                        "object's centre (ratios 0.5, 0.75, 0.9)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print one JSON object")


def _median_us(ts):
    return statistics.median(ts) * 1e6


def synthetic_guidance(grid, batch: int, seed: int = 0):
    """(batch, T', Hp, Wp) magnitude and validity of a 3-patch object crossing the frame, noise
    elsewhere, some missing vectors."""
    import torch

    g = torch.Generator().manual_seed(seed)
    tp, hp, wp = grid
    mag = torch.rand((batch,) + tuple(grid), generator=g) * 0.4
    valid = torch.rand((batch,) + tuple(grid), generator=g) > 0.15
    for i in range(tp):
        x = int(1 + i * (wp - 5) / max(tp - 1, 1))
        mag[:, i, hp // 3:hp // 3 + 3, x:x + 3] = 8.0
        valid[:, i, hp // 3:hp // 3 + 3, x:x + 3] = True
    return mag, valid


def time_masks(grid, ratio, batch, device, repeats, seed=0) -> dict:
    """Median µs per mask: ``make_mask`` (one clip, CPU) and ``make_masks`` (``batch`` clips on
    ``device``), every strategy, interleaved."""
    import torch

    from mgm.masking import STRATEGIES, make_mask, make_masks

    mag, valid = synthetic_guidance(grid, batch, seed)
    one = (mag[0].numpy(), valid[0].numpy())
    magd, vald = mag.to(device), valid.to(device)
    g = torch.Generator(device=device).manual_seed(seed)
    sync = (lambda: torch.cuda.synchronize(device)) if torch.device(device).type == "cuda" else (lambda: None)
    ts = {(k, s): [] for k in ("clip", "batched") for s in STRATEGIES}
    for r in range(repeats + 1):                     # round 0 warms up (first-call costs)
        for s in STRATEGIES:
            t0 = time.perf_counter()
            make_mask(s, grid, ratio, magnitude=one[0], magnitude_valid=one[1], seed=r)
            t1 = time.perf_counter()
            make_masks(s, grid, ratio, magnitude=magd, magnitude_valid=vald, generator=g)
            sync()
            t2 = time.perf_counter()
            if r:
                ts["clip", s].append(t1 - t0)
                ts["batched", s].append((t2 - t1) / batch)
    return {k: {s: _median_us(ts[k, s]) for s in STRATEGIES} for k in ("clip", "batched")}


def cuda_equals_cpu(grid, ratio, batch, seed=0) -> dict:
    """Per strategy: do masks computed on CUDA equal the CPU's for the same draws?"""
    import torch

    from mgm.masking import STRATEGIES, make_masks, sample_draws

    mag, valid = synthetic_guidance(grid, batch, seed)
    out = {}
    for s in STRATEGIES:
        d = sample_draws(s, grid, batch, torch.Generator().manual_seed(seed))
        cpu = make_masks(s, grid, ratio, magnitude=mag, magnitude_valid=valid, draws=d)
        gpu = make_masks(s, grid, ratio, magnitude=mag.cuda(), magnitude_valid=valid.cuda(),
                         draws={k: v.cuda() for k, v in d.items()})
        out[s] = bool(torch.equal(cpu, gpu.cpu()))
    return out


def time_in_step(arch: str, repeats: int, seed: int = 0) -> dict:
    """Masks of a pretraining step (``mgm.engine.pretrain.batch_masks``: draws for the global batch
    + make_masks, strategy mgm) vs the step's forward + backward, batch 8, 16x112², on the CPU,
    interleaved. Returns medians (ms) and the mask share of the step (%)."""
    import torch

    from mgm.config import load_config
    from mgm.engine.pretrain import batch_masks
    from mgm.models.vit import build_model

    cfg = load_config("tiny", [f"model.arch={arch}", "model.num_frames=16", "model.img_size=112",
                               "mask.strategy=mgm", f"run.seed={seed}"])
    model = build_model(cfg.model, "pretrainer")
    grid = model.spec.grid
    mag, valid = synthetic_guidance(grid, 8, seed)
    batch = {"video": torch.randn(8, 3, 16, 112, 112), "magnitude": mag, "magnitude_valid": valid}
    cpu = torch.device("cpu")
    masks, steps = [], []
    for r in range(repeats + 1):
        t0 = time.perf_counter()
        mask = batch_masks(cfg, batch, r, 0, 1, 0, 1, cpu)
        t1 = time.perf_counter()
        loss, _ = model(batch["video"], mask)
        loss.backward()
        model.zero_grad(set_to_none=True)
        t2 = time.perf_counter()
        if r:
            masks.append(t1 - t0)
            steps.append(t2 - t1)
    m, s = statistics.median(masks) * 1e3, statistics.median(steps) * 1e3
    return {"arch": arch, "mask_ms": m, "step_ms": s, "mask_pct_of_step": 100 * m / (m + s)}


def time_decode_and_masks(path, frames, stride, repeats, ratio, seed=0, inner=9) -> dict:
    """Paired: per repeat decode a clip (read_clip), then time its masks (guidance included for
    the guided ones, median of ``inner`` calls). Median decode time and the median per-repeat
    ratio mask/decode per strategy, so load spikes hit both sides."""
    from mgm.masking import GUIDED, STRATEGIES, make_mask
    from mgm.video import read_clip

    dec, ratios, clip = [], {s: [] for s in STRATEGIES}, None
    for i in range(repeats):
        t0 = time.perf_counter()
        clip = read_clip(path, num_frames=frames, stride=stride, seed=seed + i)
        d = time.perf_counter() - t0
        dec.append(d)
        grid = (clip.motion.shape[0] // 2, clip.frames.shape[1] // 16, clip.frames.shape[2] // 16)
        for s in STRATEGIES:
            ts = []
            for j in range(inner):
                t0 = time.perf_counter()
                make_mask(s, grid, ratio, motion=clip.motion if s in GUIDED else None,
                          motion_valid=clip.motion_valid, seed=j)
                ts.append(time.perf_counter() - t0)
            ratios[s].append(statistics.median(ts) / d)
    return {"video": str(path), "decode_ms": statistics.median(dec) * 1e3,
            "size": list(clip.frames.shape[1:3]), "motion_source": clip.motion_source,
            "mask_over_decode_pct": {s: 100 * statistics.median(v) for s, v in ratios.items()}}


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
        clip = read_clip(path, num_frames=frames, stride=stride, start=0, motion="codec", cell=16)
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
                                  seed=seed, **opts)
                    for i in range(t):
                        cx, cy = centres[i * tubelet:(i + 1) * tubelet].mean(0)
                        py, px = int(cy // 16), int(cx // 16)
                        if 0 <= py < grid[1] and 0 <= px < grid[2]:
                            hits[name].append(bool(m[i, py, px]))
        res[str(ratio)] = {k: float(np.mean(v)) for k, v in hits.items()}
    return res


def run(args) -> int:
    import torch

    from mgm.errors import UserError
    from mgm.masking import STRATEGIES

    try:
        grid = tuple(int(x) for x in args.grid.split(","))
        assert len(grid) == 3
    except (ValueError, AssertionError):
        raise UserError(f"--grid must be T',Hp,Wp, got {args.grid!r}") from None
    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    if torch.device(device).type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {device}: CUDA is not available on this machine")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    result = {"grid": list(grid), "ratio": args.ratio, "batch": args.batch, "device": device,
              "threads": torch.get_num_threads(), "repeats": args.repeats,
              "us_per_mask": time_masks(grid, args.ratio, args.batch, device, args.repeats, args.seed)}
    if torch.device(device).type == "cuda":
        result["cuda_equals_cpu"] = cuda_equals_cpu(grid, args.ratio, args.batch, args.seed)
    if args.step:
        result["in_step"] = time_in_step(args.step, max(3, args.repeats // 10), args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        videos = list(args.videos)
        if args.synthetic:
            from mgm.video.synthetic import make_synthetic_video

            videos.append(f"{tmp}/synthetic_224.mp4")
            make_synthetic_video(videos[-1], 224, 224, 300, distractors=2, seed=args.seed)
        decode = []
        for path in videos:
            try:
                decode.append(time_decode_and_masks(path, args.frames, args.stride, 9, args.ratio, seed=args.seed))
            except Exception as e:  # noqa: BLE001 - a bad file is the user's problem: one line
                raise UserError(f"{path}: {e}") from None
        if decode:
            result["decode"] = decode
        if args.coverage:
            result["coverage"] = coverage(coverage_clips(args.coverage, tmp, seed=args.seed))
            result["coverage_clips"] = args.coverage
    if args.json:
        print(json.dumps(result))
        return 0 if all(result.get("cuda_equals_cpu", {}).values()) else 1
    us = result["us_per_mask"]
    print(f"mask time, grid {grid}, ratio {args.ratio}: median µs per mask; one clip = make_mask on the CPU, "
          f"batched = make_masks B={args.batch} on {device} ({result['threads']} threads)")
    print(f"{'strategy':<12}{'one clip':>10}{'batched':>10}")
    for s in STRATEGIES:
        print(f"{s:<12}{us['clip'][s]:>10.1f}{us['batched'][s]:>10.1f}")
    if "cuda_equals_cpu" in result:
        bad = [s for s, ok in result["cuda_equals_cpu"].items() if not ok]
        print("CUDA masks equal CPU masks for the same draws: " + ("yes, every strategy" if not bad
                                                                    else f"NO for {', '.join(bad)}"))
    if "in_step" in result:
        st = result["in_step"]
        print(f"in a pretraining step ({st['arch']}, batch 8, 16x112², mgm, CPU): masks {st['mask_ms']:.2f} ms, "
              f"forward+backward {st['step_ms']:.0f} ms: masks are {st['mask_pct_of_step']:.2f}% of the step")
    for d in result.get("decode", []):
        worst = max(d["mask_over_decode_pct"].items(), key=lambda kv: kv[1])
        print(f"decode {d['video']} ({d['size'][1]}x{d['size'][0]}, {args.frames} frames, stride {args.stride}, "
              f"motion {d['motion_source']}): median {d['decode_ms']:.1f} ms; one clip's mask / decode: "
              f"mgm {d['mask_over_decode_pct']['mgm']:.2f}% (guidance included), worst {worst[0]} {worst[1]:.2f}%")
    if "coverage" in result:
        names = list(next(iter(result["coverage"].values())))
        print(f"moving-object centre masked (fraction of temporal indices, {args.coverage} generated clips x 4 seeds)")
        print(f"{'ratio':<7}" + "".join(f"{n:>17}" for n in names))
        for r, row in result["coverage"].items():
            print(f"{r:<7}" + "".join(f"{row[n]:>17.3f}" for n in names))
    return 0 if all(result.get("cuda_equals_cpu", {}).values()) else 1
