"""Raw frame indices: which frames a clip samples, and which frame a timestamp is.

Raw indices are display-order frame numbers, ``round((pts - start_time) * time_base * fps)``;
see the index policy in ``mgm.video.decode``'s docstring and docs/video.md.
"""
from __future__ import annotations

import os

import numpy as np


def sample_indices(n: int, num_frames: int, stride: int, start: int | None = None,
                   rng: np.random.Generator | None = None) -> np.ndarray:
    """Raw indices ``start + i*stride`` clamped to ``[0, n-1]`` (VideoMAE-style padding with the
    last frame). ``start=None``: uniform over the starts that fit the clip (0 if none does)."""
    n = max(int(n), 1)
    span = (num_frames - 1) * stride + 1
    if start is None:
        rng = rng if rng is not None else np.random.default_rng()
        start = int(rng.integers(0, max(0, n - span) + 1))
    start = min(max(int(start), 0), n - 1)
    return np.minimum(start + np.arange(num_frames, dtype=np.int64) * stride, n - 1)


_first_pts_cache: dict = {}


def pts_origin(container, stream, fps: float, path) -> tuple[int | None, float]:
    """(pts of raw frame 0 or None when unknown, frames per pts unit).

    ``stream.start_time`` is the first displayed pts for MP4/MOV/MKV/WebM/TS/PS. AVI reports 0
    while B-frame streams start at pts 1, and raw elementary streams have no timestamps: for
    those the first packets are peeked (once per file, cached) — None means "count frames"."""
    tb = float(stream.time_base) if stream.time_base else 0.0
    t0 = stream.start_time
    if t0 is None or container.format.name == "avi":
        try:
            st = os.stat(os.fspath(path))
            key = (os.fspath(path), st.st_size, st.st_mtime_ns)
        except OSError:
            key = None
        if key is not None and key in _first_pts_cache:
            t0 = _first_pts_cache[key]
        else:
            import av

            t0 = None
            try:
                with av.open(os.fspath(path), metadata_errors="ignore") as c:
                    pts = [p.pts for _, p in zip(range(16), c.demux(c.streams.video[0])) if p.pts is not None]
                    t0 = min(pts) if pts else None
            except Exception:
                t0 = None
            if key is not None:
                if len(_first_pts_cache) > 4096:
                    _first_pts_cache.clear()
                _first_pts_cache[key] = t0
    return t0, tb * fps


def pts_index(pts: int, t0: int, per_pts: float) -> int:
    return int(round((pts - t0) * per_pts))
