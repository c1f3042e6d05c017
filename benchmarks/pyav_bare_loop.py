"""What reading motion vectors costs in a bare PyAV decode loop (no mgm code): decode the first
N frames with one thread (a) plain, (b) with ``flags2=+export_mvs``, (c) + reading the side
data through ``frame.side_data`` and copying it (a frame <-> side-data reference cycle keeps
every frame alive until the garbage collector runs), (d) + reading it through a
``SideDataContainer`` that is not cached on the frame (what mgm.video does) and copying it.

    python benchmarks/pyav_bare_loop.py VIDEO... [--frames 64] [--repeats 15]

Interleaved, process CPU time, medians of per-repeat ratios to (a).
"""
from __future__ import annotations

import argparse
import statistics
import time

import av
from av.sidedata.sidedata import SideDataContainer

VARIANTS = ("plain", "export", "frame.side_data", "container")


def decode(path, variant: str, frames: int) -> int:
    c = av.open(str(path))
    s = c.streams.video[0]
    ctx = s.codec_context
    ctx.thread_type, ctx.thread_count = "SLICE", 1
    if variant != "plain":
        ctx.options = {"flags2": "+export_mvs"}
    k = nbytes = 0
    for p in c.demux(s):
        for fr in ctx.decode(p):
            if variant == "frame.side_data":
                sd = fr.side_data.get("MOTION_VECTORS")
            elif variant == "container":
                sd = SideDataContainer(fr).get("MOTION_VECTORS")
            else:
                sd = None
            if sd is not None:
                nbytes += len(bytes(sd))
            k += 1
            if k >= frames:
                break
        if k >= frames:
            break
    c.close()
    return nbytes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("videos", nargs="+")
    ap.add_argument("--frames", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=15)
    a = ap.parse_args()
    for path in a.videos:
        cpu = {v: [] for v in VARIANTS}
        for v in VARIANTS:
            decode(path, v, a.frames)
        for r in range(a.repeats):
            for v in VARIANTS[r % 4:] + VARIANTS[:r % 4]:
                t = time.process_time()
                decode(path, v, a.frames)
                cpu[v].append(time.process_time() - t)
        cells = [f"{v} {1000 * statistics.median(cpu[v]):6.1f} ms "
                 f"x{statistics.median(x / y for x, y in zip(cpu[v], cpu['plain'])):.3f}" for v in VARIANTS]
        print(f"{str(path).split('/')[-1]:<26} " + " | ".join(cells), flush=True)


if __name__ == "__main__":
    main()
