"""Rectangles with an exact patch count on the patch grid (torch, batched, any device).

Given a wanted centre (cx, cy) in patch units (patch i spans [i, i+1)) and a wanted aspect
ratio w/h, :func:`rect_masks` draws a mask with exactly ``n`` patches per temporal index:

1. integer size: ``w = round(sqrt(n·aspect))`` kept in ``[ceil(n/Hp), min(Wp, n)]``,
   ``h = round(n / w)`` kept in ``[1, Hp]``, so ``w·h`` is within about ``w/2`` of ``n``;
2. position: the rectangle is centred on (cx, cy) and **shifted** inside the frame where it
   meets a border (never clipped, so its size does not depend on where it is);
3. exact count: all patches are ranked (interior of the rectangle, then its boundary patches
   by distance to the rectangle's centre, then the rings outside it, nearest ring first and
   nearest to the centre first within a ring, ties by raster index) and the first ``n`` are
   masked. When ``w·h > n`` the boundary patches farthest from the centre (the corners) are
   dropped; when ``w·h < n`` the outside neighbours nearest the centre (the middles of the long
   sides) are added.

Sizes and positions are small integers held in float64, and the ranking keys are unique int64,
so the result is the same on every device.
"""
from __future__ import annotations

import torch


def rect_size(n: int, hp: int, wp: int, aspect: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer (w, h) as float64 tensors of aspect's shape."""
    w = torch.floor(torch.sqrt(aspect * n) + 0.5).clamp(max(1, -(-n // hp)), max(min(wp, n), 1))
    h = torch.floor(n / w + 0.5).clamp(1, hp)
    return w, h


def rect_masks(n: int, hp: int, wp: int, cx: torch.Tensor, cy: torch.Tensor, aspect: torch.Tensor):
    """Masks (..., Hp, Wp) with exactly n patches each, and the rectangles' centres and sizes
    (..., 2) after shifting, from wanted centres and aspects (...) in float64."""
    w, h = rect_size(n, hp, wp, aspect)
    x0 = torch.minimum(torch.floor(cx - w / 2 + 0.5).clamp(min=0), wp - w)
    y0 = torch.minimum(torch.floor(cy - h / 2 + 0.5).clamp(min=0), hp - h)
    lead = x0.shape
    dev = x0.device
    xs = torch.arange(wp, device=dev, dtype=torch.int64).view(*(1,) * len(lead), 1, wp)
    ys = torch.arange(hp, device=dev, dtype=torch.int64).view(*(1,) * len(lead), hp, 1)
    ix0, iy0 = x0.long()[..., None, None], y0.long()[..., None, None]
    ix1, iy1 = ix0 + w.long()[..., None, None] - 1, iy0 + h.long()[..., None, None] - 1
    # 0 inside the rectangle, r on the r-th ring around it
    ring = torch.maximum((ix0 - xs).clamp(min=0).maximum(xs - ix1), (iy0 - ys).clamp(min=0).maximum(ys - iy1))
    depth = torch.minimum(torch.minimum(xs - ix0, ix1 - xs), torch.minimum(ys - iy0, iy1 - ys))
    d2 = (2 * xs - ix0 - ix1) ** 2 + (2 * ys - iy0 - iy1) ** 2       # (2·distance)², exact
    tier = torch.where(ring > 0, ring + 1, (depth < 1).long())       # 0 interior, 1 boundary
    big = 4 * (hp * hp + wp * wp) + 1
    key = (tier * big + torch.where(tier > 0, d2, 0)) * (hp * wp) + ys * wp + xs
    key = key.reshape(*lead, hp * wp)
    keep = key.argsort(-1)[..., :n]
    mask = torch.zeros(key.shape, dtype=torch.bool, device=dev).scatter_(-1, keep, True)
    centres = torch.stack([x0 + w / 2, y0 + h / 2], -1)
    return mask.reshape(*lead, hp, wp), centres, torch.stack([w, h], -1)
