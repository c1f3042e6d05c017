"""Video decoding with codec motion vectors (PyAV).

    from mgm.video import read_clip, probe_video, VideoError, Clip, VideoInfo

Attributes are imported lazily so that ``import mgm.video.bench`` (used by ``mgm bench``'s
argument parser) does not pull in PyAV / OpenCV.
"""
from __future__ import annotations

__all__ = ["read_clip", "probe_video", "sample_indices", "VideoError", "Clip", "VideoInfo",
           "MOTION_MODES", "THREAD_TYPE"]


def __getattr__(name):
    if name in __all__:
        from mgm.video import decode

        return getattr(decode, name)
    raise AttributeError(f"module 'mgm.video' has no attribute {name!r}")
