"""Optical-flow fallback for codecs without motion vectors (and the paper's Table 4b ablation).

OpenCV DIS (fast preset) between consecutive *sampled* frames, on the luma plane, pooled to
the same grid of cells as the codec motion: forward displacement (dx, dy) in px of the content of each
cell of the current frame since the previous sampled frame. The flow is computed from the
current frame to the previous one (so it is located on the current frame's cells, like codec
vectors) and negated.
"""
from __future__ import annotations

import threading

import numpy as np

_local = threading.local()


def _dis():
    import cv2

    d = getattr(_local, "dis", None)
    if d is None:
        d = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_FAST)
        _local.dis = d
    return d


def pool_grid(flow: np.ndarray, cell: int) -> np.ndarray:
    """Mean-pool a dense (H, W, 2) field to (H//cell, W//cell, 2); partial cells are dropped."""
    h, w = flow.shape[:2]
    gh, gw = h // cell, w // cell
    f = flow[: gh * cell, : gw * cell].reshape(gh, cell, gw, cell, 2)
    return f.mean(axis=(1, 3), dtype=np.float32)


def forward_flow_grid(prev_gray: np.ndarray, cur_gray: np.ndarray, cell: int) -> np.ndarray:
    """Forward displacement prev -> cur on the cell grid of the current frame, float32 (gh, gw, 2)."""
    back = _dis().calc(np.ascontiguousarray(cur_gray), np.ascontiguousarray(prev_gray), None)
    return -pool_grid(back, cell)


def flow_motion(gray: dict, idx: np.ndarray, prev: np.ndarray, first_span: int, gh: int, gw: int,
                cell: int) -> tuple[np.ndarray, np.ndarray]:
    """Motion of the sampled frames ``idx`` since ``prev`` from the luma planes ``gray`` (raw
    index -> plane). The first frame's flow is rescaled to ``first_span`` raw frames when fewer
    exist before it; a repeated index has zero, valid motion (none for the first frame); a
    decreasing index gets the negated flow. (motion (T, gh, gw, 2), valid (T, gh, gw))."""
    motion = np.zeros((len(idx), gh, gw, 2), np.float32)
    valid = np.zeros((len(idx), gh, gw), bool)
    for j, (c, p) in enumerate(zip(idx.tolist(), prev.tolist())):
        if c == p:
            valid[j] = j > 0
            continue
        g1, g0 = gray.get(c), gray.get(p)
        if g1 is None or g0 is None or g1.shape != g0.shape:
            continue
        f = forward_flow_grid(g0, g1, cell)
        if j == 0 and c - p != first_span:
            f *= first_span / float(c - p)
        motion[j] = f if c > p else -f
        valid[j] = True
    return motion, valid
