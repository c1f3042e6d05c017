"""The generated demo datasets (``mgm data synth``): motion classes, or articulated actions.

``style="actions"`` (:mod:`mgm.data.synth_figures`): stick figures doing eight actions (walk
left / right, wave, clap, jump, kick, sit down, stand up) over textured scenes; the limbs carry
the action, several parts move at different speeds. What ``mgm demo`` and ``mgm study`` use.

``style="natural"`` / ``"bold"``: a Something-Something-like set whose classes are defined only
by motion: one textured
object (random shape, size, aspect and texture) that moves left / right / up / down, comes
towards the camera (grows) or goes away (shrinks), or rotates clockwise /
counter-clockwise in place; over a random textured background with static textured
distractors and (in most videos) a mild camera pan. Appearance carries no label
information, so a model can only solve it from motion. Encoded with libx264 (B-frames)
through PyAV, so the codec's motion vectors are available.

Layout written under OUT_DIR::

    videos/00000.mp4 ...      the clips
    train.txt, val.txt        VideoMAE lists, "videos/00000.mp4 LABEL" (relative to OUT_DIR)
    all.txt                   every video (train + val), in index order
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

``style="bold"`` (``mgm data synth --style bold``) renders the same
motions with a high-contrast look: a bright two-colour object 1.4x larger over a dark smooth
background, dim static distractors (pixel std ~0.18 instead of ~0.11).

``style="actions"`` (``mgm/data/synth_figures.py``, what ``mgm demo`` and ``mgm study`` use) draws
articulated figures whose limbs carry the action.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import cv2
import numpy as np

from mgm.data import synth_figures
from mgm.data.parallel import progress_map
from mgm.video.synthetic import SyntheticObject, encode_frames, make_synthetic_video, smooth_noise

CLASSES = ("left", "right", "up", "down", "towards", "away", "rotate_cw", "rotate_ccw")
VAL_EVERY = 5          # videos 4, 9, 14, ... go to val (every class once per 40 videos)
STYLES = ("natural", "bold", "actions")
# What a seed generates. Bump it whenever the same seed would give other bytes, so that sets made
# before are generated again instead of reused (2: libx264 without mb-tree, whose encodes differed
# from run to run; sets made before 2026-12-02 record no version)
GENERATOR_VERSION = 2
BOLD_GROW = 1.4        # bold style: object side x this (0.31-0.45 of the frame instead of 0.22-0.32)


def style_classes(style: str) -> tuple[str, ...]:
    return synth_figures.CLASSES if style == "actions" else CLASSES


def video_spec(index: int, size: int, frames: int, seed: int, style: str = "natural") -> dict:
    """Everything random about video ``index`` (deterministic in seed, index and style)."""
    rng = np.random.default_rng([seed, index])
    split = "val" if index % VAL_EVERY == VAL_EVERY - 1 else "train"
    if style == "actions":
        label = index % len(synth_figures.CLASSES)
        return {"index": index, "label": label, "split": split,
                "figure": synth_figures.figure_spec(label, size, frames, rng),
                "class": synth_figures.CLASSES[label]}
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
            "render_seed": int(rng.integers(2**31)), "split": split}


def _object(spec: dict, grow: float = 1.0):
    o = spec["object"]
    return SyntheticObject(size=(o["size"][0] * grow, o["size"][1] * grow), start=o["start"],
                           velocity=o["velocity"], scale=o.get("scale", 1.0),
                           scale_rate=o.get("scale_rate", 1.0), angle=o["angle"],
                           rotation=o.get("rotation", 0.0), shape=o["shape"], seed=o["seed"])


def render_bold(spec: dict, size: int, frames: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``bold`` style: a bright two-colour object, 1.4x larger, over a dark smooth
    background (no fine grain) with dim static distractors and the same pan. Same motion as
    the ``natural`` style (same spec). Returns frames (T, H, W, 3) uint8 and boxes (T, 4)."""
    rng = np.random.default_rng(spec["render_seed"])
    ob = _object(spec, BOLD_GROW)
    px, py = spec["pan"]
    mx, my = int(np.ceil(abs(px) * frames)) + 2, int(np.ceil(abs(py) * frames)) + 2
    tint = rng.uniform(0.6, 1.0, 3).astype(np.float32)
    bg = (0.08 + 0.22 * smooth_noise(rng, size + my, size + mx, 4)) * tint
    ox0, oy0 = (mx - 1 if px > 0 else 1), (my - 1 if py > 0 else 1)
    static = []
    for _ in range(spec["distractors"]):
        dw, dh = (int(v) for v in rng.integers(size // 8, size // 4, 2))
        x0, y0 = (int(v) for v in rng.integers(0, size - max(dw, dh), 2))
        static.append((x0, y0, 0.3 + 0.2 * smooth_noise(rng, dh, dw, 2)))
    w, h = max(2, int(round(ob.size[0]))), max(2, int(round(ob.size[1])))
    orng = np.random.default_rng(ob.seed)
    ca, cb = orng.uniform(0.75, 1.0, 3), orng.uniform(0.2, 0.6, 3)      # bright / darker colour
    f = smooth_noise(orng, h, w, 2)[..., :1]
    tex = (ca * (f > 0.5) + cb * (f <= 0.5)).astype(np.float32)
    mask = np.ones((h, w), np.float32)
    if ob.shape == "ellipse":
        mask[:] = 0.0
        cv2.ellipse(mask, (w // 2, h // 2), (w // 2, h // 2), 0, 0, 360, 1.0, -1)
    c, s, a = ob.trajectory(frames)
    out = np.empty((frames, size, size, 3), np.uint8)
    boxes = np.zeros((frames, 4), np.float32)
    for t in range(frames):
        m = np.float32([[1, 0, -(ox0 - px * t)], [0, 1, -(oy0 - py * t)]])
        img = cv2.warpAffine(bg, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        for x0, y0, d in static:
            img[y0:y0 + d.shape[0], x0:x0 + d.shape[1]] = d
        m = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), float(a[t]), float(s[t]))
        m[0, 2] += c[t, 0] - w / 2.0
        m[1, 2] += c[t, 1] - h / 2.0
        warped = cv2.warpAffine(tex, m, (size, size), flags=cv2.INTER_LINEAR)
        alpha = cv2.warpAffine(mask, m, (size, size), flags=cv2.INTER_LINEAR)[..., None]
        img = img * (1.0 - alpha) + warped * alpha
        out[t] = np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)
        corners = np.array([[0, 0, 1], [w, 0, 1], [0, h, 1], [w, h, 1]], np.float64) @ m.T
        boxes[t] = (*np.clip(corners.min(0), 0, size), *np.clip(corners.max(0), 0, size))
    return out, boxes


def render_one(path: str, spec: dict, size: int, frames: int, fps: float = 25.0,
               style: str = "natural") -> list[list[float]]:
    """Render and encode one video; returns its per-frame boxes (xyxy)."""
    if style == "actions":
        imgs, boxes = synth_figures.render_figure(spec["figure"], size, frames)
        encode_frames(path, imgs, fps=fps)
        return [[round(float(x), 2) for x in b] for b in boxes]
    if style == "bold":
        imgs, boxes = render_bold(spec, size, frames)
        encode_frames(path, imgs, fps=fps)
        return [[round(float(x), 2) for x in b] for b in boxes]
    ob = _object(spec)
    truth = make_synthetic_video(path, width=size, height=size, num_frames=frames, fps=fps,
                                 objects=[ob], pan=spec["pan"], distractors=spec["distractors"],
                                 seed=spec["render_seed"])
    return [[round(float(x), 2) for x in b] for b in np.asarray(truth.boxes)[:, 0]]


def _job(args):
    out_dir, spec, size, frames, fps, style = args
    rel = f"videos/{spec['index']:05d}.mp4"
    tmp = Path(out_dir) / f"videos/.{spec['index']:05d}.tmp.mp4"
    boxes = render_one(str(tmp), spec, size, frames, fps, style)
    os.replace(tmp, Path(out_dir) / rel)
    return rel, boxes


def make_synth_dataset(out_dir: str | os.PathLike, videos: int = 400, size: int = 112,
                       frames: int = 32, seed: int = 0, workers: int = 1, fps: float = 25.0,
                       progress: bool = True, style: str = "natural") -> dict:
    """Write the dataset; returns {"train": n, "val": n, "dir": ...}.

    ``style``: "natural" (default: textured object, textured panning background and
    distractors, low contrast: pixel std ~0.11), "bold" (:func:`render_bold`: high contrast,
    smooth) or "actions" (stick figures; what ``mgm demo`` and ``mgm study`` use). ``boxes.json``
    records the OpenCV version that drew the set: another release rounds the warps and antialiased
    lines differently, so the same seed gives slightly different pixels."""
    if style not in STYLES:
        raise ValueError(f"style must be one of {STYLES}, got {style!r}")
    out = Path(out_dir)
    (out / "videos").mkdir(parents=True, exist_ok=True)
    specs = [video_spec(i, size, frames, seed, style) for i in range(videos)]
    jobs = [(str(out), s, size, frames, fps, style) for s in specs]
    results: dict[str, list] = {}
    for rel, boxes in progress_map(_job, jobs, workers=workers, desc="synth", progress=progress,
                                   chunksize=4):
        results[rel] = boxes
    lists = {"train": [], "val": [], "all": []}
    classes = style_classes(style)
    meta = {"format": "xyxy", "units": "pixels", "width": size, "height": size, "fps": fps,
            "num_frames": frames, "seed": seed, "style": style, "classes": list(classes),
            "generator_version": GENERATOR_VERSION,
            "drawn_with": {"opencv": cv2.__version__, "numpy": np.__version__}, "videos": {}}
    for s in specs:
        rel = f"videos/{s['index']:05d}.mp4"
        lists[s["split"]].append(f"{rel} {s['label']}")
        lists["all"].append(f"{rel} {s['label']}")
        meta["videos"][rel] = {"label": s["label"], "class": s["class"], "split": s["split"],
                               "boxes": results[rel]}
    for name, lines in lists.items():
        (out / f"{name}.txt").write_text("\n".join(lines) + ("\n" if lines else ""))
    (out / "classes.txt").write_text("\n".join(classes) + "\n")
    (out / "boxes.json").write_text(json.dumps(meta))
    return {"dir": str(out), "train": len(lists["train"]), "val": len(lists["val"]),
            "classes": len(classes)}


def load_boxes(path: str | os.PathLike) -> dict:
    """Read ``boxes.json``; returns it with each video's boxes as float32 (T, 4) arrays."""
    meta = json.loads(Path(path).read_text())
    for v in meta["videos"].values():
        v["boxes"] = np.asarray(v["boxes"], np.float32).reshape(-1, 4)
    return meta


def set_fingerprint(out_dir: str | os.PathLike) -> str:
    """SHA-256 of a generated set's videos (names and bytes, in index order): equal fingerprints
    mean the same videos, whatever machine made them. A seed gives the same bytes on every run;
    another OpenCV release can draw a few pixels differently (docs/data.md)."""
    out = Path(out_dir)
    h = hashlib.sha256()
    for rel in sorted(json.loads((out / "boxes.json").read_text())["videos"]):
        h.update(rel.encode() + b"\0")
        h.update((out / rel).read_bytes())
    return h.hexdigest()


def synth_dataset_matches(out_dir: str | os.PathLike, videos: int, seed: int = 0, size: int = 64,
                          frames: int = 32, style: str = "actions") -> bool:
    """Whether ``out_dir`` already holds this set (video count, seed, size, frames, style,
    :data:`GENERATOR_VERSION`, every video present), so :func:`ensure_synth_dataset` reuses it."""
    out = Path(out_dir)
    meta_path = out / "boxes.json"
    if not (meta_path.exists() and (out / "all.txt").exists()):
        return False
    try:
        meta = json.loads(meta_path.read_text())
        same = (len(meta.get("videos", {})) == videos and meta.get("seed") == seed
                and meta.get("width") == size and meta.get("num_frames") == frames
                and meta.get("style") == style and meta.get("generator_version") == GENERATOR_VERSION)
        return same and all((out / rel).exists() for rel in meta["videos"])
    except (OSError, ValueError):
        return False


def ensure_synth_dataset(out_dir: str | os.PathLike, videos: int, seed: int = 0, size: int = 64,
                         frames: int = 32, style: str = "actions", workers: int | None = None,
                         progress: bool = True) -> dict:
    """:func:`make_synth_dataset`, or reuse ``out_dir`` when it already holds the same set
    (:func:`synth_dataset_matches`). Returns {"dir", "reused", ...}."""
    out = Path(out_dir)
    info = {"dir": str(out), "videos": videos, "seed": seed, "size": size, "frames": frames, "style": style}
    if synth_dataset_matches(out, videos, seed=seed, size=size, frames=frames, style=style):
        return {**info, "reused": True}
    workers = workers or max(1, min(4, os.cpu_count() or 1))
    rep = make_synth_dataset(out, videos=videos, size=size, frames=frames, seed=seed, workers=workers,
                             progress=progress, style=style)
    return {**info, "reused": False, **rep}
