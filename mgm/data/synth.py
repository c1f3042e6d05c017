"""The motion-classes demo dataset (``mgm data synth``).

A Something-Something-like set whose classes are defined only by motion: one textured
object (random shape, size, aspect and texture) that moves left / right / up / down, comes
towards the camera (grows) or goes away (shrinks), or rotates clockwise /
counter-clockwise in place; over a random textured background with static textured
distractors and (in most videos) a mild camera pan. Appearance carries no label
information, so a model can only solve it from motion. Encoded with libx264 (B-frames)
through PyAV, so the codec's motion vectors are available.

Layout written under OUT_DIR::

    videos/00000.mp4 ...      the clips
    train.txt, val.txt        VideoMAE lists, "videos/00000.mp4 LABEL" (relative to OUT_DIR)
    classes.txt               class names, line i = label i
    boxes.json                per-frame object boxes (format below)

``boxes.json``::

    {"format": "xyxy", "units": "pixels", "width": W, "height": H, "fps": 25.0,
     "num_frames": T, "classes": [...],
     "videos": {"videos/00000.mp4": {"label": 3, "class": "down", "split": "train",
                                     "boxes": [[x0, y0, x1, y1], ...]}}}   # one box per frame

A box is the axis-aligned bounding box of the (scaled, rotated) object in frame ``t``
(0-based, every raw frame), in pixels of the encoded video, clipped to the frame.
Flip is label-changing here (left <-> right, clockwise <-> counter-clockwise): train
with ``data.flip=false``.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

CLASSES = ("left", "right", "up", "down", "towards", "away", "rotate_cw", "rotate_ccw")
VAL_EVERY = 5          # videos 4, 9, 14, ... go to val (every class once per 40 videos)


def video_spec(index: int, size: int, frames: int, seed: int) -> dict:
    """Everything random about video ``index`` (deterministic in seed and index)."""
    rng = np.random.default_rng([seed, index])
    label = index % len(CLASSES)
    cls = CLASSES[label]
    base = size * rng.uniform(0.22, 0.32)
    aspect = rng.uniform(0.7, 1.4)
    w, h = base * np.sqrt(aspect), base / np.sqrt(aspect)
    c = np.array([size / 2, size / 2]) + rng.uniform(-0.08, 0.08, 2) * size
    obj = {"size": (float(w), float(h)), "shape": str(rng.choice(["rect", "ellipse"])),
           "angle": float(rng.uniform(-20, 20)), "seed": int(rng.integers(2**31))}
    if cls in ("left", "right", "up", "down"):
        travel = size * rng.uniform(0.35, 0.5)
        d = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}[cls]
        v = np.array(d, float) * travel / max(frames - 1, 1)
        obj.update(start=tuple(map(float, c - v * (frames - 1) / 2)), velocity=tuple(map(float, v)))
    else:
        obj.update(start=tuple(map(float, c)), velocity=(0.0, 0.0))
    if cls in ("towards", "away"):
        lo, hi = rng.uniform(0.55, 0.7), rng.uniform(1.3, 1.5)
        s0, s1 = (lo, hi) if cls == "towards" else (hi, lo)
        obj.update(scale=float(s0), scale_rate=float((s1 / s0) ** (1 / max(frames - 1, 1))))
    if cls.startswith("rotate"):
        # cv2 / synthetic angles are counter-clockwise on screen
        speed = rng.uniform(3.0, 6.0)
        obj.update(rotation=float(speed if cls == "rotate_ccw" else -speed))
    pan = rng.uniform(-0.4, 0.4, 2) if rng.random() < 0.7 else np.zeros(2)
    return {"index": index, "label": label, "class": cls, "object": obj,
            "pan": (float(pan[0]), float(pan[1])), "distractors": int(rng.integers(2, 4)),
            "render_seed": int(rng.integers(2**31)),
            "split": "val" if index % VAL_EVERY == VAL_EVERY - 1 else "train"}


def render_one(path: str, spec: dict, size: int, frames: int, fps: float = 25.0) -> list[list[float]]:
    """Render and encode one video; returns its per-frame boxes (xyxy)."""
    from mgm.video.synthetic import SyntheticObject, make_synthetic_video

    o = spec["object"]
    ob = SyntheticObject(size=o["size"], start=o["start"], velocity=o["velocity"],
                         scale=o.get("scale", 1.0), scale_rate=o.get("scale_rate", 1.0),
                         angle=o["angle"], rotation=o.get("rotation", 0.0), shape=o["shape"],
                         seed=o["seed"])
    truth = make_synthetic_video(path, width=size, height=size, num_frames=frames, fps=fps,
                                 objects=[ob], pan=spec["pan"], distractors=spec["distractors"],
                                 seed=spec["render_seed"])
    return [[round(float(x), 2) for x in b] for b in np.asarray(truth.boxes)[:, 0]]


def _job(args):
    out_dir, spec, size, frames, fps = args
    rel = f"videos/{spec['index']:05d}.mp4"
    tmp = Path(out_dir) / f"videos/.{spec['index']:05d}.tmp.mp4"
    boxes = render_one(str(tmp), spec, size, frames, fps)
    os.replace(tmp, Path(out_dir) / rel)
    return rel, boxes


def make_synth_dataset(out_dir: str | os.PathLike, videos: int = 400, size: int = 112,
                       frames: int = 32, seed: int = 0, workers: int = 1, fps: float = 25.0,
                       progress: bool = True) -> dict:
    """Write the dataset; returns {"train": n, "val": n, "dir": ...}."""
    from tqdm import tqdm

    out = Path(out_dir)
    (out / "videos").mkdir(parents=True, exist_ok=True)
    specs = [video_spec(i, size, frames, seed) for i in range(videos)]
    jobs = [(str(out), s, size, frames, fps) for s in specs]
    results: dict[str, list] = {}
    bar = tqdm(total=len(jobs), desc="synth", unit="video", disable=not progress)
    if workers > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(workers, mp_context=_spawn()) as ex:
            for rel, boxes in ex.map(_job, jobs, chunksize=4):
                results[rel] = boxes
                bar.update()
    else:
        for j in jobs:
            rel, boxes = _job(j)
            results[rel] = boxes
            bar.update()
    bar.close()
    lists = {"train": [], "val": []}
    meta = {"format": "xyxy", "units": "pixels", "width": size, "height": size, "fps": fps,
            "num_frames": frames, "seed": seed, "classes": list(CLASSES), "videos": {}}
    for s in specs:
        rel = f"videos/{s['index']:05d}.mp4"
        lists[s["split"]].append(f"{rel} {s['label']}")
        meta["videos"][rel] = {"label": s["label"], "class": s["class"], "split": s["split"],
                               "boxes": results[rel]}
    for name, lines in lists.items():
        (out / f"{name}.txt").write_text("\n".join(lines) + ("\n" if lines else ""))
    (out / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    (out / "boxes.json").write_text(json.dumps(meta))
    return {"dir": str(out), "train": len(lists["train"]), "val": len(lists["val"]),
            "classes": len(CLASSES)}


def load_boxes(path: str | os.PathLike) -> dict:
    """Read ``boxes.json``; returns it with each video's boxes as float32 (T, 4) arrays."""
    meta = json.loads(Path(path).read_text())
    for v in meta["videos"].values():
        v["boxes"] = np.asarray(v["boxes"], np.float32).reshape(-1, 4)
    return meta


def _spawn():
    """Worker processes are spawned, not forked: forking a parent that already runs
    decoder / BLAS threads can deadlock the child."""
    import multiprocessing

    return multiprocessing.get_context("spawn")
