"""Optical-flow fallback for codecs without motion vectors (and the paper's Table 4b ablation).

OpenCV DIS (fast preset) between consecutive *sampled* frames, on the luma plane, pooled to
the same grid as the codec motion: forward displacement (dx, dy) in px of the content of each
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


def pool_grid(flow: np.ndarray, grid: int) -> np.ndarray:
    """Mean-pool a dense (H, W, 2) field to (H//grid, W//grid, 2); partial cells are dropped."""
    h, w = flow.shape[:2]
    gh, gw = h // grid, w // grid
    f = flow[: gh * grid, : gw * grid].reshape(gh, grid, gw, grid, 2)
    return f.mean(axis=(1, 3), dtype=np.float32)


def forward_flow_grid(prev_gray: np.ndarray, cur_gray: np.ndarray, grid: int) -> np.ndarray:
    """Forward displacement prev -> cur on the grid of the current frame, float32 (gh, gw, 2)."""
    back = _dis().calc(np.ascontiguousarray(cur_gray), np.ascontiguousarray(prev_gray), None)
    return -pool_grid(back, grid)
