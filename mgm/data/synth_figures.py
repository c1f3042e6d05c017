"""The ``actions`` style of ``mgm data synth``: articulated stick figures whose limbs carry the
action, a human-centric stand-in for Kinetics / SSv2 that a CPU can train on.

Eight classes: walk_left, walk_right (the figure crosses the frame, legs and arms swing), wave
(one hand waves over the head), clap (both hands meet in front of the chest, repeatedly), jump
(the body hops, knees bend on landing), kick (one leg swings up), sit_down / stand_up (the body
lowers / rises as the knees bend / straighten: the same poses in opposite order, so the order of
events carries the label). Several parts move at different speeds: limbs fast, the body slower.

Appearance carries no label: the figure's size, position, colours and limb thickness, the
textured background, the static distractors, a slow bouncing ball in some clips and a mild
camera pan are all drawn at random per video. Frames are drawn at 2× with anti-aliased lines
and area-resized, so thin limbs stay visible at 64².
"""
from __future__ import annotations

import cv2
import numpy as np

from mgm.video.synthetic import smooth_noise

CLASSES = ("walk_left", "walk_right", "wave", "clap", "jump", "kick", "sit_down", "stand_up")

# bone lengths as fractions of the figure's height
TORSO, NECK, HEAD_R, UPPER_ARM, FOREARM, THIGH, SHIN = 0.32, 0.06, 0.08, 0.17, 0.16, 0.23, 0.22


def figure_spec(label: int, size: int, frames: int, rng: np.random.Generator) -> dict:
    """Everything random about one figure video (label given)."""
    height = size * rng.uniform(0.75, 1.0)        # close framing: limbs reach the frame's edges
    return {
        "class": CLASSES[label], "height": float(height),
        "x": float(size * rng.uniform(0.38, 0.62)), "y_feet": float(size * rng.uniform(0.9, 1.02)),
        "speed": float(rng.uniform(0.8, 1.3)),                 # tempo of periodic actions
        "phase": float(rng.uniform(0, 2 * np.pi)),
        "side": int(rng.integers(2)),                           # which arm waves / leg kicks
        "walk_px": float(size * rng.uniform(0.008, 0.014)),     # walking speed, px per frame
        "limb_px": float(max(1.5, size * rng.uniform(0.05, 0.07))),
        "colours": rng.uniform(0.55, 1.0, (3, 3)).tolist(),      # limbs, torso, head
        "pan": rng.uniform(-0.25, 0.25, 2).tolist() if rng.random() < 0.6 else [0.0, 0.0],
        "ball": bool(rng.random() < 0.35),
        "ball_v": rng.uniform(-0.5, 0.5, 2).tolist(),
        "ball_p": rng.uniform(0.1, 0.9, 2).tolist(),
        "distractors": int(rng.integers(2, 5)),
        "render_seed": int(rng.integers(2**31)),
    }


def _pose(spec: dict, t: np.ndarray, frames: int) -> dict[str, np.ndarray]:
    """Joint angles (radians, 0 = pointing down, positive = towards +x) and the body's offset,
    per frame. Arms hang from the neck, legs from the hip."""
    c, w, ph = spec["class"], 2 * np.pi * spec["speed"] / 16.0, spec["phase"]
    n = len(t)
    z = np.zeros(n)
    a = {"arm_l": z - 0.25, "arm_r": z + 0.25, "elb_l": z - 0.1, "elb_r": z + 0.1,
         "hip_l": z - 0.12, "hip_r": z + 0.12, "knee_l": z, "knee_r": z, "dx": z.copy(), "dy": z.copy()}
    s = np.sin(w * t + ph)
    progress = np.clip((t - 0.15 * frames) / (0.7 * frames), 0.0, 1.0)   # 0 -> 1 over the clip
    if c in ("walk_left", "walk_right"):
        d = -1.0 if c == "walk_left" else 1.0
        a["dx"] = d * spec["walk_px"] * (t - frames / 2)
        a["hip_l"], a["hip_r"] = -0.12 + 0.45 * s, 0.12 - 0.45 * s
        a["knee_l"], a["knee_r"] = 0.5 * np.clip(-s, 0, 1), 0.5 * np.clip(s, 0, 1)
        a["arm_l"], a["arm_r"] = -0.2 - 0.4 * s, 0.2 + 0.4 * s
    elif c == "wave":
        side = "r" if spec["side"] else "l"
        sign = 1.0 if side == "r" else -1.0
        a["arm_" + side] = z + sign * 2.6                          # upper arm up and out
        a["elb_" + side] = sign * (2.9 + 0.55 * np.sin(2 * w * t + ph))
    elif c == "clap":
        open_ = 0.5 + 0.5 * np.sin(1.5 * w * t + ph)             # 1: arms wide, 0: hands together
        a["arm_l"], a["arm_r"] = -(0.5 + 1.0 * open_), 0.5 + 1.0 * open_
        a["elb_l"], a["elb_r"] = -(0.5 + 1.0 * open_) + 1.3 * (1 - open_), (0.5 + 1.0 * open_) - 1.3 * (1 - open_)
    elif c == "jump":
        hop = np.abs(np.sin(0.9 * w * t + ph))
        a["dy"] = -spec["height"] * 0.22 * hop
        bend = 0.8 * (1 - hop) ** 4
        a["knee_l"], a["knee_r"], a["hip_l"], a["hip_r"] = -bend, bend, -0.12 + 0.5 * bend, 0.12 - 0.5 * bend
        a["arm_l"], a["arm_r"] = -(0.3 + 2.0 * hop), 0.3 + 2.0 * hop
    elif c == "kick":
        side = "r" if spec["side"] else "l"
        sign = 1.0 if side == "r" else -1.0
        swing = np.clip(np.sin(0.8 * w * t + ph), 0, 1) ** 2
        a["hip_" + side] = sign * (0.12 + 1.3 * swing)
        a["knee_" + side] = -sign * 0.6 * (1 - swing) * swing * 4
        a["arm_l"], a["arm_r"] = -0.5 - 0.3 * swing, 0.5 + 0.3 * swing
    elif c in ("sit_down", "stand_up"):
        p = progress if c == "sit_down" else 1.0 - progress
        p = p * p * (3 - 2 * p)                                    # smooth start and stop
        a["dy"] = spec["height"] * 0.25 * p
        a["hip_l"], a["hip_r"] = -0.12 - 1.2 * p, 0.12 + 1.2 * p
        a["knee_l"], a["knee_r"] = 2.2 * p, -2.2 * p
        a["arm_l"], a["arm_r"] = -0.25 - 1.0 * p, 0.25 + 1.0 * p
    return a


