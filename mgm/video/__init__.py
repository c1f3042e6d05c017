"""Video decoding with codec motion vectors (PyAV).

    from mgm.video import read_clip, probe_video, VideoError, Clip, VideoInfo

The package's public names, each defined in one module (``decode``: read_clip, Clip;
``container``: probe_video, VideoError, VideoInfo; ``indices``: sample_indices). They are
imported lazily so that ``import mgm.video.bench`` (used by ``mgm bench``'s argument parser)
does not pull in PyAV / OpenCV.
"""
from __future__ import annotations

import importlib

_OWNER = {
    "read_clip": "decode", "Clip": "decode", "MOTION_MODES": "decode", "THREAD_TYPE": "decode",
    "probe_video": "container", "VideoError": "container", "VideoInfo": "container",
    "sample_indices": "indices",
}
__all__ = list(_OWNER)


def __getattr__(name):
    if name in _OWNER:
        return getattr(importlib.import_module(f"mgm.video.{_OWNER[name]}"), name)
    raise AttributeError(f"module 'mgm.video' has no attribute {name!r}")
