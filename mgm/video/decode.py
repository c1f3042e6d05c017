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

Opening and probing files is ``mgm.video.container``, the index policy ``mgm.video.indices``,
frame conversion ``mgm.video.pixels``; their public names are re-exported here.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from mgm.video.container import VideoError, VideoInfo, _frame_count, _fps, _open, _why, probe_video
from mgm.video.indices import _pts_index, _pts_origin, sample_indices
from mgm.video.pixels import _luma, _to_rgb

log = logging.getLogger("mgm.video")

MOTION_MODES = ("auto", "codec", "flow", "none")
# Never FRAME or AUTO: frame threading corrupts H.264 B-frame vectors (DESIGN.md §1).
THREAD_TYPE = "SLICE"
_PICT = {1: "I", 2: "P", 3: "B", 4: "S", 5: "i", 6: "p", 7: "b"}
_MAX_DECODE_ERRORS = 50
# Don't feed non-reference H.264 frames (nal_ref_idc = 0) that lie before the first frame needed
# to the decoder: no other frame is predicted from them, so the output is identical.
SKIP_PREROLL_NONREF = True
_warned_flow: set[str] = set()


__all__ = ["read_clip", "probe_video", "sample_indices", "VideoError", "Clip", "VideoInfo",
           "MOTION_MODES", "THREAD_TYPE", "SKIP_PREROLL_NONREF"]


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
