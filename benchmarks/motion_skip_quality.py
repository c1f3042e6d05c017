"""Would skipping non-reference frames between sampled frames keep codec motion as good?
(``mgm.video.decode.SKIP_UNSAMPLED_NONREF_MOTION``, off by default because of what this prints.)

    python benchmarks/motion_skip_quality.py [--clips 12] [--out DIR]

On synthetic clips with known motion (the two ``mgm bench motion --synthetic`` clips, x264
B-pyramid, and four 224x160 clips of one 48 px object at (1.5, 0.75) px/frame: IBBBP with
x264's default 2 references, B-pyramid, 1 reference, and panning background + distractors),
16 frames x stride 4 at random starts, both ways: the fraction of frames whose top-1 motion
cell lies in a true object box, and the object's motion (median over its interior cells) against
the true displacement: error in px and the fraction of frames off by more than 30 %.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

import mgm.video.decode as dec
from mgm.video import read_clip
from mgm.video.bench import argmax_distance, synthetic_bench_videos
from mgm.video.synthetic import SyntheticObject, make_synthetic_video

FIXTURES = (("IBBBP, 2 refs", {}), ("B-pyramid", dict(b_pyramid="normal")), ("1 ref", dict(refs=1)),
            ("pan + distractors", dict(distractors=3, pan=(0.5, 0.2))))


def _interior(box, g, shape):
    gh, gw = shape
    x1, y1, x2, y2 = box
    m = np.zeros((gh, gw), bool)
    m[max(int(np.ceil(y1 / g)), 0):max(min(int(y2 // g), gh), 0),
      max(int(np.ceil(x1 / g)), 0):max(min(int(x2 // g), gw), 0)] = True
    return m


def evaluate(path, truth, starts, frames=16, stride=4) -> dict:
    inbox, errs, rel = [], [], []
    for s in starts:
        c = read_clip(path, frames, stride, start=int(s), motion="codec")
        inbox += [y for _, y in argmax_distance(c, truth)]
        for j, i in enumerate(c.indices.tolist()):
            p = int(c.indices[j - 1]) if j else max(i - stride, 0)
            for o in range(truth.boxes.shape[1]):
                cells = _interior(truth.boxes[i, o], c.cell, c.motion.shape[1:3]) & c.motion_valid[j]
                if cells.sum() < 2:
                    continue
                true_d = (truth.centres[i, o] - truth.centres[p, o]) * (stride / max(i - p, 1) if j == 0 else 1)
                est = np.median(c.motion[j][cells], 0)
                errs.append(float(np.linalg.norm(est - true_d)))
                if np.linalg.norm(true_d) > 2:
                    rel.append(float(np.linalg.norm(est) / np.linalg.norm(true_d)))
    return dict(argmax_in_box=float(np.mean(inbox)), err_px_mean=float(np.mean(errs)),
                off_30pct=float(np.mean(np.abs(np.array(rel) - 1) > 0.3)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", type=int, default=12, help="random clip starts per video (default 12)")
    ap.add_argument("--out", help="keep the generated videos here")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(a.out or tmp)
        out.mkdir(parents=True, exist_ok=True)
        videos = [(p, t, p.name) for p, t in synthetic_bench_videos(out)]
        for k, (name, kw) in enumerate(FIXTURES):
            p = out / f"fixture_{k}.mp4"
            obj = SyntheticObject(size=(48, 48), start=(30, 30), velocity=(1.5, 0.75))
            videos.append((p, make_synthetic_video(p, width=224, height=160, num_frames=150, fps=25, seed=1,
                                                   objects=[obj], **kw), name))
        rng = np.random.default_rng(0)
        print(f"{'clip':<24} {'skip':<5} {'argmax in box':>13} {'obj err px':>10} {'off >30%':>8}")
        for path, truth, name in videos:
            starts = rng.integers(0, truth.boxes.shape[0] - 61, a.clips)
            for skip in (False, True):
                dec.SKIP_UNSAMPLED_NONREF_MOTION = skip
                r = evaluate(path, truth, starts)
                print(f"{name:<24} {'yes' if skip else 'no':<5} {r['argmax_in_box']:>13.3f} {r['err_px_mean']:>10.2f} "
                      f"{r['off_30pct']:>8.2f}", flush=True)
        dec.SKIP_UNSAMPLED_NONREF_MOTION = False


if __name__ == "__main__":
    main()
