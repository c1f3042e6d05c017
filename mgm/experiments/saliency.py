"""The paper's motion saliency score: r_bbox / r_non_bbox, the average motion magnitude of the
cells inside the object boxes over that of the cells outside (``mgm saliency``).

Per sampled frame, each motion cell (``cell`` x ``cell`` px) whose centre lies inside any box
of that frame counts as inside; cells the motion source marked invalid (intra blocks, no
vector) are left out of both sides. Per video: mean magnitude inside / mean outside over all
its sampled frames. Overall: the same ratio with every video's cells pooled, and the mean of
the per-video scores. A score > 1 means the motion is concentrated on the boxed objects.

Boxes files (``--boxes``), detected by their layout:

* ``mgm data synth``'s ``boxes.json``::

      {"format": "xyxy", "units": "pixels", "width": W, "height": H,
       "videos": {"videos/00000.mp4": {"boxes": [[x0, y0, x1, y1], ...]}}}

  one entry per raw frame (0-based) of the video; an entry may also be a list of boxes
  ``[[x0, y0, x1, y1], [...]]`` (several objects) or ``[]`` / ``null`` (none in that frame).
  ``width`` / ``height`` (optional) are the pixel size the boxes refer to: videos decoded at
  another size get their boxes scaled.
* Something-Else (``bounding_box_annotations.json``)::

      {"<video id>": [{"name": "<video id>/0001.jpg",
                       "labels": [{"box2d": {"x1": .., "y1": .., "x2": .., "y2": ..},
                                   "category": ..}, ...]}, ...]}

  frame numbers in the names are 1-based; all labelled objects (hands and objects) count.

Videos of the list are matched to the boxes by their path as written in the list, else by
file name, else by file name without extension (Something-Else keys are SSv2 video ids).
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from mgm.errors import parse_problem
from mgm.video import VideoError, probe_video, read_clip


@dataclass
class VideoBoxes:
    frames: dict[int, np.ndarray]            # raw frame index -> (k, 4) xyxy boxes, pixels
    width: int | None = None                 # pixel size the boxes refer to (None: the video's)
    height: int | None = None


@dataclass
class SaliencyResult:
    videos: list[dict] = field(default_factory=list)   # per video: path, score, inside, outside, ...
    overall: dict = field(default_factory=dict)


def _as_boxes(entry) -> np.ndarray:
    if entry is None:
        return np.zeros((0, 4), np.float32)
    a = np.asarray(entry, dtype=np.float32)
    if a.size == 0:
        return np.zeros((0, 4), np.float32)
    return a.reshape(-1, 4)


def load_boxes_file(path) -> dict[str, VideoBoxes]:
    """{key: VideoBoxes} from an ``mgm data synth`` or Something-Else boxes file."""
    try:
        data = json.loads(Path(path).read_text())
    except ValueError as e:
        raise ValueError(f"{path}: not valid JSON ({parse_problem(e)})") from None
    out: dict[str, VideoBoxes] = {}
    if isinstance(data, dict) and isinstance(data.get("videos"), dict):
        fmt = data.get("format", "xyxy")
        if fmt != "xyxy":
            raise ValueError(f"{path}: box format {fmt!r} is not supported (only xyxy)")
        w, h = data.get("width"), data.get("height")
        for key, v in data["videos"].items():
            boxes = v["boxes"] if isinstance(v, dict) else v
            out[key] = VideoBoxes({i: _as_boxes(b) for i, b in enumerate(boxes)},
                                  int(w) if w else None, int(h) if h else None)
        return out
    if isinstance(data, dict) and all(isinstance(v, list) for v in data.values()):
        for vid, frames in data.items():
            per: dict[int, list] = {}
            for fr in frames:
                m = re.search(r"(\d+)\.\w+$", str(fr.get("name", "")))
                if not m:
                    continue
                t = int(m.group(1)) - 1
                for lab in fr.get("labels", []) or []:
                    b = lab.get("box2d") or {}
                    if all(k in b for k in ("x1", "y1", "x2", "y2")):
                        per.setdefault(t, []).append([b["x1"], b["y1"], b["x2"], b["y2"]])
            out[str(vid)] = VideoBoxes({t: _as_boxes(bs) for t, bs in per.items()})
        return out
    raise ValueError(f"{path}: not an mgm boxes.json ({{'videos': {{...}}}}) nor Something-Else "
                     "annotations ({video_id: [frames]})")


def match(boxes: dict[str, VideoBoxes], rel: str) -> VideoBoxes | None:
    if rel in boxes:
        return boxes[rel]
    p = Path(rel)
    for key in (p.name, p.stem):
        if key in boxes:
            return boxes[key]
    by_name = {Path(k).name: v for k, v in boxes.items()}
    return by_name.get(p.name)


def inside_mask(boxes: np.ndarray, gh: int, gw: int, cell: int, sx: float = 1.0, sy: float = 1.0) -> np.ndarray:
    """bool (gh, gw): cells whose centre lies in any box (boxes scaled by sx, sy)."""
    ys = (np.arange(gh) + 0.5) * cell
    xs = (np.arange(gw) + 0.5) * cell
    m = np.zeros((gh, gw), bool)
    for x0, y0, x1, y1 in boxes:
        x0, x1 = sorted((x0 * sx, x1 * sx))
        y0, y1 = sorted((y0 * sy, y1 * sy))
        m |= ((ys >= y0) & (ys <= y1))[:, None] & ((xs >= x0) & (xs <= x1))[None, :]
    return m


def clip_sums(motion: np.ndarray, valid: np.ndarray, indices, vb: VideoBoxes, cell: int,
              frame_size: tuple[int, int]) -> dict:
    """Sums and counts of magnitudes inside / outside the boxes over a decoded clip.
    Frames without a box entry are skipped."""
    H, W = frame_size
    sx = W / vb.width if vb.width else 1.0
    sy = H / vb.height if vb.height else 1.0
    mag = np.linalg.norm(np.asarray(motion, np.float32), axis=-1)
    gh, gw = mag.shape[1:3]
    acc = {"in_sum": 0.0, "in_n": 0, "out_sum": 0.0, "out_n": 0, "frames": 0}
    for k, raw in enumerate(np.asarray(indices).tolist()):
        b = vb.frames.get(int(raw))
        if b is None:
            continue
        ins = inside_mask(b, gh, gw, cell, sx, sy)
        v = np.asarray(valid[k], bool)
        acc["in_sum"] += float(mag[k][ins & v].sum())
        acc["in_n"] += int((ins & v).sum())
        acc["out_sum"] += float(mag[k][~ins & v].sum())
        acc["out_n"] += int((~ins & v).sum())
        acc["frames"] += 1
    return acc


def _ratio(acc: dict) -> tuple[float, float, float]:
    r_in = acc["in_sum"] / acc["in_n"] if acc["in_n"] else float("nan")
    r_out = acc["out_sum"] / acc["out_n"] if acc["out_n"] else float("nan")
    if not (math.isfinite(r_in) and math.isfinite(r_out)):
        score = float("nan")
    elif r_out > 0:
        score = r_in / r_out
    else:
        score = float("inf") if r_in > 0 else float("nan")
    return r_in, r_out, score


def saliency(paths: list[str], boxes: dict[str, VideoBoxes], keys: list[str] | None = None,
             motion: str = "auto", cell: int = 16, frames: int = 0, stride: int = 1,
             progress: bool = False) -> SaliencyResult:
    """Score every video of ``paths`` (``keys``: the names used to match boxes, default paths).
    ``frames=0``: every frame of each video (stride ``stride``); else a clip of ``frames``
    frames ``stride`` apart from the start."""
    keys = keys or paths
    res = SaliencyResult()
    total = {"in_sum": 0.0, "in_n": 0, "out_sum": 0.0, "out_n": 0, "frames": 0}
    it = list(zip(paths, keys))
    if progress:
        it = tqdm(it, desc="saliency", unit="video")
    for path, key in it:
        row = {"path": key}
        vb = match(boxes, key)
        if vb is None:
            row["error"] = "no boxes for this video"
            res.videos.append(row)
            continue
        try:
            if frames > 0:
                clip = read_clip(path, num_frames=frames, stride=stride, start=0, motion=motion, cell=cell)
            else:
                n = probe_video(path).num_frames
                clip = read_clip(path, indices=np.arange(0, max(n, 1), stride), motion=motion, cell=cell)
        except (VideoError, ValueError) as e:
            row["error"] = str(e)
            res.videos.append(row)
            continue
        acc = clip_sums(clip.motion, clip.motion_valid, clip.indices, vb, cell, clip.frames.shape[1:3])
        for k in total:
            total[k] += acc[k]
        r_in, r_out, score = _ratio(acc)
        row.update(score=score, r_bbox=r_in, r_non_bbox=r_out, frames=acc["frames"],
                   cells_in=acc["in_n"], cells_out=acc["out_n"], motion=clip.motion_source)
        res.videos.append(row)
    r_in, r_out, score = _ratio(total)
    scores = [r["score"] for r in res.videos if "score" in r and math.isfinite(r["score"])]
    res.overall = {"score": score, "r_bbox": r_in, "r_non_bbox": r_out,
                   "mean_video_score": float(np.mean(scores)) if scores else float("nan"),
                   "median_video_score": float(np.median(scores)) if scores else float("nan"),
                   "videos": len(scores), "skipped": sum(1 for r in res.videos if "error" in r)}
    return res
