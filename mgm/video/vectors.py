"""Codec motion vectors as FFmpeg exports them (PyAV side data) -> per-frame velocity grids.

The decode loop appends each frame's raw ``MOTION_VECTORS`` side data to a ``VectorBuffer``;
after the loop ``grid_components`` turns all of them into one forward-velocity grid per raw
frame, vectorised over the whole clip. The conventions (sign, reference distance k) are in
``mgm.video.motion``; what a per-frame grid means for the sampled frames is
``mgm.video.motion.accumulate``.
"""
from __future__ import annotations

import functools
import threading

import numpy as np

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


def vectors_to_grid(vectors, num_frames: int, height: int, width: int, cell: int, k_past: np.ndarray,
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
    vx, vy, valid = grid_components(buf, 0, num_frames, height, width, cell, k_past, k_fut, exact)
    return np.stack([vx[:-1], vy[:-1]], -1), valid[:-1]


# vectors per vectorised pass: the ~2.6 MB of records a pass reads mostly stay in the CPU cache,
# where one pass over a whole 720p clip (~11 MB of 40-byte records, read field by field) would
# not (measured on 720p: 3x slower in one pass; 8192: 1.7x slower from numpy call overhead)
_CHUNK = 65536


@functools.lru_cache(maxsize=16)
def _cell_luts(cell: int, gh: int, gw: int) -> tuple[np.ndarray, np.ndarray]:
    """Row offset (y) and column (x) of the cell holding a block centre coordinate 0..32767
    (int16), on a (gh + 1) x (gw + 1) grid whose last row/column collects the padding."""
    cells = np.arange(1 << 15) // cell
    return np.minimum(cells, gh) * (gw + 1), np.minimum(cells, gw)


def grid_components(buf: VectorBuffer, offset: int, num_frames: int, height: int, width: int, cell: int,
                    k_past: np.ndarray, k_fut: np.ndarray, exact: bool = False):
    """``vectors_to_grid`` for the frames ``offset .. offset+num_frames-1`` of ``buf`` as
    contiguous (vx, vy, valid) arrays of shape (R + 1, gh, gw): what ``accumulate_components``
    reads. The extra last frame is invalid (and zero) everywhere; so is every invalid cell.

    Forward velocity of a block = ``source * motion / (motion_scale * k)`` with k the reference
    distance of its frame and direction; per cell the area-weighted mean over all blocks of both
    directions. Vectorised over runs of frames of about ``_CHUNK`` vectors: a few
    int16/int32/float32 operations on plain field views and three bincounts each.
    """
    gh, gw = height // cell, width // cell
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
    fast = cell % 16 == 0 and not exact
    if fast:
        cy_lut, cx_lut = _cell_luts(cell, gh, gw)
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
            acc = _split_blocks(f, np.repeat(p - p0, c), cell, gh, gw, GW, ncell, size, coef)
        has = acc[0] > 0
        inv = np.divide(1.0, acc[0], out=np.zeros_like(acc[0]), where=has)
        shape = (p1 - p0, GH, GW)
        vx[p0:p1] = (acc[1] * inv).reshape(shape)[:, :gh, :gw]
        vy[p0:p1] = (acc[2] * inv).reshape(shape)[:, :gh, :gw]
        valid[p0:p1] = has.reshape(shape)[:, :gh, :gw]
        a = b
    return vx, vy, valid


def _split_blocks(f, frame, cell, gh, gw, GW, ncell, size, per_px):
    """Any cell size: distribute each block's area over the cells it overlaps. ``per_px``: a
    block's weight per px of area, sign / (k * motion_scale). Returns (area, x, y) sums."""
    bw = f["w"].astype(np.int64)
    bh = f["h"].astype(np.int64)
    x0 = f["dst_x"].astype(np.int64) - bw // 2
    y0 = f["dst_y"].astype(np.int64) - bh // 2
    x1, y1 = x0 + bw, y0 + bh
    acc = (np.zeros(size), np.zeros(size), np.zeros(size))
    mx = per_px * f["motion_x"]
    my = per_px * f["motion_y"]
    cx0, cy0 = np.floor_divide(x0, cell), np.floor_divide(y0, cell)
    span_x = int(np.max(np.floor_divide(x1 - 1, cell) - cx0)) + 1
    span_y = int(np.max(np.floor_divide(y1 - 1, cell) - cy0)) + 1
    for oy in range(span_y):
        cy = cy0 + oy
        hy = np.minimum(y1, (cy + 1) * cell) - np.maximum(y0, cy * cell)
        for ox in range(span_x):
            cx = cx0 + ox
            hx = np.minimum(x1, (cx + 1) * cell) - np.maximum(x0, cx * cell)
            ok = (hx > 0) & (hy > 0) & (cx >= 0) & (cy >= 0)
            if not ok.any():
                continue
            ar = (hx * hy)[ok].astype(np.float64)
            idx = frame[ok] * ncell + np.minimum(cy[ok], gh) * GW + np.minimum(cx[ok], gw)
            acc[0][:] += np.bincount(idx, ar, size)
            acc[1][:] += np.bincount(idx, ar * mx[ok], size)
            acc[2][:] += np.bincount(idx, ar * my[ok], size)
    return acc
