"""read_clip / probe_video: shapes, sampling policy, seeking, motion modes, bad input."""
from __future__ import annotations

import logging
import os

import numpy as np
import pytest

from mgm.video import Clip, VideoError, VideoInfo, probe_video, read_clip


def _all_rgb(path):
    import av

    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


def test_api_shapes(synthetic_video_path):
    clip = read_clip(synthetic_video_path, num_frames=8, stride=2, seed=0)
    assert isinstance(clip, Clip)
    assert clip.frames.shape == (8, 96, 128, 3) and clip.frames.dtype == np.uint8
    assert clip.motion.shape == (8, 6, 8, 2) and clip.motion.dtype == np.float32
    assert clip.motion_valid.shape == (8, 6, 8) and clip.motion_valid.dtype == bool
    assert clip.motion_source == "codec"
    assert np.all(np.diff(clip.indices) == 2)
    assert set(clip.frame_types) <= set("IPB")
    info = probe_video(synthetic_video_path)
    assert isinstance(info, VideoInfo)
    assert (info.codec, info.width, info.height, info.num_frames, info.has_motion_vectors) == ("h264", 128, 96, 48, True)
    assert info.fps == pytest.approx(25.0) and info.num_frames_exact


def test_frames_match_sequential_decode_and_seek(synthetic_video_factory):
    """Seeking to the keyframe before the clip gives exactly the frames a full decode gives."""
    truth = synthetic_video_factory(num_frames=96, gop=16)
    ref = _all_rgb(truth.path)
    for start in (0, 3, 37, 70):
        clip = read_clip(truth.path, num_frames=6, stride=4, start=start)
        assert list(clip.indices) == [start + 4 * k for k in range(6)]
        np.testing.assert_array_equal(clip.frames, ref[clip.indices])
    idx = [5, 40, 41, 90]
    clip = read_clip(truth.path, indices=idx)
    np.testing.assert_array_equal(clip.frames, ref[idx])
    assert clip.motion.shape[0] == 4


def test_seeded_random_start(synthetic_video_path):
    a = read_clip(synthetic_video_path, 4, 2, seed=7, motion="none")
    b = read_clip(synthetic_video_path, 4, 2, seed=7, motion="none")
    assert list(a.indices) == list(b.indices)
    starts = {int(read_clip(synthetic_video_path, 4, 2, seed=s, motion="none").indices[0]) for s in range(12)}
    assert len(starts) > 3 and max(starts) <= 48 - 7


def test_short_clip_clamps_like_videomae(synthetic_video_factory):
    truth = synthetic_video_factory(num_frames=10)
    clip = read_clip(truth.path, num_frames=8, stride=4, seed=0)
    assert list(clip.indices) == [0, 4, 8, 9, 9, 9, 9, 9]
    np.testing.assert_array_equal(clip.frames[4], clip.frames[7])
    # a repeated frame moved by zero: valid zero motion, not missing
    assert clip.motion_valid[4].all() and not clip.motion[4].any()
    clip = read_clip(truth.path, num_frames=4, stride=2, start=100)  # start past the end
    assert list(clip.indices) == [9, 9, 9, 9]


def test_deterministic_codec_motion_and_slice_threading(synthetic_video_factory, monkeypatch):
    """Frame threading corrupts B-frame vectors non-deterministically: read_clip must decode
    with slice threading (or none), and two reads must agree exactly."""
    import mgm.video.decode as dec

    truth = synthetic_video_factory(b_pyramid="normal", num_frames=64)
    seen = []
    orig = dec._decode

    def spy(container, stream, *a, **k):
        seen.append(str(stream.codec_context.thread_type))
        return orig(container, stream, *a, **k)

    monkeypatch.setattr(dec, "_decode", spy)
    a = read_clip(truth.path, 12, 4, start=3)
    b = read_clip(truth.path, 12, 4, start=3)
    np.testing.assert_array_equal(a.motion, b.motion)
    np.testing.assert_array_equal(a.motion_valid, b.motion_valid)
    assert seen and all(("FRAME" not in s and "AUTO" not in s) for s in seen), seen
    assert dec.THREAD_TYPE in ("SLICE", "NONE")


