"""Decode a clip's sampled frames and its motion in one PyAV pass.

    clip = read_clip(path, num_frames=16, stride=4, start=None, motion="auto", grid=16, seed=None)

Design (numbers in docs/video.md):

* One demux/decode pass from the keyframe at or before the first raw frame needed (seek) to the
  last sampled frame. Every raw frame in between is decoded (vectors exist only for decoded
  frames) but only the sampled frames are converted to RGB.
* Codec motion: ``flags2=+export_mvs``, slice threading only (frame threading corrupts B-frame
  vectors), raw side-data arrays collected in the loop and turned into grids afterwards in one
  vectorised step (``mgm.video.motion``).
* Index policy: raw frame indices are display-order frame numbers derived from timestamps
  (``round((pts - start_time) * time_base * fps)``). ``start=None`` draws a uniform start among
  those that fit the whole clip (seeded by ``seed``). Clips that do not fit (short videos, or
  ``start`` near the end) clamp their indices to the last frame, like VideoMAE: the last frame
  repeats and its motion is zero (valid). If the file ends before the frame count in its header
  (truncated), indices are clamped to the last frame that decoded.
* Errors: anything that goes wrong with the *file* raises ``VideoError`` (message starts with
  the path); invalid *arguments* raise ``ValueError``.
"""
from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

log = logging.getLogger("mgm.video")

MOTION_MODES = ("auto", "codec", "flow", "none")
# Never FRAME or AUTO: frame threading corrupts H.264 B-frame vectors (DESIGN.md §1).
THREAD_TYPE = "SLICE"
_PICT = {1: "I", 2: "P", 3: "B", 4: "S", 5: "i", 6: "p", 7: "b"}
_MAX_DECODE_ERRORS = 50
# Don't feed non-reference H.264 frames (nal_ref_idc = 0) that lie before the first frame needed
# to the decoder: no other frame is predicted from them, so the output is identical.
SKIP_PREROLL_NONREF = True
# FFmpeg's tty demuxer opens any .txt/.asc/.diz/.nfo file as an "ANSI art" video
_TEXT_CODECS = frozenset({"ansi", "bintext", "xbin", "idf"})
_warned_flow: set[str] = set()


class VideoError(Exception):
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


@dataclass
class Clip:
    frames: np.ndarray        # uint8 (T, H, W, 3) RGB
    motion: np.ndarray        # float32 (T, H//grid, W//grid, 2) forward (dx, dy) px since previous sampled frame
    motion_valid: np.ndarray  # bool (T, H//grid, W//grid)
    motion_source: str        # "codec" | "flow" | "none"
    frame_types: str          # display-order types of raw frames raw_start.. ("I", "P", "B", "?" = not decoded)
    indices: np.ndarray       # int64 (T,) raw frame index of each sampled frame (after clamping)
    grid: int = 16
    fps: float = 0.0
    raw_start: int = 0        # raw index of frame_types[0]
    codec: str = ""
    path: str = ""
    num_video_frames: int = 0  # frame count estimate of the whole video (VideoInfo.num_frames)
    meta: dict = field(default_factory=dict)

    @property
    def shape(self):
        return self.frames.shape


def _open(path):
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
        raise VideoError(path, f"not a readable video container ({_why(e)})") from e
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


def _why(e: BaseException) -> str:
    msg = str(e).strip() or e.__class__.__name__
    return f"{e.__class__.__name__}: {msg}" if e.__class__.__name__ not in msg else msg


def _fps(stream) -> float:
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


def _frame_count(container, stream, fps: float) -> tuple[int, bool]:
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
    from mgm.video.motion import MV_CODECS

    container, stream = _open(path)
    try:
        fps = _fps(stream)
        n, exact = _frame_count(container, stream, fps)
        ctx = stream.codec_context
        return VideoInfo(path=str(path), codec=ctx.name, width=int(ctx.width), height=int(ctx.height),
                         fps=fps, num_frames=n, has_motion_vectors=ctx.name in MV_CODECS,
                         num_frames_exact=exact, duration=_duration(container, stream))
    except VideoError:
        raise
    except Exception as e:
        raise VideoError(path, f"cannot read stream metadata ({_why(e)})") from e
    finally:
        container.close()


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


def _pts_origin(container, stream, fps: float, path) -> tuple[int | None, float]:
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


