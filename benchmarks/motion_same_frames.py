"""Where the cost of codec motion comes from: `read_clip(motion="codec")` against RGB-only reads
that decode (a) the frames the RGB path decodes by default (non-reference frames between
sampled frames skipped) and (b) every frame of the clip, as the motion path does.

    python benchmarks/motion_same_frames.py VIDEO... [--repeats 15] [--frames 16] [--stride 4] [--json]

codec / all-frames is the price of the vectors themselves (FFmpeg's export, copying them,
building the grids); all-frames / default is the price of decoding the non-reference frames whose
vectors the motion estimate needs. Interleaved, same clip for the three within a repeat,
process CPU time, medians of per-repeat ratios (like ``mgm bench motion``).
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np

import mgm.video.decode as dec
from mgm.video import probe_video, read_clip
from mgm.video.indices import sample_indices

READERS = ("rgb", "rgb_all_frames", "codec")


def _read(path, idx, reader):
    dec.SKIP_UNSAMPLED_NONREF = reader != "rgb_all_frames"
    try:
        return read_clip(path, indices=idx, motion="codec" if reader == "codec" else "none")
    finally:
        dec.SKIP_UNSAMPLED_NONREF = True


def bench(path, frames=16, stride=4, repeats=15, seed=0) -> dict:
    n = probe_video(path).num_frames
    rng = np.random.default_rng(seed)
    cpu = {r: [] for r in READERS}
    for r in READERS:
        _read(path, sample_indices(n, frames, stride, 0), r)
    for k in range(repeats):
        idx = sample_indices(n, frames, stride, int(rng.integers(0, max(1, n - (frames - 1) * stride))))
        for r in READERS[k % 3:] + READERS[:k % 3]:
            t = time.process_time()
            _read(path, idx, r)
            cpu[r].append(time.process_time() - t)

    def ratio(a, b):
        return round(statistics.median(x / y for x, y in zip(cpu[a], cpu[b])), 3)

    return {"video": str(path), **{f"{r}_ms_cpu": round(1000 * statistics.median(cpu[r]), 1) for r in READERS},
            "codec_over_rgb": ratio("codec", "rgb"), "codec_over_rgb_all_frames": ratio("codec", "rgb_all_frames"),
            "rgb_all_frames_over_rgb": ratio("rgb_all_frames", "rgb"), "repeats": repeats}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("videos", nargs="+")
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--stride", type=int, default=4)
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    rows = []
    for v in a.videos:
        rows.append(bench(v, a.frames, a.stride, a.repeats))
        if not a.json:
            r = rows[-1]
            print(f"{v.split('/')[-1]:<28} rgb {r['rgb_ms_cpu']:7.1f}  rgb all frames {r['rgb_all_frames_ms_cpu']:7.1f}  "
                  f"codec {r['codec_ms_cpu']:7.1f} ms | codec/rgb {r['codec_over_rgb']:.3f}  codec/rgb-all-frames "
                  f"{r['codec_over_rgb_all_frames']:.3f}  rgb-all-frames/rgb {r['rgb_all_frames_over_rgb']:.3f}", flush=True)
    if a.json:
        print(json.dumps({"benchmark": "motion_same_frames", "results": rows}))


if __name__ == "__main__":
    main()
