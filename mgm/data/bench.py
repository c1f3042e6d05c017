"""`mgm bench loader LIST`: clips/s through the real DataLoader, tube vs MGM masks.

Both strategies read the same list in the same (seeded) order with the same workers;
runs are interleaved (tube, mgm, mgm, tube, ...) and the median of the rounds is
reported. Throughput is counted from the first batch on (worker start-up excluded;
it is reported separately). By default tube decodes no motion (what a tube run does)
so the ratio prices motion extraction + MGM masking; ``--same-decode`` makes tube decode
the motion too, isolating the masking cost. The goal is MGM >= 0.97x tube.

Module top level stays light (no torch / av): ``mgm --help`` imports it.
"""
from __future__ import annotations

import json
import os
import statistics
import time


def add_arguments(p) -> None:
    p.add_argument("list", metavar="LIST", help="list / JSON / folder, as data.train")
    p.add_argument("--data-root", default="")
    p.add_argument("--format", default="auto")
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers (default 2)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--clips", type=int, default=96, help="clips per run (default 96)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds per strategy")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--stride", type=int, default=4)
    p.add_argument("--strategies", default="tube,mgm", help="comma list; the first is the baseline")
    p.add_argument("--motion", default="auto", help="auto | codec | flow (for MGM)")
    p.add_argument("--same-decode", action="store_true",
                   help="baseline decodes motion too (isolates mask generation cost)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")


def _cfg(args, strategy: str):
    from mgm.config import load_config

    over = {
        "task": "pretrain", "data.train": args.list, "data.root": args.data_root,
        "data.format": args.format, "data.size": args.size, "model.img_size": args.size,
        "data.num_frames": args.frames, "model.num_frames": args.frames, "data.stride": args.stride,
        "data.motion": args.motion, "mask.strategy": strategy, "run.seed": args.seed,
    }
    return load_config(None, [f"{k}={json.dumps(v) if isinstance(v, str) else v}" for k, v in over.items()])


def _one_run(args, strategy: str, round_: int) -> dict:
    import torch

    from mgm.data import build_dataset, collate

    ds = build_dataset(_cfg(args, strategy), "train", "pretrain")
    if args.same_decode and not ds.needs_motion:
        ds.needs_motion, ds.motion_mode = True, args.motion
    ds.set_epoch(round_)
    gen = torch.Generator().manual_seed(args.seed * 1000 + round_)
    sampler = torch.utils.data.RandomSampler(ds, replacement=False, num_samples=args.clips, generator=gen)
    dl = torch.utils.data.DataLoader(ds, batch_size=args.batch_size, sampler=sampler,
                                     num_workers=args.workers, collate_fn=collate)
    t0 = time.perf_counter()
    first = None
    clips = after_first = bad = 0
    for batch in dl:
        n = batch["video"].shape[0]
        bad += len(batch["bad"])
        clips += n
        if first is None:
            first = time.perf_counter()
        else:
            after_first += n
    end = time.perf_counter()
    steady = after_first / (end - first) if after_first and end > first else float("nan")
    return {"strategy": strategy, "round": round_, "clips": clips, "clips_per_s": steady,
            "clips_per_s_with_startup": clips / (end - t0), "startup_s": (first or end) - t0,
            "bad": bad}


def run(args) -> int:
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    if len(strategies) < 1:
        print("no strategies")
        return 2
    runs = []
    for r in range(args.rounds):
        order = strategies if r % 2 == 0 else strategies[::-1]
        for s in order:
            res = _one_run(args, s, r)
            runs.append(res)
            if not args.json:
                print(f"round {r} {s:>10}: {res['clips_per_s']:.2f} clips/s "
                      f"(start-up {res['startup_s']:.2f} s)", flush=True)
    med = {s: statistics.median([x["clips_per_s"] for x in runs if x["strategy"] == s]) for s in strategies}
    base = strategies[0]
    out = {
        "list": args.list, "workers": args.workers, "batch_size": args.batch_size, "clips": args.clips,
        "rounds": args.rounds, "size": args.size, "frames": args.frames, "stride": args.stride,
        "same_decode": bool(args.same_decode), "cpu_count": os.cpu_count(),
        "loadavg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "clips_per_s": med,
        "ratio": {s: med[s] / med[base] for s in strategies if s != base},
        "runs": runs,
    }
    if args.json:
        print(json.dumps(out))
    else:
        for s in strategies:
            print(f"{s:>10}: median {med[s]:.2f} clips/s")
        for s, v in out["ratio"].items():
            print(f"{s} / {base}: {v:.3f} (goal >= 0.97)")
        if out["loadavg"]:
            print(f"load average {out['loadavg'][0]:.2f} on {out['cpu_count']} cores")
    return 0
