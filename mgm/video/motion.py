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
appends the raw side-data bytes to a ``VectorBuffer``.
"""
from __future__ import annotations

import bisect
import functools
import threading

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


# The AVMotionVector layout as PyAV's to_ndarray() reports it; learnt from the first frame.
MV_DTYPE: np.dtype | None = None
# per thread: the storage of the last VectorBuffer, reused by the next clip (a fresh multi-MB
# buffer costs page faults on every clip; it stays as large as the largest clip's vectors)
_tls = threading.local()


class VectorBuffer:
    """The MOTION_VECTORS side data of the decoded frames of one clip: appended as raw bytes
    (one memcpy per frame into a buffer that doubles when full; PyAV's to_ndarray would build
    a structured dtype per call) with the display index and vector count of each frame, turned
    into arrays once after the loop. ``reuse=True`` takes over this thread's storage from the
    previous clip (only one such buffer may be in use per thread)."""

    def __init__(self, reuse: bool = False):
        self._reuse = reuse
        self._buf = getattr(_tls, "storage", None) if reuse else None
        if self._buf is None:
            self._buf = np.empty(1 << 20, np.uint8)
            if reuse:
                _tls.storage = self._buf
        self._view = None
        self._used = 0
        self.index: list[int] = []
        self.count: list[int] = []

    @property
    def data(self) -> np.ndarray:
        """The records' bytes (uint8, a view)."""
        return self._buf[:self._used]

    def add(self, index: int, side_data) -> None:
        """Append one frame's vectors (a PyAV side-data object or anything bytes-like whose
        bytes are AVMotionVector records)."""
        global MV_DTYPE
        if MV_DTYPE is None:
            MV_DTYPE = side_data.to_ndarray().dtype
        raw = memoryview(side_data).cast("B")
        n = raw.nbytes // MV_DTYPE.itemsize
        if not n:
            return
        end = self._used + n * MV_DTYPE.itemsize
        if end > self._buf.size:
            grown = np.empty(max(2 * self._buf.size, end), np.uint8)
            grown[:self._used] = self._buf[:self._used]
            self._buf = grown
            self._view = None
            if self._reuse:
                _tls.storage = grown
        if self._view is None:
            self._view = memoryview(self._buf)
        self._view[self._used:end] = raw[:end - self._used]  # a memcpy, no numpy call per frame
        self._used = end
        self.index.append(int(index))
        self.count.append(n)

    @classmethod
    def from_list(cls, vectors) -> VectorBuffer:
        """From [(index, bytes or structured array)], e.g. ``clip.meta["vectors"]``."""
        global MV_DTYPE
        b = cls()
        for i, a in vectors:
            if isinstance(a, np.ndarray):
                MV_DTYPE = MV_DTYPE or a.dtype
                a = np.ascontiguousarray(a, MV_DTYPE).view(np.uint8)
            b.add(i, a)
        return b

    def records(self) -> np.ndarray:
        """All vectors as one structured array (a view of the buffer)."""
        if not self.count:
            return np.zeros(0, MV_DTYPE or np.uint8)
        return self.data.view(MV_DTYPE)

    def per_frame(self) -> list[tuple[int, np.ndarray]]:
        """[(index, structured array)] per frame (copies; for ``debug=True`` and tests)."""
        a = self.records()
        ends = np.cumsum(self.count).tolist()
        return [(i, a[e - n:e].copy()) for i, n, e in zip(self.index, self.count, ends)]


def _fields(data, n: int) -> dict[str, np.ndarray]:
    """Plain strided views of each record field (no structured-array indexing in the hot path)."""
    size = MV_DTYPE.itemsize
    return {name: np.ndarray((n,), dt, buffer=data, offset=off, strides=(size,))
            for name, (dt, off) in MV_DTYPE.fields.items()}


