"""Codec motion vectors (PyAV side data) -> per-frame motion grids -> per-sampled-frame motion.

Conventions (measured, see docs/video.md and DESIGN.md §1):

* FFmpeg exports, per inter block, ``motion_x / motion_scale`` = position in the reference
  frame minus position in the current frame (backward), ``source`` -1 for the L0 (past)
  reference, +1 for the L1 (future) reference of B-frames. For an object moving +v px/frame,
  a past reference k frames back gives ``-k*v``, a future one k frames ahead ``+k*v``; hence
  the forward velocity of a block is ``source * motion / (scale * k)``.
* k is not exported. We estimate it per frame and direction as the display distance to the
  nearest *reference* frame on that side that was decoded before the current frame. Which
  frames are references comes from the H.264 NAL header (``nal_ref_idc``), so x264's
  B-pyramid (B-frames referencing the middle "B-ref") is handled; other codecs: I/P are
  references, B are not. The encoder may still pick a farther reference for some blocks
  (multi-reference P-frames); the estimate does not see that.
* Intra blocks and I-frames have no vector: the cell is *missing*, not zero (validity mask).
* MPEG-4 part 2 exports all-zero B-frame vectors: those frames are treated as missing.

Everything here is vectorised over all frames of a clip at once: the decoder loop only
collects the raw side-data arrays.
"""
from __future__ import annotations

import bisect

import numpy as np

# decoder names whose vectors FFmpeg exports with flags2=+export_mvs (measured)
MV_CODECS = frozenset({"h264", "mpeg2video", "mpeg1video", "mpeg4", "msmpeg4", "msmpeg4v3"})
# codecs whose B-frame vectors are exported as all zeros: treat B-frames as missing
ZERO_B_CODECS = frozenset({"mpeg4"})


def h264_ref_idc(data, nal_length_size: int = 4) -> int | None:
    """nal_ref_idc of the first slice NAL of an H.264 packet (a bytes-like object), AVCC
    length-prefixed with ``nal_length_size`` bytes (MP4/MKV, extradata starts with 1), or
    Annex-B start codes when ``nal_length_size`` is 0 (raw .h264, MPEG-TS). None when no slice
    NAL is found."""
    m = memoryview(data).cast("B")
    n = len(m)
    if nal_length_size == 0:
        b = bytes(m[: min(n, 4096)])  # Annex-B: SEI/SPS/PPS come first but are short
        pos = 0
        while True:
            pos = b.find(b"\x00\x00\x01", pos)
            if pos < 0 or pos + 3 >= len(b):
                return None
            h = b[pos + 3]
            if h & 0x1F in (1, 5):
                return (h >> 5) & 3
            pos += 3
    pos = 0
    while pos + nal_length_size < n:
        size = int.from_bytes(m[pos:pos + nal_length_size], "big")
        h = m[pos + nal_length_size]
        if h & 0x1F in (1, 5):
            return (h >> 5) & 3
        if size <= 0:
            return None
        pos += nal_length_size + size
    return None


