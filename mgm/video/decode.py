"""Decode a clip's sampled frames and its motion in one PyAV pass.

    clip = read_clip(path, num_frames=16, stride=4, start=None, motion="auto", cell=16, seed=None)

Design (numbers in docs/video.md):

* One demux/decode pass from the keyframe at or before the first raw frame needed (seek) to the
  last sampled frame; only the sampled frames are converted to RGB.
* H.264 frames that nothing needs are not decoded at all: a non-reference frame
  (``nal_ref_idc = 0``) is never used to predict another one, so leaving it out changes no other
  frame. Skipped: those before the clip, and those between sampled frames (see
  ``SKIP_UNSAMPLED_NONREF`` for when codec motion is read).
* One decoder thread, slice threading only (frame threading corrupts B-frame vectors); data
  loader workers are the parallelism.
* Codec motion: ``flags2=+export_mvs``; each frame's raw side-data bytes are appended to one
  buffer in the loop and turned into grids afterwards in one vectorised step
  (``mgm.video.motion``).
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

import functools
import logging
from dataclasses import dataclass, field

import numpy as np

from mgm.video.container import VideoError, describe_error, frame_count, open_video, stream_fps
from mgm.video.flow import flow_motion
from mgm.video.indices import pts_index, pts_origin, sample_indices
from mgm.video.motion import MV_CODECS, ZERO_B_CODECS, codec_motion, h264_ref_idc
from mgm.video.pixels import luma, to_rgb
from mgm.video.vectors import VectorBuffer

log = logging.getLogger("mgm.video")

MOTION_MODES = ("auto", "codec", "flow", "none")
# Never FRAME or AUTO: frame threading corrupts H.264 B-frame vectors (1-5 of 150 frames of a
# B-pyramid clip differ from a slice-threaded decode, differently on each run).
THREAD_TYPE = "SLICE"
# One thread: most H.264 files have one slice per frame, where slice threads only add start-up
# and hand-off cost; data loader workers are the parallelism.
THREAD_COUNT = 1
_PICT = {1: "I", 2: "P", 3: "B", 4: "S", 5: "i", 6: "p", 7: "b"}
_MAX_DECODE_ERRORS = 50
# Don't feed non-reference H.264 frames (nal_ref_idc = 0) that no returned frame needs to the
# decoder: no other frame is predicted from them, so every frame we return is identical.
SKIP_PREROLL_NONREF = True      # those before the first frame needed
SKIP_UNSAMPLED_NONREF = True    # those between sampled frames (RGB-only and flow reads)
# Not for codec motion: their vectors are what the per-span median needs against x264's
# multi-reference P-frames. Skipping them there (benchmarks/motion_skip_quality.py, synthetic
# clips with known motion, 16 frames x stride 4): IBBBP with 2 references, object motion off
# by > 30 % on 74 % of frames; top-1 motion cell in a true object box 97.4 -> 95.8 % (340x256).
SKIP_UNSAMPLED_NONREF_MOTION = False
_warned_flow: set[str] = set()

try:  # a side-data container not cached on the frame: no frame <-> side-data reference cycle
    from av.sidedata.sidedata import SideDataContainer as _SideData
    from av.sidedata.sidedata import Type as _SideDataType

    _MV_KEY = _SideDataType.MOTION_VECTORS
except ImportError:  # pragma: no cover - older PyAV: frame.side_data (the cycle is only slower)
    _SideData, _MV_KEY = None, "MOTION_VECTORS"

__all__ = ["read_clip", "Clip", "MOTION_MODES", "THREAD_TYPE", "THREAD_COUNT"]


@dataclass
class Clip:
    frames: np.ndarray        # uint8 (T, H, W, 3) RGB
    motion: np.ndarray        # float32 (T, H//cell, W//cell, 2) forward (dx, dy) px since previous sampled frame
    motion_valid: np.ndarray  # bool (T, H//cell, W//cell)
    motion_source: str        # "codec" | "flow" | "none"
    frame_types: str          # display-order types of raw frames raw_start.. ("I", "P", "B", "?" = not decoded)
    indices: np.ndarray       # int64 (T,) raw frame index of each sampled frame (after clamping)
    cell: int = 16
    fps: float = 0.0
    raw_start: int = 0        # raw index of frame_types[0]
    codec: str = ""
    path: str = ""
    num_video_frames: int = 0  # frame count estimate of the whole video (VideoInfo.num_frames)
    meta: dict = field(default_factory=dict)

    @property
    def shape(self):
        return self.frames.shape


def read_clip(path, num_frames: int = 16, stride: int = 4, start: int | None = None,
              motion: str = "auto", cell: int = 16, seed: int | None = None,
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
    if int(cell) < 1:
        raise ValueError(f"cell must be >= 1, got {cell}")
    try:
        return _read_clip(path, int(num_frames), int(stride), start, motion, int(cell), seed, indices, debug)
    except VideoError:
        raise
    except Exception as e:  # nothing but VideoError escapes for a bad file
        raise VideoError(path, f"decoding failed ({describe_error(e)})") from e


def _read_clip(path, num_frames, stride, start, motion, cell, seed, indices, debug=False) -> Clip:
    container, stream = open_video(path)
    try:
        codec = stream.codec_context.name
        fps = stream_fps(stream)
        n, _ = frame_count(container, stream, fps)
        mode = motion
        if motion == "auto":
            mode = "codec" if codec in MV_CODECS else "flow"
            if mode == "flow" and codec not in _warned_flow:
                _warned_flow.add(codec)
                log.warning("mgm.video: codec %s exports no motion vectors; using DIS optical flow "
                            "(motion_source='flow')", codec)
        elif motion == "codec" and codec not in MV_CODECS:
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

        t0, per_pts = pts_origin(container, stream, fps, path)
        seek, skip = True, True
        while True:
            _configure(stream, mode)
            res = _decode(container, stream, idx, first_span, mode, seek, t0, per_pts, skip)
            if isinstance(res, _Pass):
                break
            # "seek": the seek landed after a needed frame (open GOP): decode from the start;
            # "skip": the file ended early where frames were skipped: decode them after all
            container.close()
            container, stream = open_video(path)
            seek, skip = seek and res != "seek", skip and res != "skip"
        if not res.types:
            raise VideoError(path, "no decodable video frames")

        decoded_max = max(res.types)
        # clamp: indices past the end of what decoded -> the last decoded frame
        idx = np.minimum(idx, decoded_max)
        frames = np.stack([_sampled_rgb(res, i, path) for i in idx.tolist()])
        H, W = frames.shape[1:3]
        gh, gw = H // cell, W // cell

        prev = np.concatenate([[max(int(idx[0]) - first_span, 0)], idx[:-1]]).astype(np.int64)
        meta = {}
        if mode == "codec":
            # packet pts -> raw frame index, when the stream has timestamps (else codec_motion takes
            # the reference distances from the frame types)
            to_index = (functools.partial(pts_index, t0=res.t0, per_pts=per_pts)
                        if res.t0 is not None and per_pts > 0 else None)
            motion_arr, motion_valid, meta = codec_motion(
                res.vectors, res.packets, res.types, res.pre_types, idx, prev, first_span, H, W, cell,
                to_index, debug)
        elif mode == "flow":
            motion_arr, motion_valid = flow_motion(res.gray, idx, prev, first_span, gh, gw, cell)
        else:
            motion_arr = np.zeros((len(idx), gh, gw, 2), np.float32)
            motion_valid = np.zeros((len(idx), gh, gw), bool)

        raw_start = int(min(res.types))
        ftypes = "".join(res.types.get(i, "?") for i in range(raw_start, decoded_max + 1))
        return Clip(frames=frames, motion=motion_arr, motion_valid=motion_valid, motion_source=mode,
                    frame_types=ftypes, indices=idx, cell=cell, fps=fps, raw_start=raw_start,
                    codec=codec, path=str(path), num_video_frames=n, meta=meta)
    finally:
        container.close()


def _configure(stream, mode: str) -> None:
    ctx = stream.codec_context
    ctx.thread_type = THREAD_TYPE
    ctx.thread_count = THREAD_COUNT
    if mode == "codec":
        ctx.options = {"flags2": "+export_mvs"}


def _sampled_rgb(res, i: int, path) -> np.ndarray:
    a = res.rgb.get(i)
    if a is not None:
        return a
    if i == res.last_i and res.last_fr is not None:
        a = res.rgb[i] = to_rgb(res.last_fr)
        return a
    if not res.rgb:  # a frame that failed to decode in the middle: nearest decoded sampled frame
        raise VideoError(path, "no decodable video frames at the requested indices")
    have = np.array(sorted(res.rgb))
    return res.rgb[int(have[np.argmin(np.abs(have - i))])]


@dataclass
class _Pass:
    """What one decode pass collected (raw index -> ... unless noted)."""
    rgb: dict
    gray: dict
    types: dict
    pre_types: dict           # picture types of frames decoded before the first needed one
    vectors: object           # mgm.video.vectors.VectorBuffer (codec motion) or None
    packets: dict             # pts -> (decode position, is reference) of every demuxed packet
    last_fr: object
    last_i: int
    t0: int | None            # pts of raw frame 0 (learnt from the first frame when unknown)


def _decode(container, stream, idx, first_span, mode, allow_seek, t0, per_pts, skip_unsampled=True):
    """The decode loop. Returns a _Pass, or why it must be run again on a reopened file:
    "seek" when the seek skipped needed frames, "skip" when the file ended right after
    non-reference frames that were skipped (a truncated file: clamp to what is really there)."""
    ctx = stream.codec_context
    codec = ctx.name
    need_hi = int(idx.max())
    first_prev = max(int(idx[0]) - first_span, 0)
    # the first sampled frame's motion spans (first_prev, idx[0]]: flow needs frame first_prev
    # itself, codec motion the vectors of the frames after it
    need_lo = int(idx.min())
    if mode == "flow":
        need_lo = min(need_lo, first_prev)
    elif mode == "codec":
        need_lo = min(need_lo, first_prev + 1)
    want_rgb = set(idx.tolist())
    want_gray = (want_rgb | {first_prev}) if mode == "flow" else set()
    codec_mv = mode == "codec"
    zero_b = codec in ZERO_B_CODECS
    # non-reference frames that may be left out: H.264 with timestamps to place packets
    can_skip = codec == "h264" and t0 is not None and per_pts > 0
    skip_pre = can_skip and SKIP_PREROLL_NONREF
    skip_mid = can_skip and skip_unsampled and (SKIP_UNSAMPLED_NONREF_MOTION if codec_mv else SKIP_UNSAMPLED_NONREF)
    keep = want_rgb | want_gray  # frames decoded even when they are not references
    # H.264 packets carry nal_ref_idc: parsed for the reference distances (codec motion) and to
    # skip non-reference frames
    parse_ref = codec == "h264" and (codec_mv or skip_pre or skip_mid)
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
            return "seek"

    rgb, gray, types, pre_types = {}, {}, {}, {}
    vectors = VectorBuffer(reuse=True) if codec_mv else None
    pkt = {}           # pts -> (decode position, is reference)
    dcount = 0
    max_pts = -(1 << 62)
    skipped_hi = -1    # highest raw index of a frame skipped inside the clip's range
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
            pts = packet.pts
            if codec_mv and pts is not None:
                # without nal_ref_idc: a packet displayed after everything decoded so far is an
                # anchor (I/P, a reference); one displayed earlier is a (non-reference) B-frame
                pkt[pts] = (dcount, ref > 0 if ref is not None else pts > max_pts)
                max_pts = max(max_pts, pts)
                dcount += 1
            if ref == 0 and pts is not None and (skip_pre or skip_mid):
                pi = pts_index(pts, t0, per_pts)
                if pi < need_lo:
                    if skip_pre:
                        continue  # before the clip: nothing needs it
                elif skip_mid and pi not in keep:
                    skipped_hi = max(skipped_hi, pi)
                    continue  # between / after sampled frames: nothing returned needs it
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
            i = pts_index(pts, t0, per_pts) if (pts is not None and per_pts > 0 and t0 is not None) else counter + 1
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
                sd = (_SideData(fr) if _SideData is not None else fr.side_data).get(_MV_KEY)
                if sd is not None:
                    vectors.add(i, sd)
            if i in want_rgb:
                rgb[i] = to_rgb(fr)
            if i in want_gray:
                gray[i] = luma(fr)
            if i == need_hi:
                done = True
                break
        if packet is None:
            break
    # the seek landed after a needed frame, or on no keyframe at all (MPEG-TS has no index:
    # FFmpeg may land on a B-frame, and nothing decodes until the next keyframe)
    if seeked and (not types or (min(types) > need_lo and min(want_rgb) < min(types))):
        return "seek"
    if not done and skipped_hi > (max(types) if types else -1):
        return "skip"
    return _Pass(rgb=rgb, gray=gray, types=types, pre_types=pre_types, vectors=vectors, packets=pkt,
                 last_fr=last_fr, last_i=last_i, t0=t0)
