"""Exact-count rectangle placement on the patch grid (numpy or torch, batched).

Given a wanted centre (cx, cy) in patch units (patch i spans [i, i+1)) and a wanted aspect
ratio w/h, :func:`render_rects` draws a mask with exactly ``n`` patches per temporal index:

1. integer size: ``w = round(sqrt(n·aspect))`` kept in ``[ceil(n/Hp), min(Wp, n)]``,
   ``h = round(n / w)`` kept in ``[1, Hp]`` — so ``w·h`` is within about ``w/2`` of ``n``;
2. position: the rectangle is centred on (cx, cy) and **shifted** inside the frame where it
   meets a border (never clipped, so its size does not depend on where it is);
3. exact count: all patches are ranked — interior of the rectangle, then its boundary
   patches by distance to the rectangle's centre, then the rings outside it (nearest ring
   first, nearest to the centre first within a ring), ties by raster index — and the first
   ``n`` are masked. So when ``w·h > n`` the boundary patches farthest from the centre (the
   corners) are dropped, and when ``w·h < n`` the outside neighbours nearest to the centre
   (the middles of the long sides) are added: the patches nearest the centre are always
   kept first.

All values are exact small integers in float64, so numpy and torch give the same masks.
"""
from __future__ import annotations

import functools


def rect_size(xp, n: int, hp: int, wp: int, aspect):
    """Integer (w, h) for each wanted aspect ratio (float64 arrays of aspect's shape)."""
    w = xp.floor(xp.sqrt(aspect * float(n)) + 0.5)
    w_lo = float(max(1, -(-n // hp)))
    w_hi = float(max(min(wp, n), 1))
    w = xp.clip(w, w_lo, w_hi)
    h = xp.clip(xp.floor(float(n) / w + 0.5), 1.0, float(hp))
    return w, h


def rect_origin(xp, cx, cy, w, h, hp: int, wp: int):
    """Top-left integer corner of a w×h rectangle centred on (cx, cy), shifted inside."""
    x0 = xp.clip(xp.floor(cx - w / 2 + 0.5), 0.0, float(wp) - w)
    y0 = xp.clip(xp.floor(cy - h / 2 + 0.5), 0.0, float(hp) - h)
    return x0, y0


def render_rects(xp, n: int, hp: int, wp: int, x0, y0, w, h):
    """Boolean masks (..., Hp, Wp) with exactly n patches each, from rectangles (...)."""
    lead = tuple(x0.shape)
    xs = xp.arange(wp).reshape((1,) * len(lead) + (1, wp))
    ys = xp.arange(hp).reshape((1,) * len(lead) + (hp, 1))
    x0 = x0[..., None, None]
    y0 = y0[..., None, None]
    x1 = x0 + w[..., None, None] - 1
    y1 = y0 + h[..., None, None] - 1
    zero = 0.0
    out_x = xp.maximum(xp.maximum(x0 - xs, xs - x1), zero)
    out_y = xp.maximum(xp.maximum(y0 - ys, ys - y1), zero)
    ring = xp.maximum(out_x, out_y)                                  # 0 inside, r on ring r
    depth = xp.minimum(xp.minimum(xs - x0, x1 - xs), xp.minimum(ys - y0, y1 - ys))
    dx = 2 * xs - (x0 + x1)
    dy = 2 * ys - (y0 + y1)
    d2 = dx * dx + dy * dy                                           # (2·distance)², exact
    big = float(4 * (hp * hp + wp * wp) + 1)
    tier = xp.where(ring > 0, ring + 1, xp.where(depth >= 1, 0.0 * d2, 1.0 + 0.0 * d2))
    key = tier * big + xp.where(tier > 0, d2, 0.0 * d2)
    key = key.reshape(lead + (hp * wp,))
    order = xp.argsort(key)
    return xp.select_first(order, n, hp * wp).reshape(lead + (hp, wp))


_TABLES: dict = {}


def rect_table(n: int, hp: int, wp: int):
    """Every rectangle mask the placement can produce for (n, Hp, Wp), rendered once by
    :func:`render_rects` (numpy): ``(offsets, table)`` with ``table[offsets[w] + y0·(Wp−w+1)
    + x0]`` the (Hp, Wp) mask of the w-wide rectangle at (x0, y0) (its height is the one
    :func:`rect_size` gives for w). Both backends index this same table, so they agree."""
    key = (n, hp, wp)
    if key in _TABLES:
        return _TABLES[key]
    import numpy as np

    from ._xp import NumpyXP

    xp = NumpyXP()
    w_lo, w_hi = max(1, -(-n // hp)), max(min(wp, n), 1)
    offsets = np.zeros(wp + 2, np.int64)
    rects = []
    total = 0
    for w in range(1, wp + 1):
        offsets[w] = total
        if w_lo <= w <= w_hi:
            h = int(np.clip(np.floor(float(n) / float(w) + 0.5), 1.0, float(hp)))
            for y0 in range(hp - h + 1):
                for x0 in range(wp - w + 1):
                    rects.append((x0, y0, w, h))
            total += (hp - h + 1) * (wp - w + 1)
    offsets[wp + 1] = total
    r = np.array(rects, np.float64)
    table = render_rects(xp, n, hp, wp, r[:, 0], r[:, 1], r[:, 2], r[:, 3])
    table.flags.writeable = False
    _TABLES[key] = (offsets, table)
    return _TABLES[key]


@functools.lru_cache(maxsize=1024)
def table_bytes(n: int, hp: int, wp: int) -> int:
    """Size of :func:`rect_table` without building it (to decide whether to use it)."""
    w_lo, w_hi = max(1, -(-n // hp)), max(min(wp, n), 1)
    k = 0
    for w in range(w_lo, w_hi + 1):
        h = min(max(int(float(n) / float(w) + 0.5), 1), hp)
        k += (hp - h + 1) * (wp - w + 1)
    return k * hp * wp
