"""Codec motion vectors (PyAV side data) -> per-frame motion grids -> per-sampled-frame motion.

Conventions (measured on synthetic clips with known motion; docs/video.md has the table):

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
appends the raw side-data bytes to a ``VectorBuffer``; ``mgm.video.vectors`` turns them into
per-frame grids, ``accumulate`` into the motion of each sampled frame.
"""
from __future__ import annotations

import bisect

import numpy as np

from mgm.video.vectors import VectorBuffer, grid_components

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


def accumulate(vel: np.ndarray, valid: np.ndarray, raw_start: int, sampled: np.ndarray,
               prev: np.ndarray, first_span: int) -> tuple[np.ndarray, np.ndarray]:
    """Motion of each sampled frame from per-raw-frame velocity grids.

    vel/valid: (R, gh, gw, 2) / (R, gh, gw) for raw frames raw_start .. raw_start+R-1.
    sampled[j], prev[j]: raw index of sampled frame j and of the frame its motion is measured
    from (the previous sampled frame; for j=0, ``sampled[0] - first_span``, clamped at 0).

    Over the raw frames (lo, hi] between them, per cell: motion = robust mean of the valid
    per-frame velocities (per component: the largest and smallest are dropped when 3+ are
    valid, i.e. the median for spans up to 4 frames, a trimmed mean beyond) x (hi - lo). For
    constant motion this is the sum of the per-frame displacements; gaps (I-frames, intra
    blocks) are filled, and a P-frame whose encoder picked an older reference than the
    estimated one (x264 multi-reference: 2x too large) does not pull the result when the span
    also has B-frames. Valid where at least one raw frame had a vector. For j = 0 the velocity
    is scaled by ``first_span`` even when fewer raw frames exist before it. An index equal to
    the previous one (clamped short clips) has zero, valid motion; a decreasing index gives the
    negated motion of the interval.
    """
    R, gh, gw = valid.shape
    ext = np.zeros((R + 1, gh, gw), bool)
    ext[:R] = valid
    comp = []
    for c in range(2):
        v = np.zeros((R + 1, gh, gw), np.float32)
        v[:R] = np.where(valid, vel[..., c], 0)
        comp.append(v)
    return accumulate_components(comp[0], comp[1], ext, raw_start, sampled, prev, first_span)


def accumulate_components(vx: np.ndarray, vy: np.ndarray, valid: np.ndarray, raw_start: int,
                          sampled: np.ndarray, prev: np.ndarray, first_span: int):
    """``accumulate`` on what ``grid_components`` returns: (R + 1, gh, gw) components, zero
    where invalid, the last frame invalid everywhere."""
    R = valid.shape[0] - 1
    gh, gw = valid.shape[1:]
    T = len(sampled)
    cur = np.asarray(sampled, np.int64) - raw_start
    pre = np.asarray(prev, np.int64) - raw_start
    lo = np.clip(np.minimum(cur, pre), -1, R - 1)
    hi = np.clip(np.maximum(cur, pre), -1, R - 1)
    length = (hi - lo).astype(np.float32)
    if T:
        length[0] = float(first_span)
    scale = np.where(cur >= pre, length, -length)
    L = int(max(1, (hi - lo).max())) if T else 1
    if T and np.all(hi - lo == L) and np.all(lo[1:] == hi[:-1]):
        # consecutive spans of one length (stride sampling): a reshaped view, no gather
        s = int(lo[0]) + 1

        def span(a):
            return a[s:s + T * L].reshape(T, L, gh, gw)
    else:
        # the raw frames of every span, (T, L); slots beyond a span read the invalid frame R
        rows = lo[:, None] + 1 + np.arange(L)[None, :]
        rows = np.where(rows <= hi[:, None], rows, R)

        def span(a):
            return a[rows]
    ok = span(valid)                                  # (T, L, gh, gw)
    cnt = np.count_nonzero(ok, axis=1)                # (T, gh, gw)
    has = cnt > 0
    trim = cnt >= 3
    n_used = np.maximum(np.where(trim, cnt - 2, cnt), 1).astype(np.float32)
    out = np.empty((T, gh, gw, 2), np.float32)
    for c, v in enumerate((vx, vy)):
        v = span(v)
        total = v.sum(1)
        if L >= 3:
            # drop the largest and smallest value where 3+ frames are valid: the exact median
            # for spans of up to 4 frames, a trimmed mean for longer ones
            vmax = np.where(ok, v, -np.inf).max(1)
            vmin = np.where(ok, v, np.inf).min(1)
            with np.errstate(invalid="ignore"):  # inf - inf where fewer than 3 are valid (unused)
                total = np.where(trim, total - vmax - vmin, total)
        out[..., c] = total / n_used * scale[:, None, None]
    mvalid = has
    same = cur == pre
    mvalid[same] = True
    out[same] = 0.0
    if T and cur[0] == pre[0]:  # the first frame has nothing before it
        mvalid[0] = False
    out[~mvalid] = 0.0
    return out, mvalid


def codec_motion(vectors: VectorBuffer, packets: dict, types: dict, pre_types: dict, idx: np.ndarray,
                 prev: np.ndarray, first_span: int, height: int, width: int, cell: int,
                 to_index, debug: bool = False) -> tuple[np.ndarray, np.ndarray, dict]:
    """Motion of the sampled frames ``idx`` (measured from ``prev``) from the vectors the decode
    loop collected. ``packets``: pts -> (decode position, is reference) of every demuxed packet,
    ``to_index`` maps a pts to its raw index (None: no timestamps); ``types``/``pre_types``:
    raw index -> picture type of the frames decoded in / before the clip's range.
    Returns (motion, valid, meta); meta holds the per-raw-frame fields when ``debug``."""
    lo = int(min(idx.min(), prev.min()))
    R = max(types) - lo + 1
    disp = np.arange(lo, lo + R, dtype=np.int64)
    if packets and to_index is not None:
        pk = sorted((to_index(p), d, r) for p, (d, r) in packets.items())
        pk_disp = np.array([x[0] for x in pk], np.int64)
        pk_dpos = np.array([x[1] for x in pk], np.int64)
        pk_ref = np.array([x[2] for x in pk], bool)
        dmap = dict(zip(pk_disp.tolist(), pk_dpos.tolist()))
        dpos = np.array([dmap.get(t, 1 << 40) for t in disp.tolist()], np.int64)
        kp, kf = reference_distances(disp, dpos, pk_disp[pk_ref], pk_dpos[pk_ref])
    else:  # no packet timestamps (raw elementary stream): I/P anchors from frame types
        first = min(pre_types) if pre_types else lo
        ft = "".join(types.get(i, pre_types.get(i, "?")) for i in range(first, lo + R))
        kp, kf = anchor_distances(ft)
        kp, kf = kp[lo - first:], kf[lo - first:]
    vx, vy, valid = grid_components(vectors, lo, R, height, width, cell, kp, kf)
    motion, mvalid = accumulate_components(vx, vy, valid, lo, idx, prev, first_span)
    meta = {}
    if debug:
        meta = dict(raw_velocity=np.stack([vx[:-1], vy[:-1]], -1), raw_valid=valid[:-1], raw_motion_start=lo,
                    k_past=kp, k_future=kf,
                    vectors=[(i, a) for i, a in vectors.per_frame() if lo <= i < lo + R])
    return motion, mvalid, meta
