"""Opening a video file and reading its metadata (PyAV), and the error every file problem raises.

    info = probe_video(path)   # codec, size, fps, frame count; nothing is decoded

``open_video`` is the one place a file is checked and opened, for ``probe_video`` and
``mgm.video.decode.read_clip``: anything wrong with the *file* becomes a ``VideoError`` whose
message starts with the path.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from mgm.errors import UserError
from mgm.video.motion import MV_CODECS


# FFmpeg's tty demuxer opens any .txt/.asc/.diz/.nfo file as an "ANSI art" video
_TEXT_CODECS = frozenset({"ansi", "bintext", "xbin", "idf"})


class VideoError(UserError):
    """A video file cannot be read (missing, not a video, no decodable frames, ...).

    ``str(e)`` is ``"<path>: <plain reason>"``; ``e.path`` and ``e.reason`` hold the parts."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


@dataclass
class VideoInfo:
    path: str
    codec: str
    width: int
    height: int
    fps: float
    num_frames: int          # from the container header when it has one, else duration x fps
    has_motion_vectors: bool
    num_frames_exact: bool = True   # False when num_frames is the duration-based estimate
    duration: float | None = None   # seconds


def open_video(path):
    """(container, video stream) or VideoError."""
    import av

    p = os.fspath(path)
    if not os.path.exists(p):
        raise VideoError(path, "no such file")
    if os.path.isdir(p):
        raise VideoError(path, "is a directory, not a video file")
    if os.path.getsize(p) == 0:
        raise VideoError(path, "empty file (0 bytes)")
    try:
        container = av.open(p, metadata_errors="ignore")
    except Exception as e:  # InvalidDataError, PermissionError, ...
        raise VideoError(path, f"not a readable video container ({describe_error(e)})") from e
    try:
        if not container.streams.video:
            kinds = sorted({s.type for s in container.streams}) or ["no"]
            raise VideoError(path, f"no video stream (has {', '.join(kinds)} streams)")
        stream = container.streams.video[0]
        ctx = stream.codec_context
        if ctx is None or not ctx.name:
            raise VideoError(path, "video stream with an unknown codec")
        if ctx.name in _TEXT_CODECS or container.format.name in ("tty",):
            raise VideoError(path, f"not a video: FFmpeg reads it as text art ({container.format.name}/{ctx.name})")
        if not ctx.width or not ctx.height:
            raise VideoError(path, f"video stream ({ctx.name}) has no frame size")
    except BaseException:
        container.close()
        raise
    return container, stream


def describe_error(e: BaseException) -> str:
    """An exception as a short reason for a VideoError message: its class name and text."""
    msg = str(e).strip() or e.__class__.__name__
    return f"{e.__class__.__name__}: {msg}" if e.__class__.__name__ not in msg else msg


def stream_fps(stream) -> float:
    """Average frame rate of the stream (guessed / base rate if absent); 25 when none is known."""
    for r in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        try:
            if r and float(r) > 0:
                return float(r)
        except (ZeroDivisionError, TypeError):
            continue
    return 25.0


def _duration(container, stream) -> float | None:
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / 1_000_000
    return None


def frame_count(container, stream, fps: float) -> tuple[int, bool]:
    """(frames, exact): the header's frame count, else round(duration x fps) (not exact), else 0."""
    if stream.frames and stream.frames > 0:
        return int(stream.frames), True
    d = _duration(container, stream)
    if d:
        return max(1, int(round(d * fps))), False
    return 0, False


def probe_video(path) -> VideoInfo:
    """Container/stream metadata without decoding. ``num_frames`` comes from the container
    header (exact for MP4/MOV/AVI) or is ``round(duration * fps)`` (``num_frames_exact=False``,
    e.g. WebM/MKV). Raises VideoError."""
    container, stream = open_video(path)
    try:
        fps = stream_fps(stream)
        n, exact = frame_count(container, stream, fps)
        ctx = stream.codec_context
        return VideoInfo(path=str(path), codec=ctx.name, width=int(ctx.width), height=int(ctx.height),
                         fps=fps, num_frames=n, has_motion_vectors=ctx.name in MV_CODECS,
                         num_frames_exact=exact, duration=_duration(container, stream))
    except VideoError:
        raise
    except Exception as e:
        raise VideoError(path, f"cannot read stream metadata ({describe_error(e)})") from e
    finally:
        container.close()
