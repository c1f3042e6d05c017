"""Motion grid → patch-grid motion magnitude: the guidance MGM masks follow.

``read_clip`` gives, per sampled frame, a motion grid ``(T, Hm, Wm, 2)`` of forward (dx, dy)
in pixels since the previous sampled frame, and a validity mask (missing vectors are *not*
zero motion). The mask lives on the token grid ``(T', Hp, Wp)``; this module brings the one to
the other:

1. magnitude ``|(dx, dy)|`` per cell and frame; invalid cells carry no value;
2. over each tubelet (``tubelet`` consecutive frames → one temporal index): the mean of the
   valid magnitudes of a cell (a cell is valid for the index if any frame had a vector);
3. over space: the paper's nearest upsampling of the motion map followed by top-1 (max)
   pooling, which on the patch grid is the maximum over the valid motion cells a patch
   overlaps (cells and patches both tile the same image extent). Any grid size works:
   finer motion cells are max-pooled, coarser ones repeated, others use the overlap rule.
"""
from __future__ import annotations

import numpy as np


def _windows(n_cells: int, n_patches: int) -> list[tuple[int, int]]:
    """For each patch, the [lo, hi) range of motion cells it overlaps (same extent)."""
    out = []
    for p in range(n_patches):
        lo = (p * n_cells) // n_patches
        hi = -((-(p + 1) * n_cells) // n_patches)
        out.append((lo, max(hi, lo + 1)))
    return out


def _pool_axis(mag: np.ndarray, valid: np.ndarray, n_patches: int, axis: int):
    """Max of valid magnitudes over the cells each patch overlaps, along ``axis``."""
    n_cells = mag.shape[axis]
    if n_cells == n_patches:
        return mag, valid
    if n_cells % n_patches == 0:
        k = n_cells // n_patches
        shape = mag.shape[:axis] + (n_patches, k) + mag.shape[axis + 1:]
        return mag.reshape(shape).max(axis + 1), valid.reshape(shape).any(axis + 1)
    if n_patches % n_cells == 0:
        k = n_patches // n_cells
        return np.repeat(mag, k, axis=axis), np.repeat(valid, k, axis=axis)
    ms, vs = [], []
    for lo, hi in _windows(n_cells, n_patches):
        sl = [slice(None)] * mag.ndim
        sl[axis] = slice(lo, hi)
        ms.append(mag[tuple(sl)].max(axis))
        vs.append(valid[tuple(sl)].any(axis))
    return np.stack(ms, axis), np.stack(vs, axis)


def motion_to_patch_magnitude(motion, motion_valid=None, grid=(8, 14, 14), tubelet: int = 2):
    """Reduce a motion grid to the patch-grid magnitude the masks are guided by.

    motion:        float (T, Hm, Wm, 2) forward (dx, dy) px, T = grid[0] * tubelet.
    motion_valid:  bool (T, Hm, Wm) or None (all finite cells valid).
    grid:          (T', Hp, Wp) token grid of the mask.
    Returns ``(magnitude float32 (T', Hp, Wp), valid bool (T', Hp, Wp))``; invalid patches
    have magnitude 0.
    """
    motion = np.asarray(motion, dtype=np.float32)
    if motion.ndim != 4 or motion.shape[-1] != 2:
        raise ValueError(f"motion must be (T, Hm, Wm, 2), got shape {motion.shape}")
    tp, hp, wp = (int(g) for g in grid)
    t, hm, wm, _ = motion.shape
    if t != tp * tubelet:
        raise ValueError(f"motion has {t} frames but grid {tuple(grid)} with tubelet {tubelet} "
                         f"needs {tp * tubelet}")
    mag = np.sqrt(motion[..., 0] * motion[..., 0] + motion[..., 1] * motion[..., 1])
    valid = np.isfinite(mag)
    if motion_valid is not None:
        mv = np.asarray(motion_valid, dtype=bool)
        if mv.shape != (t, hm, wm):
            raise ValueError(f"motion_valid shape {mv.shape} does not match motion {motion.shape[:3]}")
        valid &= mv
    mag = np.where(valid, mag, np.float32(0))
    # temporal: mean over the valid frames of each tubelet
    mag = mag.reshape(tp, tubelet, hm, wm)
    valid = valid.reshape(tp, tubelet, hm, wm)
    cnt = valid.sum(1)
    mag = (mag.sum(1) / np.maximum(cnt, 1)).astype(np.float32)
    valid = cnt > 0
    # spatial: nearest upsampling + top-1 pooling == max over the overlapped valid cells
    mag, valid = _pool_axis(mag, valid, hp, 1)
    mag, valid = _pool_axis(mag, valid, wp, 2)
    mag = np.where(valid, mag, np.float32(0)).astype(np.float32)
    return np.ascontiguousarray(mag), np.ascontiguousarray(valid)
