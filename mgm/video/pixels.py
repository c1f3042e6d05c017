"""Decoded frame -> numpy: RGB through a reused, fork-safe swscale context, and luma planes."""
from __future__ import annotations

import os
import threading

import numpy as np


_tls = threading.local()
# swscale contexts inherited through fork(): kept alive, never used or freed. Such a context
# owns slice threads that do not exist in the child, so reconfiguring or freeing it there
# (PyAV does both on the next reformat) waits forever on them — a DataLoader worker forked
# after the main process decoded a clip hung in sws_frame_setup.
_inherited_reformatters: list = []


def _drop_inherited_reformatter() -> None:
    r = getattr(_tls, "reformatter", None)
    if r is not None:
        _inherited_reformatters.append(r)
        _tls.reformatter = None


os.register_at_fork(after_in_child=_drop_inherited_reformatter)


def to_rgb(fr) -> np.ndarray:
    """RGB24 array of a decoded frame through one reused swscale context per thread: PyAV's
    ``frame.to_ndarray(format="rgb24")`` builds a new context for every fresh frame, which
    costs more than the conversion itself (~0.5-1 ms at 224x224). Same pixels."""
    r = getattr(_tls, "reformatter", None)
    if r is None:
        from av.video.reformatter import VideoReformatter

        r = _tls.reformatter = VideoReformatter()
    return r.reformat(fr, format="rgb24").to_ndarray()


def luma(fr) -> np.ndarray:
    """The frame's luma plane as a (H, W) uint8 copy (the Y plane itself for planar YUV)."""
    if fr.format.name in ("yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "gray", "nv12"):
        p = fr.planes[0]
        a = np.frombuffer(p, np.uint8)
        return a.reshape(-1, p.line_size)[: fr.height, : fr.width].copy()
    return fr.to_ndarray(format="gray")