def _pts_index(pts: int, t0: int, per_pts: float) -> int:
    return int(round((pts - t0) * per_pts))


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


def _to_rgb(fr) -> np.ndarray:
    """RGB24 array of a decoded frame through one reused swscale context per thread: PyAV's
    ``frame.to_ndarray(format="rgb24")`` builds a new context for every fresh frame, which
    costs more than the conversion itself (~0.5-1 ms at 224x224). Same pixels."""
    r = getattr(_tls, "reformatter", None)
    if r is None:
        from av.video.reformatter import VideoReformatter

        r = _tls.reformatter = VideoReformatter()
    return r.reformat(fr, format="rgb24").to_ndarray()


def _luma(fr) -> np.ndarray:
    if fr.format.name in ("yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "gray", "nv12"):
        p = fr.planes[0]
        a = np.frombuffer(p, np.uint8)
        return a.reshape(-1, p.line_size)[: fr.height, : fr.width].copy()
    return fr.to_ndarray(format="gray")


def read_clip(path, num_frames: int = 16, stride: int = 4, start: int | None = None,
              motion: str = "auto", grid: int = 16, seed: int | None = None,
              indices=None, *, debug: bool = False) -> Clip:
    """Decode ``num_frames`` frames ``stride`` apart (or the explicit raw ``indices``) and their
    motion. See the module docstring for the index policy. Raises VideoError for any problem
    with the file and ValueError for invalid arguments.

    ``debug=True`` keeps the per-raw-frame codec fields in ``clip.meta`` (``raw_velocity``
    (R, gh, gw, 2) px/frame, ``raw_valid``, ``raw_motion_start``, ``k_past``, ``k_future``,
    ``vectors``: [(raw index, side-data array)]) for tests and measurements."""
    if motion not in MOTION_MODES:
        raise ValueError(f"motion must be one of {MOTION_MODES}, got {motion!r}")
    if indices is None:
        if int(num_frames) < 1 or int(stride) < 1:
            raise ValueError(f"num_frames and stride must be >= 1 (got {num_frames}, {stride})")
    else:
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        if indices.size == 0 or (indices < 0).any():
            raise ValueError("indices must be a non-empty list of raw frame indices >= 0")
    if int(grid) < 1:
        raise ValueError(f"grid must be >= 1, got {grid}")
    try:
        return _read_clip(path, int(num_frames), int(stride), start, motion, int(grid), seed, indices, debug)
    except VideoError:
        raise
    except Exception as e:  # nothing but VideoError escapes for a bad file
        raise VideoError(path, f"decoding failed ({_why(e)})") from e


def _read_clip(path, num_frames, stride, start, motion, grid, seed, indices, debug=False) -> Clip:
    from mgm.video import motion as mv

    container, stream = _open(path)
    try:
        ctx = stream.codec_context
        codec = ctx.name
        fps = _fps(stream)
        n, _ = _frame_count(container, stream, fps)
        mode = motion
        if motion == "auto":
            mode = "codec" if codec in mv.MV_CODECS else "flow"
            if mode == "flow" and codec not in _warned_flow:
                _warned_flow.add(codec)
                log.warning("mgm.video: codec %s exports no motion vectors; using DIS optical flow "
                            "(motion_source='flow')", codec)
        elif motion == "codec" and codec not in mv.MV_CODECS:
            raise VideoError(path, f"codec {codec} exports no motion vectors (motion='codec'); use "
                                   f"motion='auto' or 'flow', or transcode to H.264")

        rng = np.random.default_rng(seed)
        if indices is None:
            idx = sample_indices(n if n > 0 else 10**9, num_frames, stride, start, rng)
            first_span = stride
        else:
            idx = indices.copy()
            first_span = int(abs(idx[1] - idx[0])) if len(idx) > 1 and idx[1] != idx[0] else 1
        if n > 0:
            idx = np.minimum(idx, n - 1)

        def configure(st):
            st.thread_type = THREAD_TYPE
            if mode == "codec":
                st.codec_context.options = {"flags2": "+export_mvs"}

        configure(stream)
        t0, per_pts = _pts_origin(container, stream, fps, path)
        res = _decode(container, stream, idx, first_span, mode, True, t0, per_pts)
        if res is None:  # the seek landed after a needed frame: decode from the start instead
            container.close()
            container, stream = _open(path)
            configure(stream)
            res = _decode(container, stream, idx, first_span, mode, False, t0, per_pts)
        rgb, gray, types, mvs, pkt, last_fr, last_i, t0, pre_types = res
        meta = {}
        if not types:
            raise VideoError(path, "no decodable video frames")

        decoded_max = max(types)
        # clamp: indices past the end of what decoded -> the last decoded frame
        idx = np.minimum(idx, decoded_max)
        frames_list = []
        for i in idx.tolist():
            a = rgb.get(i)
            if a is None:
                if i == last_i and last_fr is not None:
                    a = rgb[i] = _to_rgb(last_fr)
                else:  # a frame that failed to decode in the middle: nearest decoded sampled frame
                    have = np.array(sorted(rgb)) if rgb else None
                    if have is None:
                        raise VideoError(path, "no decodable video frames at the requested indices")
                    a = rgb[int(have[np.argmin(np.abs(have - i))])]
            frames_list.append(a)
        frames = np.stack(frames_list)
        H, W = frames.shape[1:3]
        gh, gw = H // grid, W // grid

        prev = np.concatenate([[max(int(idx[0]) - first_span, 0)], idx[:-1]]).astype(np.int64)
        if mode == "codec":
            lo = int(min(idx.min(), prev.min()))
            R = decoded_max - lo + 1
            # decode position and reference flag per packet, indexed by display index
            disp = np.arange(lo, lo + R, dtype=np.int64)
            if pkt and t0 is not None and per_pts > 0:
                pk = sorted((_pts_index(p_, t0, per_pts), d, r) for p_, (d, r) in pkt.items())
                pk_disp = np.array([x[0] for x in pk], np.int64)
                pk_dpos = np.array([x[1] for x in pk], np.int64)
                pk_ref = np.array([x[2] for x in pk], bool)
                dmap = dict(zip(pk_disp.tolist(), pk_dpos.tolist()))
                dpos = np.array([dmap.get(t, 1 << 40) for t in disp.tolist()], np.int64)
                kp, kf = mv.reference_distances(disp, dpos, pk_disp[pk_ref], pk_dpos[pk_ref])
            else:  # no packet timestamps (raw elementary stream): I/P anchors from frame types
                first = min(pre_types) if pre_types else lo
                ft = "".join(types.get(i, pre_types.get(i, "?")) for i in range(first, lo + R))
                kp, kf = mv.anchor_distances(ft)
                kp, kf = kp[lo - first:], kf[lo - first:]
            vecs = [(i - lo, a) for i, a in mvs if lo <= i < lo + R]
            vel, valid = mv.vectors_to_grid(vecs, R, H, W, grid, kp, kf)
            motion_arr, motion_valid = mv.accumulate(vel, valid, lo, idx, prev, first_span)
            if debug:
                a_all, pos_all = mv._stack_vectors(vecs) if vecs else (None, None)
                meta = dict(raw_velocity=vel, raw_valid=valid, raw_motion_start=lo, k_past=kp, k_future=kf,
                            vectors=[] if a_all is None else
                            [(lo + p_, a_all[pos_all == p_]) for p_ in np.unique(pos_all).tolist()])
            source = "codec"
        elif mode == "flow":
            from mgm.video.flow import forward_flow_grid

            motion_arr = np.zeros((len(idx), gh, gw, 2), np.float32)
            motion_valid = np.zeros((len(idx), gh, gw), bool)
            for j, (c, p_) in enumerate(zip(idx.tolist(), prev.tolist())):
                if c == p_:
                    motion_valid[j] = j > 0
                    continue
                g1, g0 = gray.get(c), gray.get(p_)
                if g1 is None or g0 is None or g1.shape != g0.shape:
                    continue
                f = forward_flow_grid(g0, g1, grid)
                if j == 0 and c - p_ != first_span:
                    f *= first_span / float(c - p_)
                motion_arr[j] = f if c > p_ else -f
                motion_valid[j] = True
            source = "flow"
        else:
            motion_arr = np.zeros((len(idx), gh, gw, 2), np.float32)
            motion_valid = np.zeros((len(idx), gh, gw), bool)
            source = "none"

        raw_start = int(min(types))
        ftypes = "".join(types.get(i, "?") for i in range(raw_start, decoded_max + 1))
        return Clip(frames=frames, motion=motion_arr, motion_valid=motion_valid, motion_source=source,
                    frame_types=ftypes, indices=idx, grid=grid, fps=fps, raw_start=raw_start,
                    codec=codec, path=str(path), num_video_frames=n, meta=meta)
    finally:
        container.close()


def _decode(container, stream, idx, first_span, mode, allow_seek, t0, per_pts):
    """The decode loop. Returns None when a seek skipped needed frames (caller retries from 0)."""
    from mgm.video.motion import ZERO_B_CODECS, h264_ref_idc, raw_vectors

    ctx = stream.codec_context
    codec = ctx.name
    need_hi = int(idx.max())
    first_prev = max(int(idx[0]) - first_span, 0)
    need_lo = int(min(idx.min(), first_prev)) if mode != "none" else int(idx.min())
    want_rgb = set(idx.tolist())
    want_gray = (want_rgb | {first_prev}) if mode == "flow" else set()
    codec_mv = mode == "codec"
    zero_b = codec in ZERO_B_CODECS
    # H.264 packets carry nal_ref_idc: parsed for the reference distances (codec motion) and to
    # skip non-reference frames in the pre-roll between the keyframe and the clip
    skip_preroll = SKIP_PREROLL_NONREF and codec == "h264" and t0 is not None and per_pts > 0
    parse_ref = codec == "h264" and (codec_mv or skip_preroll)
    nal_len = 0  # Annex-B unless the extradata is an avcC record
    if parse_ref:
        ex = ctx.extradata
        if ex and len(ex) > 4 and ex[0] == 1:
            nal_len = (ex[4] & 3) + 1

    seeked = False
    if allow_seek and need_lo > 0 and per_pts > 0 and t0 is not None:
        target = int(t0 + need_lo / per_pts)
        try:
            container.seek(target, stream=stream, backward=True, any_frame=False)
            seeked = True
        except Exception:
            return None

    rgb, gray, types, pre_types = {}, {}, {}, {}
    mvs = []           # (display index, structured array)
    pkt = {}           # pts -> (decode position, nal_ref_idc or None)
    dcount = 0
    max_pts = -(1 << 62)
    errors = 0
    counter = -1
    last_fr, last_i = None, -1
    done = False
    packets = container.demux(stream)
    while not done:
        try:
            packet = next(packets)
        except StopIteration:
            packet = None
        except Exception:  # demuxer error (truncated / corrupt file): flush what we have
            errors += 1
            packet = None
        if packet is not None and packet.size:
            ref = h264_ref_idc(packet, nal_len) if parse_ref else None
            if codec_mv and packet.pts is not None:
                # without nal_ref_idc: a packet displayed after everything decoded so far is an
                # anchor (I/P, a reference); one displayed earlier is a (non-reference) B-frame
                pkt[packet.pts] = (dcount, ref > 0 if ref is not None else packet.pts > max_pts)
                max_pts = max(max_pts, packet.pts)
                dcount += 1
            if (ref == 0 and skip_preroll and packet.pts is not None
                    and _pts_index(packet.pts, t0, per_pts) < need_lo):
                continue  # a non-reference frame before the clip: nothing needs it, don't decode it
        try:
            out = ctx.decode(packet)
        except Exception:
            errors += 1
            if errors > _MAX_DECODE_ERRORS:
                break
            if packet is None:
                break
            continue
        for fr in out:
            pts = fr.pts
            if t0 is None and pts is not None and not seeked:
                t0 = pts  # no container start time: the first frame decoded from the start
            i = _pts_index(pts, t0, per_pts) if (pts is not None and per_pts > 0 and t0 is not None) else counter + 1
            counter = i
            if i > need_hi:
                done = True
                break
            ch = _PICT.get(int(fr.pict_type), "?")
            if i < need_lo:
                pre_types[i] = ch
                continue
            types[i] = ch
            last_fr, last_i = fr, i
            if codec_mv and not (zero_b and ch == "B"):
                sd = fr.side_data.get("MOTION_VECTORS")
                if sd is not None and sd.buffer_size:
                    mvs.append((i, raw_vectors(sd)))
            if i in want_rgb:
                rgb[i] = _to_rgb(fr)
            if i in want_gray:
                gray[i] = _luma(fr)
            if i == need_hi:
                done = True
                break
        if packet is None:
            break
    if seeked and types and min(types) > need_lo and min(want_rgb) < min(types):
        return None
    return rgb, gray, types, mvs, pkt, last_fr, last_i, t0, pre_types
