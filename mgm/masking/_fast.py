"""Per-clip fast path for the rectangle strategies (block, smm, mgm with topk=1), numpy.

The same arithmetic as the generic builders in ``strategies.py`` (which run on numpy or
torch through ``_xp``), written with Python floats and a few small numpy calls because a
single clip has only T' rectangles: about 3x faster per clip. Python floats are IEEE float64
and every operation below is the one the generic code does, in the same order, so the masks
are identical; ``tests/test_masking_torch.py`` checks this per-clip path against the batched
torch path for every strategy, option set and fallback.
"""
from __future__ import annotations

import math

import numpy as np

from .rect import rect_table

Q = 256.0


def _zero_sum(u: np.ndarray, bound: float):
    """Steps (S, K) and offsets (S+1, K), as strategies._zero_sum_offsets (batch axis dropped)."""
    q = np.floor((2.0 * u - 1.0) * (bound * Q) + 0.5) / Q
    n = q.shape[0]
    total = q.sum(0)[None]
    off = (float(n) * np.cumsum(q, 0) - (np.arange(n, dtype=np.float64) + 1.0)[:, None] * total) / float(n)
    return q - total / float(n), np.concatenate([0.0 * total, off], 0)


def _start(pos, w0, hp, wp):
    return (float(pos[0]) * max(wp - w0, 0.0) + min(w0, wp) / 2,
            float(pos[1]) * max(hp - w0, 0.0) + min(w0, hp) / 2)


def _smm(grid, n, draws, opts):
    t, hp, wp = grid
    w0 = float(np.sqrt(n))
    cx, cy = _start(draws["pos"], w0, hp, wp)
    ex, ey = min(w0, wp) / 2, min(w0, hp) / 2
    v = (np.floor((2.0 * draws["vel"] - 1.0) * (opts["velocity"] * Q) + 0.5) / Q).tolist()
    cxs, cys = [cx], [cy]
    for i in range(t - 1):
        cx = min(max(cx + v[i][0], ex), wp - ex)
        cy = min(max(cy + v[i][1], ey), hp - ey)
        cxs.append(cx)
        cys.append(cy)
    if opts["jitter"] and t > 1:
        s, off = _zero_sum(draws["scale"][:, None], opts["scale_step"])
        steps = np.concatenate([s, -s], 1)
        off = off[:, 0].tolist()
        aspect = [max(w0 + o, 0.5) / max(w0 - o, 0.5) for o in off]
    else:
        steps = np.zeros((max(t - 1, 0), 2))
        aspect = [1.0] * t
    return cxs, cys, aspect, steps


def _mgm(grid, n, draws, mag, val, opts):
    t, hp, wp = grid
    m = mag.reshape(t, hp * wp).astype(np.float64)
    v = val.reshape(t, hp * wp)
    found = (v & (m >= opts["min_motion"])).any(1)
    am = np.argmax(np.where(v, m, -1.0), 1).tolist()
    fl = found.tolist()
    w0 = float(np.sqrt(n))
    cx, cy = _start(draws["pos"], w0, hp, wp)
    cxs, cys = [], []
    for i in range(t):
        if fl[i] and (i > 0 or opts["init"] == "motion"):
            cx, cy = am[i] % wp + 0.5, am[i] // wp + 0.5
        cxs.append(cx)
        cys.append(cy)
    if opts["jitter"] and t > 1:
        steps, off = _zero_sum(draws["jit"], opts["scale_step"])
        off = np.maximum(w0 + off, 0.5)
        aspect = (off[:, 0] / off[:, 1]).tolist()
    else:
        steps = np.zeros((max(t - 1, 0), 2))
        aspect = [1.0] * t
    return cxs, cys, aspect, steps, found


def rect_mask(strategy, grid, n, draws, mag=None, val=None, opts=None):
    """(mask (T', Hp, Wp), centres (T', 2), sizes (T', 2), steps, motion_found, fallback)."""
    t, hp, wp = grid
    found = None
    fallback = False
    if strategy == "block":
        cx, cy = _start(draws["pos"], float(np.sqrt(n)), hp, wp)
        cxs, cys, aspect, steps = [cx] * t, [cy] * t, [1.0] * t, None
    elif strategy == "smm":
        cxs, cys, aspect, steps = _smm(grid, n, draws, opts)
    else:
        cxs, cys, aspect, steps, found = _mgm(grid, n, draws, mag, val, opts)
        if not found.any():
            fallback = True
            cxs, cys, aspect, steps = _smm(grid, n, draws, opts)
    offsets, table = rect_table(n, hp, wp)
    w_lo, w_hi = float(max(1, -(-n // hp))), float(max(min(wp, n), 1))
    idx, cen, siz = [], [], []
    for i in range(t):
        w = min(max(float(math.floor(math.sqrt(aspect[i] * float(n)) + 0.5)), w_lo), w_hi)
        h = min(max(float(math.floor(float(n) / w + 0.5)), 1.0), float(hp))
        x0 = min(max(float(math.floor(cxs[i] - w / 2 + 0.5)), 0.0), float(wp) - w)
        y0 = min(max(float(math.floor(cys[i] - h / 2 + 0.5)), 0.0), float(hp) - h)
        wi = int(w)
        idx.append(int(offsets[wi]) + int(y0) * (wp + 1 - wi) + int(x0))
        cen.append((x0 + w / 2, y0 + h / 2))
        siz.append((w, h))
    return table[idx], np.array(cen), np.array(siz), steps, found, fallback
