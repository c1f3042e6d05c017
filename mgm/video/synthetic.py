"""Synthetic test videos with known motion.

Textured objects move with known trajectories (translation, scale, rotation per frame) over a
textured background that may pan; static textured distractors may be added. The clip is
encoded with libx264 through PyAV with B-frames on, so tests exercise P- and B-frame vectors.

    from mgm.video.synthetic import make_synthetic_video, SyntheticObject
    truth = make_synthetic_video("clip.mp4", width=128, height=96, num_frames=48,
                                 objects=[SyntheticObject(size=(32, 32), start=(30, 30),
                                                          velocity=(2.0, 1.0))])
    truth.boxes    # float32 (T, N, 4) xyxy per frame and object (rotated, scaled bounding box)
    truth.centres  # float32 (T, N, 2)

Every object parameter can be given per frame (arrays of length T) so a later dataset can draw
motion classes: left/right/up/down (velocity), towards/away (scale), rotating (rotation).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Sequence

import av
import cv2
import numpy as np


@dataclass
class SyntheticObject:
    """One textured object. All motion parameters are per frame (frame t is 0-based).

    size:      (w, h) in px at scale 1.
    start:     (cx, cy) centre at frame 0.
    velocity:  (vx, vy) px/frame, constant; ignored where ``centres`` is given.
    centres:   optional (T, 2) explicit trajectory of the centre.
    scale:     scale at frame 0; ``scale_rate`` multiplies it every frame (>1: towards camera).
    scales:    optional (T,) explicit scale per frame (overrides scale/scale_rate).
    angle:     rotation in degrees at frame 0 (counter-clockwise on screen);
               ``rotation`` adds degrees per frame. ``angles`` optional (T,) override.
    shape:     "rect" or "ellipse".
    seed:      texture seed (None: derived from the video seed and the object index).
    """

    size: tuple[float, float] = (32, 32)
    start: tuple[float, float] = (32, 32)
    velocity: tuple[float, float] = (2.0, 0.0)
    centres: np.ndarray | None = None
    scale: float = 1.0
    scale_rate: float = 1.0
    scales: np.ndarray | None = None
    angle: float = 0.0
    rotation: float = 0.0
    angles: np.ndarray | None = None
    shape: str = "rect"
    seed: int | None = None

    def trajectory(self, num_frames: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        t = np.arange(num_frames, dtype=np.float64)
        if self.centres is not None:
            c = np.asarray(self.centres, np.float64).reshape(num_frames, 2)
        else:
            c = np.asarray(self.start, np.float64)[None] + t[:, None] * np.asarray(self.velocity, np.float64)[None]
        s = (np.asarray(self.scales, np.float64).reshape(num_frames) if self.scales is not None
             else self.scale * self.scale_rate ** t)
        a = (np.asarray(self.angles, np.float64).reshape(num_frames) if self.angles is not None
             else self.angle + self.rotation * t)
        return c, s, a


def bounce(start, velocity, num_frames: int, bounds) -> np.ndarray:
    """(T, 2) centres moving at constant speed, reflected at bounds = (x0, y0, x1, y1)."""
    t = np.arange(num_frames, dtype=np.float64)[:, None]
    lo = np.array(bounds[:2], np.float64)
    span = np.maximum(np.array(bounds[2:], np.float64) - lo, 1e-6)
    p = (np.asarray(start, np.float64) - lo) + t * np.asarray(velocity, np.float64)
    p = np.mod(p, 2 * span)
    return lo + np.where(p > span, 2 * span - p, p)


@dataclass
class SyntheticTruth:
    path: Path
    width: int
    height: int
    fps: float
    num_frames: int
    boxes: np.ndarray            # (T, N, 4) xyxy, float32, clipped to the frame
    centres: np.ndarray          # (T, N, 2) float32 (may lie outside the frame)
    pan: tuple[float, float]     # background velocity, px/frame
    objects: list[SyntheticObject] = field(default_factory=list)


def _texture(rng: np.random.Generator, h: int, w: int, contrast: float = 1.0) -> np.ndarray:
    """Smooth multi-scale colour noise plus fine grain: enough texture for block matching."""
    out = np.zeros((h, w, 3), np.float32)
    for cell, amp in ((32, 0.5), (8, 0.3), (2, 0.2)):
        small = rng.random((max(2, h // cell + 2), max(2, w // cell + 2), 3), dtype=np.float32)
        out += amp * cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC if cell > 2 else cv2.INTER_NEAREST)
    out = (out - out.mean()) * contrast + 0.5
    return np.clip(out * 255.0, 0, 255).astype(np.uint8)


def render_frames(width: int, height: int, num_frames: int, objects: Sequence[SyntheticObject],
                  pan: tuple[float, float] = (0.0, 0.0), distractors: int = 0, seed: int = 0,
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render RGB frames (T, H, W, 3) uint8; returns (frames, boxes, centres)."""
    rng = np.random.default_rng(seed)
    px, py = float(pan[0]), float(pan[1])
    margin_x = int(np.ceil(abs(px) * num_frames)) + 2
    margin_y = int(np.ceil(abs(py) * num_frames)) + 2
    bg = _texture(rng, height + margin_y, width + margin_x, contrast=0.6)
    # start so that the whole panned path stays inside the texture
    ox0 = margin_x - 1 if px > 0 else 1
    oy0 = margin_y - 1 if py > 0 else 1

    static = []
    for _ in range(distractors):
        dw, dh = rng.integers(max(4, width // 8), max(5, width // 4)), rng.integers(max(4, height // 8), max(5, height // 4))
        x0, y0 = rng.integers(0, max(1, width - dw)), rng.integers(0, max(1, height - dh))
        static.append((int(x0), int(y0), _texture(rng, int(dh), int(dw), contrast=1.2)))

    sprites = []
    for i, ob in enumerate(objects):
        w, h = max(2, int(round(ob.size[0]))), max(2, int(round(ob.size[1])))
        orng = np.random.default_rng(ob.seed if ob.seed is not None else seed * 1000 + i + 1)
        tex = _texture(orng, h, w, contrast=1.4)
        mask = np.zeros((h, w), np.float32)
        if ob.shape == "ellipse":
            cv2.ellipse(mask, (w // 2, h // 2), (w // 2, h // 2), 0, 0, 360, 1.0, -1)
        else:
            mask[:] = 1.0
        traj = ob.trajectory(num_frames)
        sprites.append((tex.astype(np.float32), mask, traj, w, h))

    n = len(objects)
    frames = np.empty((num_frames, height, width, 3), np.uint8)
    boxes = np.zeros((num_frames, n, 4), np.float32)
    centres = np.zeros((num_frames, n, 2), np.float32)
    for t in range(num_frames):
        # background: sub-pixel pan through an affine warp of the big texture
        ox, oy = ox0 - px * t, oy0 - py * t
        m = np.float32([[1, 0, -ox], [0, 1, -oy]])
        img = cv2.warpAffine(bg, m, (width, height), flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_REFLECT).astype(np.float32)
        for x0, y0, tex in static:
            hh, ww = tex.shape[:2]
            img[y0:y0 + hh, x0:x0 + ww] = tex[: height - y0, : width - x0]
        for j, (tex, mask, (c, s, a), w, h) in enumerate(sprites):
            cx, cy = c[t]
            # sprite centre -> (cx, cy), scaled by s, rotated by a (counter-clockwise on screen)
            m = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), float(a[t]), float(s[t]))
            m[0, 2] += cx - w / 2.0
            m[1, 2] += cy - h / 2.0
            warped = cv2.warpAffine(tex, m, (width, height), flags=cv2.INTER_LINEAR,
                                    borderMode=cv2.BORDER_CONSTANT)
            alpha = cv2.warpAffine(mask, m, (width, height), flags=cv2.INTER_LINEAR,
                                   borderMode=cv2.BORDER_CONSTANT)[..., None]
            img = img * (1.0 - alpha) + warped * alpha
            corners = np.array([[0, 0, 1], [w, 0, 1], [0, h, 1], [w, h, 1]], np.float64) @ m.T
            x1, y1 = corners.min(0)
            x2, y2 = corners.max(0)
            boxes[t, j] = (np.clip(x1, 0, width), np.clip(y1, 0, height),
                           np.clip(x2, 0, width), np.clip(y2, 0, height))
            centres[t, j] = (cx, cy)
        frames[t] = np.clip(img + 0.5, 0, 255).astype(np.uint8)
    return frames, boxes, centres


def encode_frames(path: str | Path, frames: np.ndarray, fps: float = 25.0, codec: str = "libx264",
                  bframes: int = 3, gop: int = 32, crf: int = 20, b_pyramid: str = "none",
                  options: dict | None = None, container_options: dict | None = None,
                  refs: int | None = None) -> Path:
    """Encode RGB frames (T, H, W, 3) with PyAV. libx264 gets a fixed GOP (no scene cut,
    no adaptive B decision) so the frame-type pattern is predictable: I B..B P B..B P ..., and no
    macroblock-tree rate control, so the same frames always give the same bytes."""
    path = Path(path)
    T, H, W, _ = frames.shape
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(str(path), "w", options=container_options or {}) as out:
        st = out.add_stream(codec, rate=rate)
        st.width, st.height = W, H
        st.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
        opts = {}
        if codec == "libx264":
            # mbtree=0: x264's macroblock-tree rate control made encodes of the same frames differ
            # from run to run (6 of 8 encodes of one clip were distinct bytes, single-threaded too);
            # without it every encode is identical, so a seed gives the same set (docs/data.md)
            params = (f"bframes={bframes}:b-adapt=0:b-pyramid={b_pyramid}:keyint={gop}:"
                      f"min-keyint={gop}:scenecut=0:mbtree=0" + (f":ref={refs}" if refs else ""))
            opts = {"crf": str(crf), "preset": "fast", "x264-params": params}
        elif codec in ("mpeg4", "mpeg2video", "mpeg1video"):
            st.gop_size = gop
            st.codec_context.max_b_frames = bframes
            opts = {"qscale": "4"}
            st.codec_context.qmax = 6
        elif codec == "libx265":
            opts = {"x265-params": f"bframes={bframes}:keyint={gop}:log-level=error"}
        opts.update(options or {})
        st.options = opts
        for img in frames:
            for pkt in st.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")):
                out.mux(pkt)
        for pkt in st.encode():
            out.mux(pkt)
    return path


def make_synthetic_video(path: str | Path, width: int = 128, height: int = 96, num_frames: int = 48,
                         fps: float = 25.0, objects: Sequence[SyntheticObject] | None = None,
                         pan: tuple[float, float] = (0.0, 0.0), distractors: int = 0, seed: int = 0,
                         codec: str = "libx264", bframes: int = 3, gop: int = 32, crf: int = 20,
                         b_pyramid: str = "none", options: dict | None = None,
                         container_options: dict | None = None, refs: int | None = None) -> SyntheticTruth:
    """Render and encode a synthetic clip; returns the ground truth.

    Default: one textured square (1/3 of the short side) moving at (2, 1) px/frame and bouncing
    off the frame borders, over a static textured background. ``b_pyramid`` is x264's (none | strict | normal); the default
    "none" keeps every B-frame referencing the neighbouring I/P anchors, "normal" makes the
    middle B a reference as x264 does by default on real video. ``container_options`` go to the
    muxer (e.g. ``{"movflags": "faststart"}`` puts the MP4 index first). ``refs``: x264's number
    of reference frames (default: the preset's, 2 for "fast"; 1 makes every P-frame reference
    the previous anchor).
    """
    if objects is None:
        s = max(8, min(width, height) // 3)
        c = bounce((width * 0.3, height * 0.35), (2.0, 1.0), num_frames, (s / 2, s / 2, width - s / 2, height - s / 2))
        objects = [SyntheticObject(size=(s, s), centres=c)]
    frames, boxes, centres = render_frames(width, height, num_frames, objects, pan=pan,
                                           distractors=distractors, seed=seed)
    encode_frames(path, frames, fps=fps, codec=codec, bframes=bframes, gop=gop, crf=crf,
                  b_pyramid=b_pyramid, options=options, container_options=container_options, refs=refs)
    return SyntheticTruth(path=Path(path), width=width, height=height, fps=float(fps),
                          num_frames=num_frames, boxes=boxes, centres=centres,
                          pan=(float(pan[0]), float(pan[1])), objects=list(objects))


def smooth_noise(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    """(h, w, 3) float32 smooth noise in [0, 1]: a cells x cells random grid, cubic-resized."""
    g = rng.random((cells + 1, cells + 1, 3), dtype=np.float32)
    return np.clip(cv2.resize(g, (w, h), interpolation=cv2.INTER_CUBIC), 0.0, 1.0)