def test_motion_modes(synthetic_video):
    synthetic_video_path = synthetic_video.path
    none = read_clip(synthetic_video_path, 6, 3, start=3, motion="none")
    assert none.motion_source == "none" and not none.motion_valid.any() and not none.motion.any()
    flow = read_clip(synthetic_video_path, 6, 3, start=3, motion="flow")
    codec = read_clip(synthetic_video_path, 6, 3, start=3, motion="codec")
    assert flow.motion_source == "flow" and codec.motion_source == "codec"
    np.testing.assert_array_equal(flow.frames, codec.frames)
    assert flow.motion.shape == codec.motion.shape
    # both see the object moving right/down at (4.5, 2.25) px per 3 frames on its cells
    for c in (flow, codec):
        ds = []
        for j, i in enumerate(c.indices[1:], 1):
            x1, y1, x2, y2 = synthetic_video.boxes[i, 0]
            cells = np.zeros(c.motion_valid.shape[1:], bool)
            cells[int(np.ceil(y1 / 16)):int(y2 // 16), int(np.ceil(x1 / 16)):int(x2 // 16)] = True
            ds.append(np.median(c.motion[j][cells & c.motion_valid[j]], 0))
        np.testing.assert_allclose(np.median(ds, 0), [4.5, 2.25], rtol=0.35, err_msg=c.motion_source)
    with pytest.raises(ValueError):
        read_clip(synthetic_video_path, motion="optical")


def test_codec_without_vectors_falls_back_to_flow_once(synthetic_video_factory, caplog):
    import mgm.video.decode as dec

    truth = synthetic_video_factory(codec="libvpx-vp9", num_frames=12, bframes=0)
    assert not probe_video(truth.path).has_motion_vectors
    dec._warned_flow.discard("vp9")
    with caplog.at_level(logging.WARNING, logger="mgm.video"):
        c1 = read_clip(truth.path, 4, 2, start=2)
        c2 = read_clip(truth.path, 4, 2, start=2)
    assert c1.motion_source == c2.motion_source == "flow"
    assert sum("no motion vectors" in r.getMessage() for r in caplog.records) == 1
    assert c1.motion_valid[1:].all()
    with pytest.raises(VideoError, match="vp9"):
        read_clip(truth.path, 4, 2, motion="codec")


@pytest.mark.parametrize("size", [(234, 174), (96, 128)], ids=["odd-234x174", "portrait-96x128"])
def test_odd_and_portrait_sizes(synthetic_video_factory, size):
    from mgm.video.synthetic import SyntheticObject

    w, h = size
    truth = synthetic_video_factory(width=w, height=h, num_frames=24,
                                    objects=[SyntheticObject(size=(40, 40), start=(40, 40), velocity=(2.0, 1.0))])
    clip = read_clip(truth.path, 5, 4, start=2)
    assert clip.frames.shape == (5, h, w, 3)
    assert clip.motion.shape == (5, h // 16, w // 16, 2)
    mag = np.linalg.norm(clip.motion, axis=-1)
    d = np.median(clip.motion[clip.motion_valid & (mag > 3)], 0)
    assert d[0] > 0 and d[1] > 0


def test_three_frame_video(synthetic_video_factory):
    truth = synthetic_video_factory(num_frames=3)
    clip = read_clip(truth.path)  # defaults: 16 frames, stride 4
    assert clip.frames.shape[0] == 16 and list(clip.indices[:3]) == [0, 2, 2]
    assert not clip.motion_valid[0].any()
    assert probe_video(truth.path).num_frames == 3


def test_truncated_file_decodes_what_is_there(synthetic_video_factory, tmp_path):
    truth = synthetic_video_factory(num_frames=48, container_options={"movflags": "faststart"})
    data = truth.path.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    clip = read_clip(cut, 16, 3, start=0)
    assert clip.frames.shape == (16, 96, 128, 3)
    last = int(clip.indices[-1])
    assert 5 < last < 47  # clamped to the last frame that decoded
    np.testing.assert_array_equal(clip.frames[0], _all_rgb(truth.path)[0])
    # the usual (index at the end) MP4 cut short: not openable -> VideoError, not a crash
    cut2 = tmp_path / "cut2.mp4"
    raw = synthetic_video_factory().path.read_bytes()
    cut2.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(VideoError, match="cut2.mp4"):
        read_clip(cut2)


def _audio_only(path):
    import av

    with av.open(str(path), "w") as out:
        st = out.add_stream("pcm_s16le", rate=8000)
        st.layout = "mono"
        fr = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        fr.sample_rate = 8000
        for p in st.encode(fr):
            out.mux(p)
        for p in st.encode():
            out.mux(p)


@pytest.mark.parametrize("kind", ["missing", "empty", "random", "text", "audio", "directory"])
def test_bad_input_raises_video_error_with_path(tmp_path, kind):
    p = tmp_path / f"bad_{kind}.mp4"
    if kind == "empty":
        p.write_bytes(b"")
    elif kind == "random":
        p.write_bytes(np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8).tobytes())
    elif kind == "text":
        p = tmp_path / "bad_text.txt"
        p.write_text("this is not a video\n" * 50)
    elif kind == "audio":
        p = tmp_path / "bad_audio.wav"
        _audio_only(p)
    elif kind == "directory":
        p.mkdir()
    for fn in (lambda: read_clip(p), lambda: probe_video(p), lambda: read_clip(p, motion="flow")):
        with pytest.raises(VideoError) as ei:
            fn()
        assert str(p) in str(ei.value) and ei.value.path == str(p)
        assert len(ei.value.reason) > 5


def test_bad_arguments_are_value_errors(synthetic_video_path):
    for kw in (dict(num_frames=0), dict(stride=0), dict(cell=0), dict(indices=[]), dict(indices=[-1, 2])):
        with pytest.raises(ValueError):
            read_clip(synthetic_video_path, **kw)
    assert os.path.exists(synthetic_video_path)


@pytest.mark.parametrize("ext,codec", [("avi", "mpeg4"), ("mkv", "libx264"), ("h264", "libx264")])
def test_other_containers_index_frames_exactly(synthetic_video_factory, ext, codec):
    """AVI starts B-frame streams at pts 1 while reporting start_time 0; MKV has no frame count;
    a raw .h264 stream has no timestamps at all (frames are counted, no seeking)."""
    truth = synthetic_video_factory(ext=ext, codec=codec, num_frames=40, gop=16)
    ref = _all_rgb(truth.path)
    for start in (0, 21):
        clip = read_clip(truth.path, num_frames=4, stride=4, start=start)
        assert list(clip.indices) == [start + 4 * k for k in range(4)]
        np.testing.assert_array_equal(clip.frames, ref[clip.indices])
        assert clip.motion_source == "codec"
        mag = np.linalg.norm(clip.motion, axis=-1)
        d = np.median(clip.motion[clip.motion_valid & (mag > 2)], 0)
        assert 3.0 < d[0] < 7.5 and 1.0 < d[1] < 4.0, d  # object: (6, 3) px per 4 frames


@pytest.mark.parametrize("pyramid", ["none", "normal"])
def test_skipping_preroll_nonref_frames_changes_nothing(synthetic_video_factory, monkeypatch, pyramid):
    import mgm.video.decode as dec

    truth = synthetic_video_factory(num_frames=80, gop=40, b_pyramid=pyramid)
    for start in (9, 30, 55):
        for motion in ("codec", "none"):
            monkeypatch.setattr(dec, "SKIP_PREROLL_NONREF", True)
            a = read_clip(truth.path, 5, 3, start=start, motion=motion)
            monkeypatch.setattr(dec, "SKIP_PREROLL_NONREF", False)
            b = read_clip(truth.path, 5, 3, start=start, motion=motion)
            np.testing.assert_array_equal(a.frames, b.frames)
            np.testing.assert_array_equal(a.motion, b.motion)
            np.testing.assert_array_equal(a.motion_valid, b.motion_valid)
            assert a.frame_types == b.frame_types