def reference_distances(frame_disp: np.ndarray, frame_dpos: np.ndarray, ref_disp: np.ndarray,
                        ref_dpos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Estimated display distance to the past (L0) and future (L1) reference of each frame.

    frame_disp/frame_dpos: display index and decode position of each frame of interest;
    ref_disp/ref_dpos: the same for every reference frame (from the demuxed packets, so refs
    decoded but not yet output count too). A frame's candidates are the references decoded
    before it; the nearest one on each side is taken. No candidate -> 1.
    """
    n = len(frame_disp)
    k_past = np.ones(n, np.float32)
    k_fut = np.ones(n, np.float32)
    refs = sorted(zip(np.asarray(ref_disp).tolist(), np.asarray(ref_dpos).tolist()))
    ref_d = [d for d, _ in refs]
    for i in range(n):
        t, dp = int(frame_disp[i]), int(frame_dpos[i])
        j = bisect.bisect_left(ref_d, t) - 1
        while j >= 0 and refs[j][1] >= dp:
            j -= 1
        if j >= 0:
            k_past[i] = t - refs[j][0]
        j = bisect.bisect_right(ref_d, t)
        while j < len(refs) and refs[j][1] >= dp:
            j += 1
        if j < len(refs):
            k_fut[i] = refs[j][0] - t
    return k_past, k_fut


def anchor_distances(frame_types: str) -> tuple[np.ndarray, np.ndarray]:
    """Fallback reference distances from display-order frame types alone (no decode order
    known): P and B/past -> previous I/P, B/future -> next I/P. Wrong for B-pyramids."""
    n = len(frame_types)
    k_past = np.ones(n, np.float32)
    k_fut = np.ones(n, np.float32)
    anchors = [i for i, c in enumerate(frame_types) if c in "IP"]
    for i in range(n):
        j = bisect.bisect_left(anchors, i) - 1
        if j >= 0:
            k_past[i] = i - anchors[j]
        j = bisect.bisect_right(anchors, i)
        if j < len(anchors):
            k_fut[i] = anchors[j] - i
    return k_past, k_fut


def vectors_to_grid(vectors: list[tuple[int, np.ndarray]], num_frames: int, height: int, width: int,
                    grid: int, k_past: np.ndarray, k_fut: np.ndarray, exact: bool = False,
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame forward velocity grid from raw side-data arrays.

    vectors: list of (frame position 0..num_frames-1, structured array from PyAV).
    Returns vel float32 (R, gh, gw, 2) in px/frame (area-weighted mean over the blocks covering
    each cell; bi-predicted blocks count once per direction) and valid bool (R, gh, gw).
    Cells only partly inside the frame (right/bottom remainder) are dropped. ``exact`` forces
    the general block-splitting path (used by tests to check the one-cell-per-block fast path).
    """
    gh, gw = height // grid, width // grid
    R = num_frames
    vel = np.zeros((R, gh, gw, 2), np.float32)
    valid = np.zeros((R, gh, gw), bool)
    if not vectors or gh == 0 or gw == 0:
        return vel, valid
    a, pos = _stack_vectors(vectors)
    # direction slot: 0 = past (source < 0), 1 = future (source > 0)
    slot = pos * 2 + (a["source"] > 0)
    area = a["w"].astype(np.float32) * a["h"]
    wgt = area / np.maximum(a["motion_scale"], 1)
    # one more row/column collects blocks outside the visible grid (coded size is padded)
    GH, GW = gh + 1, gw + 1
    ncell = GH * GW
    if grid % 16 == 0 and not exact:
        # H.264/MPEG blocks lie inside one 16-aligned macroblock: one cell per block
        if grid & (grid - 1) == 0:  # power of two: shift (int16 floor division is slow)
            sh = grid.bit_length() - 1
            cy, cx = a["dst_y"] >> sh, a["dst_x"] >> sh
        else:
            cy, cx = a["dst_y"] // grid, a["dst_x"] // grid
        idx = slot * ncell + (np.minimum(cy, gh).astype(np.int64) * GW + np.minimum(cx, gw))
        size = R * 2 * ncell
        acc_w = np.bincount(idx, area, size)
        acc_x = np.bincount(idx, wgt * a["motion_x"], size)
        acc_y = np.bincount(idx, wgt * a["motion_y"], size)
    else:
        acc_w, acc_x, acc_y = _split_blocks(a, slot, R, grid, gh, gw, GW, ncell, wgt / np.maximum(area, 1))
    shape = (R, 2, GH, GW)
    acc_w = acc_w.reshape(shape)[:, :, :gh, :gw]
    acc_x = acc_x.reshape(shape)[:, :, :gh, :gw]
    acc_y = acc_y.reshape(shape)[:, :, :gh, :gw]
    # per frame and direction: forward velocity = source * motion / (scale * k)
    fp = (-1.0 / np.asarray(k_past, np.float64))[:, None, None]
    ff = (1.0 / np.asarray(k_fut, np.float64))[:, None, None]
    tot_w = acc_w[:, 0] + acc_w[:, 1]
    has = tot_w > 0
    inv = 1.0 / np.where(has, tot_w, 1.0)
    vel[..., 0] = (acc_x[:, 0] * fp + acc_x[:, 1] * ff) * inv
    vel[..., 1] = (acc_y[:, 0] * fp + acc_y[:, 1] * ff) * inv
    valid[:] = has
    return vel, valid


# The AVMotionVector layout as PyAV's to_ndarray() reports it; learnt from the first frame.
MV_DTYPE: np.dtype | None = None


def raw_vectors(side_data) -> bytes | np.ndarray:
    """Cheapest copy of a frame's MOTION_VECTORS side data: raw bytes once the dtype is known
    (one memcpy; PyAV's to_ndarray rebuilds a structured dtype per call)."""
    global MV_DTYPE
    if MV_DTYPE is None:
        a = side_data.to_ndarray()
        MV_DTYPE = a.dtype
        return a
    return bytes(side_data)


def _stack_vectors(vectors):
    """One structured array for all frames (joined as bytes: numpy's structured concatenate is
    slow) and the frame position of every vector."""
    parts = [v if isinstance(v, bytes) else np.ascontiguousarray(v, MV_DTYPE).tobytes() for _, v in vectors]
    itemsize = MV_DTYPE.itemsize
    a = np.frombuffer(b"".join(parts), MV_DTYPE)
    pos = np.repeat(np.array([p for p, _ in vectors], np.int64), [len(x) // itemsize for x in parts])
    return a, pos


def _split_blocks(a, slot, R, grid, gh, gw, GW, ncell, per_px):
    """General grid: distribute each block's area over the cells it overlaps."""
    bw = a["w"].astype(np.int64)
    bh = a["h"].astype(np.int64)
    x0 = a["dst_x"].astype(np.int64) - bw // 2
    y0 = a["dst_y"].astype(np.int64) - bh // 2
    x1, y1 = x0 + bw, y0 + bh
    size = R * 2 * ncell
    acc_w = np.zeros(size)
    acc_x = np.zeros(size)
    acc_y = np.zeros(size)
    mx = per_px * a["motion_x"]
    my = per_px * a["motion_y"]
    cx0, cy0 = np.floor_divide(x0, grid), np.floor_divide(y0, grid)
    span_x = int(np.max(np.floor_divide(x1 - 1, grid) - cx0)) + 1
    span_y = int(np.max(np.floor_divide(y1 - 1, grid) - cy0)) + 1
    for oy in range(span_y):
        cy = cy0 + oy
        hy = np.minimum(y1, (cy + 1) * grid) - np.maximum(y0, cy * grid)
        for ox in range(span_x):
            cx = cx0 + ox
            hx = np.minimum(x1, (cx + 1) * grid) - np.maximum(x0, cx * grid)
            ok = (hx > 0) & (hy > 0) & (cx >= 0) & (cy >= 0)
            if not ok.any():
                continue
            ar = (hx * hy)[ok].astype(np.float64)
            idx = slot[ok] * ncell + np.minimum(cy[ok], gh) * GW + np.minimum(cx[ok], gw)
            acc_w += np.bincount(idx, ar, size)
            acc_x += np.bincount(idx, ar * mx[ok], size)
            acc_y += np.bincount(idx, ar * my[ok], size)
    return acc_w, acc_x, acc_y


def accumulate(vel: np.ndarray, valid: np.ndarray, raw_start: int, sampled: np.ndarray,
               prev: np.ndarray, first_span: int) -> tuple[np.ndarray, np.ndarray]:
    """Motion of each sampled frame from per-raw-frame velocity grids.

    vel/valid: (R, gh, gw, 2) / (R, gh, gw) for raw frames raw_start .. raw_start+R-1.
    sampled[j], prev[j]: raw index of sampled frame j and of the frame its motion is measured
    from (the previous sampled frame; for j=0, ``sampled[0] - first_span``, clamped at 0).

    Over the raw frames (lo, hi] between them, per cell: motion = robust mean of the valid
    per-frame velocities (per component: the largest and smallest are dropped when 3+ are
    valid, i.e. the median for spans up to 4 frames, a trimmed mean beyond) x (hi - lo). For constant motion this is the sum of the per-frame
    displacements; gaps (I-frames, intra blocks) are filled, and a P-frame whose encoder picked
    an older reference than the estimated one (x264 multi-reference: 2x too large) does not
    pull the result when the span also has B-frames. Valid where at least one raw frame had a
    vector. For j = 0 the velocity is scaled by ``first_span`` even when fewer raw frames exist
    before it. An index equal to the previous one (clamped short clips) has zero, valid motion;
    a decreasing index gives the negated motion of the interval.
    """
    R = vel.shape[0]
    T = len(sampled)
    gh, gw = vel.shape[1:3]
    cur = np.asarray(sampled, np.int64) - raw_start
    pre = np.asarray(prev, np.int64) - raw_start
    lo = np.clip(np.minimum(cur, pre), -1, R - 1)
    hi = np.clip(np.maximum(cur, pre), -1, R - 1)
    sign = np.where(cur >= pre, 1.0, -1.0)
    length = (hi - lo).astype(np.float64)
    if T:
        length[0] = float(first_span)
    L = int(max(1, (hi - lo).max())) if T else 1
    # gather the raw frames of every span: (T, L, gh, gw[, 2]); slots beyond a span are invalid
    rows = lo[:, None] + 1 + np.arange(L)[None, :]
    in_span = rows <= hi[:, None]
    rows = np.minimum(rows, R - 1)
    ok = valid[rows] & in_span[:, :, None, None]             # (T, L, gh, gw)
    cnt = ok.sum(1)                                          # (T, gh, gw)
    has = cnt > 0
    trim = cnt >= 3
    n_used = np.maximum(np.where(trim, cnt - 2, cnt), 1)
    med = np.empty((T, gh, gw, 2), np.float64)
    for c in range(2):  # per component on contiguous arrays (numpy broadcasting is slow here)
        v = np.ascontiguousarray(vel[..., c])[rows]           # (T, L, gh, gw)
        total = np.where(ok, v, 0.0).sum(1)
        if L >= 3:
            # drop the largest and smallest value where 3+ frames are valid: the exact median
            # for spans of up to 4 frames, a trimmed mean for longer ones
            vmax = np.where(ok, v, -np.inf).max(1)
            vmin = np.where(ok, v, np.inf).min(1)
            with np.errstate(invalid="ignore"):  # inf - inf where fewer than 3 are valid (unused)
                total = np.where(trim, total - (vmax + vmin), total)
        med[..., c] = total / n_used
    motion = (med * (sign * length)[:, None, None, None]).astype(np.float32)
    mvalid = has.copy()
    same = cur == pre
    mvalid[same] = True
    motion[same] = 0.0
    if T and cur[0] == pre[0]:  # the first frame has nothing before it
        mvalid[0] = False
    motion[~mvalid] = 0.0
    return motion, mvalid