def _limb(start: np.ndarray, angle: float, length: float) -> np.ndarray:
    return start + length * np.array([np.sin(angle), np.cos(angle)])


def skeleton(spec: dict, a: dict, i: int) -> dict:
    """Joint positions (px, y down) of frame ``i``."""
    h = spec["height"]
    hip = np.array([spec["x"] + a["dx"][i], spec["y_feet"] - (THIGH + SHIN) * h + a["dy"][i]])
    neck = hip - np.array([0.0, TORSO * h])
    j = {"hip": hip, "neck": neck, "head": neck - np.array([0.0, (NECK + HEAD_R) * h])}
    for s in ("l", "r"):
        j["elbow_" + s] = _limb(neck, a["arm_" + s][i], UPPER_ARM * h)
        j["hand_" + s] = _limb(j["elbow_" + s], a["elb_" + s][i], FOREARM * h)
        j["knee_" + s] = _limb(hip, a["hip_" + s][i], THIGH * h)
        j["foot_" + s] = _limb(j["knee_" + s], a["hip_" + s][i] + a["knee_" + s][i], SHIN * h)
    return j


def render_figure(spec: dict, size: int, frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Frames (T, size, size, 3) uint8 and the figure's per-frame box (T, 4) xyxy px."""
    k = 2                                                          # supersampling
    big = size * k
    rng = np.random.default_rng(spec["render_seed"])
    px, py = spec["pan"]
    margin = int(np.ceil(max(abs(px), abs(py)) * frames)) + 2
    tint = rng.uniform(0.5, 1.0, 3).astype(np.float32)
    bg = (0.12 + 0.3 * smooth_noise(rng, big + 2 * k * margin, big + 2 * k * margin, 5)) * tint
    stripes = (np.sin(np.arange(bg.shape[1]) * rng.uniform(0.15, 0.4) / k) > 0.6).astype(np.float32)
    bg *= (1.0 - 0.12 * stripes)[None, :, None]
    statics = []
    for _ in range(spec["distractors"]):
        w, h = (int(v) for v in rng.integers(big // 10, big // 5, 2))
        x0, y0 = (int(v) for v in rng.integers(0, big - max(w, h), 2))
        statics.append((x0, y0, 0.25 + 0.3 * smooth_noise(rng, h, w, 2)))
    limb_c, torso_c, head_c = (np.asarray(c, np.float32) for c in spec["colours"])
    thick = max(2, int(round(spec["limb_px"] * k)))
    a = _pose(spec, np.arange(frames, dtype=np.float64), frames)
    ball_p = np.array(spec["ball_p"]) * size
    out = np.empty((frames, size, size, 3), np.uint8)
    boxes = np.zeros((frames, 4), np.float32)
    for i in range(frames):
        ox, oy = k * (margin + px * i), k * (margin + py * i)
        m = np.float32([[1, 0, ox], [0, 1, oy]])
        img = cv2.warpAffine(bg, m, (big, big), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        for x0, y0, d in statics:
            img[y0:y0 + d.shape[0], x0:x0 + d.shape[1]] = d
        if spec["ball"]:
            b = ball_p + np.array(spec["ball_v"]) * i
            b = np.abs((b + size) % (2 * size) - size)              # bounce off the borders
            cv2.circle(img, tuple(int(v) for v in b * k), int(0.06 * big), (0.9, 0.85, 0.3), -1, cv2.LINE_AA)
        j = skeleton(spec, a, i)
        pt = {n: tuple(int(round(v)) for v in p * k) for n, p in j.items()}
        for s in ("l", "r"):
            for u, v in (("hip", "knee_"), ("knee_", "foot_")):
                cv2.line(img, pt[u if u == "hip" else u + s], pt[v + s], limb_c.tolist(), thick, cv2.LINE_AA)
        cv2.line(img, pt["hip"], pt["neck"], torso_c.tolist(), int(thick * 1.6), cv2.LINE_AA)
        for s in ("l", "r"):
            cv2.line(img, pt["neck"], pt["elbow_" + s], limb_c.tolist(), thick, cv2.LINE_AA)
            cv2.line(img, pt["elbow_" + s], pt["hand_" + s], limb_c.tolist(), thick, cv2.LINE_AA)
        cv2.circle(img, pt["head"], int(HEAD_R * spec["height"] * k), head_c.tolist(), -1, cv2.LINE_AA)
        small = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
        out[i] = np.clip(small * 255.0 + 0.5, 0, 255).astype(np.uint8)
        pts = np.stack(list(j.values()))
        r = HEAD_R * spec["height"] + spec["limb_px"]
        boxes[i] = (*np.clip(pts.min(0) - r, 0, size), *np.clip(pts.max(0) + r, 0, size))
    return out, boxes