def vectors_to_grid(vectors, num_frames: int, height: int, width: int, grid: int, k_past: np.ndarray,
                    k_fut: np.ndarray, exact: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame forward velocity grid from raw side data.

    vectors: a VectorBuffer whose indices are frame positions 0..num_frames-1, or a list of
    (position, bytes or structured array from PyAV). Returns vel float32 (R, gh, gw, 2) in
    px/frame (area-weighted mean over the blocks covering each cell; bi-predicted blocks count
    once per direction) and valid bool (R, gh, gw). Cells only partly inside the frame
    (right/bottom remainder) are dropped. ``exact`` forces the general block-splitting path
    (used by tests to check the one-cell-per-block fast path).
    """
    buf = vectors if isinstance(vectors, VectorBuffer) else VectorBuffer.from_list(vectors)
    vx, vy, valid = grid_components(buf, 0, num_frames, height, width, grid, k_past, k_fut, exact)
    return np.stack([vx[:-1], vy[:-1]], -1), valid[:-1]


# vectors per vectorised pass: the ~2.6 MB of records a pass reads mostly stay in the CPU cache,
# where one pass over a whole 720p clip (~11 MB of 40-byte records, read field by field) would
# not (measured on 720p: 3x slower in one pass; 8192: 1.7x slower from numpy call overhead)
_CHUNK = 65536


@functools.lru_cache(maxsize=16)
def _cell_luts(grid: int, gh: int, gw: int) -> tuple[np.ndarray, np.ndarray]:
    """Row offset (y) and column (x) of the cell holding a block centre coordinate 0..32767
    (int16), on a (gh + 1) x (gw + 1) grid whose last row/column collects the padding."""
    cells = np.arange(1 << 15) // grid
    return np.minimum(cells, gh) * (gw + 1), np.minimum(cells, gw)


def grid_components(buf: VectorBuffer, offset: int, num_frames: int, height: int, width: int, grid: int,
                    k_past: np.ndarray, k_fut: np.ndarray, exact: bool = False):
    """``vectors_to_grid`` for the frames ``offset .. offset+num_frames-1`` of ``buf`` as
    contiguous (vx, vy, valid) arrays of shape (R + 1, gh, gw): what ``accumulate_components``
    reads. The extra last frame is invalid (and zero) everywhere; so is every invalid cell.

    Forward velocity of a block = ``source * motion / (motion_scale * k)`` with k the reference
    distance of its frame and direction; per cell the area-weighted mean over all blocks of both
    directions. Vectorised over runs of frames of about ``_CHUNK`` vectors: a few
    int16/int32/float32 operations on plain field views and three bincounts each.
    """
    gh, gw = height // grid, width // grid
    R = int(num_frames)
    vx = np.zeros((R + 1, gh, gw), np.float32)
    vy = np.zeros((R + 1, gh, gw), np.float32)
    valid = np.zeros((R + 1, gh, gw), bool)
    if not buf.count or gh == 0 or gw == 0 or R == 0:
        return vx, vy, valid
    pos = np.asarray(buf.index, np.int64) - offset
    counts = np.asarray(buf.count, np.int64)
    data = buf.data
    if pos.min() < 0 or pos.max() >= R:  # frames outside the range: keep only the others
        keep = (pos >= 0) & (pos < R)
        data = buf.records()[np.repeat(keep, counts)].view(np.uint8)
        pos, counts = pos[keep], counts[keep]
        if not len(pos):
            return vx, vy, valid
    # sign / k per frame and direction: index 2*pos + (source > 0) (-1: past, +1: future ref)
    ktab = np.empty((R, 2))
    ktab[:, 0] = -1.0 / np.asarray(k_past, np.float64)[:R]
    ktab[:, 1] = 1.0 / np.asarray(k_fut, np.float64)[:R]
    # one more row/column collects blocks outside the visible grid (coded size is padded)
    GH, GW = gh + 1, gw + 1
    ncell = GH * GW
    fast = grid % 16 == 0 and not exact
    if fast:
        cy_lut, cx_lut = _cell_luts(grid, gh, gw)
    # runs of whole frames; a frame index seen twice (broken timestamps) sums all its vectors
    chunked = fast and bool(np.all(np.diff(pos) > 0))
    isz = MV_DTYPE.itemsize
    ends = np.cumsum(counts).tolist()
    a = 0
    while a < len(pos):
        b = a + 1
        first = ends[a] - counts[a]
        if chunked:
            while b < len(pos) and ends[b] - first <= _CHUNK:
                b += 1
        else:
            b = len(pos)
        f = _fields(data[first * isz:ends[b - 1] * isz], ends[b - 1] - first)
        p, c = pos[a:b], counts[a:b]
        p0, p1 = int(p.min()), int(p.max()) + 1
        size = (p1 - p0) * ncell
        kidx = np.repeat(p * 2, c)
        kidx += f["source"] > 0
        area = np.multiply(f["w"], f["h"], dtype=np.float64)  # float64: what bincount sums
        coef = np.take(ktab.ravel(), kidx)
        coef /= f["motion_scale"]
        if fast:
            # H.264/MPEG blocks lie inside one 16-aligned macroblock: one cell per block, looked
            # up from the block centre (one gather per axis instead of shift, clamp, multiply)
            idx = np.repeat((p - p0) * ncell, c)
            idx += np.take(cy_lut, f["dst_y"], mode="clip")
            idx += np.take(cx_lut, f["dst_x"], mode="clip")
            coef *= area
            acc = (np.bincount(idx, area, size), np.bincount(idx, coef * f["motion_x"], size),
                   np.bincount(idx, coef * f["motion_y"], size))
        else:
            acc = _split_blocks(f, np.repeat(p - p0, c), grid, gh, gw, GW, ncell, size, coef)
        has = acc[0] > 0
        inv = np.divide(1.0, acc[0], out=np.zeros_like(acc[0]), where=has)
        shape = (p1 - p0, GH, GW)
        vx[p0:p1] = (acc[1] * inv).reshape(shape)[:, :gh, :gw]
        vy[p0:p1] = (acc[2] * inv).reshape(shape)[:, :gh, :gw]
        valid[p0:p1] = has.reshape(shape)[:, :gh, :gw]
        a = b
    return vx, vy, valid


def _split_blocks(f, frame, grid, gh, gw, GW, ncell, size, per_px):
    """General grid: distribute each block's area over the cells it overlaps. ``per_px``: a
    block's weight per px of area, sign / (k * motion_scale). Returns (area, x, y) sums."""
    bw = f["w"].astype(np.int64)
    bh = f["h"].astype(np.int64)
    x0 = f["dst_x"].astype(np.int64) - bw // 2
    y0 = f["dst_y"].astype(np.int64) - bh // 2
    x1, y1 = x0 + bw, y0 + bh
    acc = (np.zeros(size), np.zeros(size), np.zeros(size))
    mx = per_px * f["motion_x"]
    my = per_px * f["motion_y"]
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
            idx = frame[ok] * ncell + np.minimum(cy[ok], gh) * GW + np.minimum(cx[ok], gw)
            acc[0][:] += np.bincount(idx, ar, size)
            acc[1][:] += np.bincount(idx, ar * mx[ok], size)
            acc[2][:] += np.bincount(idx, ar * my[ok], size)
    return acc


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
                 prev: np.ndarray, first_span: int, height: int, width: int, grid: int,
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
    vx, vy, valid = grid_components(vectors, lo, R, height, width, grid, kp, kf)
    motion, mvalid = accumulate_components(vx, vy, valid, lo, idx, prev, first_span)
    meta = {}
    if debug:
        meta = dict(raw_velocity=np.stack([vx[:-1], vy[:-1]], -1), raw_valid=valid[:-1], raw_motion_start=lo,
                    k_past=kp, k_future=kf,
                    vectors=[(i, a) for i, a in vectors.per_frame() if lo <= i < lo + R])
    return motion, mvalid, meta
