"""What the fast decode path must keep: the same pixels, the same motion, the same bad-file
behaviour, while decoding less and holding no decoded frames alive."""
from __future__ import annotations

import gc

import numpy as np
import pytest

import mgm.video.decode as dec
from mgm.video import vectors as vec
from mgm.video import read_clip


def _all_rgb(path):
    import av

    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


@pytest.mark.parametrize("pyramid,ext", [("none", "mp4"), ("normal", "mp4"), ("normal", "mkv"), ("normal", "ts")])
def test_rgb_only_skips_unsampled_nonref_frames_same_pixels(synthetic_video_factory, pyramid, ext):
    truth = synthetic_video_factory(num_frames=80, gop=40, b_pyramid=pyramid, ext=ext)
    ref = _all_rgb(truth.path)
    for start, stride in ((0, 4), (9, 3), (37, 4), (50, 2)):
        rgb = read_clip(truth.path, 7, stride, start=start, motion="none")
        np.testing.assert_array_equal(rgb.frames, ref[rgb.indices])
        # the B-frames between sampled frames were not decoded at all ...
        inside = rgb.frame_types[int(rgb.indices[0]) - rgb.raw_start:]
        if stride > 1:
            assert "?" in inside, inside
        # ... while codec motion still decodes every frame of the clip
        codec = read_clip(truth.path, 7, stride, start=start, motion="codec")
        np.testing.assert_array_equal(codec.frames, rgb.frames)
        assert "?" not in codec.frame_types[int(codec.indices[0]) - codec.raw_start:]


def test_frames_identical_to_decord(synthetic_video_factory):
    decord = pytest.importorskip("decord")
    truth = synthetic_video_factory(num_frames=90, gop=30, b_pyramid="normal", width=176, height=112)
    idx = [3, 7, 11, 40, 41, 60, 89]
    theirs = decord.VideoReader(str(truth.path), num_threads=1).get_batch(idx).asnumpy()
    for motion in ("none", "codec"):
        np.testing.assert_array_equal(read_clip(truth.path, indices=idx, motion=motion).frames, theirs)


def test_truncated_file_clamps_to_the_same_frame_with_skipping(synthetic_video_factory, tmp_path, monkeypatch):
    """Cut at several points: the RGB path, which skips B-frames, clamps the clip to the same
    last frame and returns the same pixels as a decode of every frame."""
    truth = synthetic_video_factory(num_frames=48, container_options={"movflags": "faststart"})
    data = truth.path.read_bytes()
    for frac in (0.45, 0.6, 0.75):
        cut = tmp_path / f"cut{frac}.mp4"
        cut.write_bytes(data[: int(len(data) * frac)])
        monkeypatch.setattr(dec, "SKIP_UNSAMPLED_NONREF", True)
        a = read_clip(cut, 16, 3, start=0, motion="none")
        monkeypatch.setattr(dec, "SKIP_UNSAMPLED_NONREF", False)
        b = read_clip(cut, 16, 3, start=0, motion="none")
        assert list(a.indices) == list(b.indices) and int(a.indices[-1]) < 47
        np.testing.assert_array_equal(a.frames, b.frames)


def test_decoded_frames_are_freed_without_the_garbage_collector(synthetic_video_factory):
    """Reading side data through frame.side_data makes a frame <-> side-data reference cycle:
    every decoded frame would stay in memory until the next GC run."""
    truth = synthetic_video_factory(num_frames=60, b_pyramid="normal")

    def frames_alive():
        return sum(type(o).__name__ == "VideoFrame" for o in gc.get_objects())

    gc.collect()
    gc.disable()
    try:
        before = frames_alive()
        read_clip(truth.path, 8, 4, start=10, motion="codec")
        assert frames_alive() - before <= 1
    finally:
        gc.enable()


def test_one_decoder_thread(synthetic_video_path, monkeypatch):
    seen = []
    orig = dec._decode

    def spy(container, stream, *a, **k):
        seen.append(stream.codec_context.thread_count)
        return orig(container, stream, *a, **k)

    monkeypatch.setattr(dec, "_decode", spy)
    for motion in ("none", "codec", "flow"):
        read_clip(synthetic_video_path, 4, 2, start=5, motion=motion)
    assert seen and set(seen) == {1}


def _record_buffer(rng, frames, width, height):
    """A VectorBuffer of random H.264-like vectors (16x16/16x8/8x16/8x8 blocks in macroblocks,
    both directions) for ``frames`` frames."""
    import av  # noqa: F401  (the AVMotionVector dtype comes from PyAV's to_ndarray)

    if vec.MV_DTYPE is None:
        pytest.skip("no motion vector dtype learnt yet")
    buf = vec.VectorBuffer()
    for f in range(frames):
        n = int(rng.integers(1, 400))
        a = np.zeros(n, vec.MV_DTYPE)
        wh = rng.choice([(16, 16), (16, 8), (8, 16), (8, 8)], n)
        a["w"], a["h"] = wh[:, 0], wh[:, 1]
        a["dst_x"] = rng.integers(0, (width + 15) // 16, n) * 16 + rng.choice([4, 8, 12], n)
        a["dst_y"] = rng.integers(0, (height + 15) // 16, n) * 16 + rng.choice([4, 8, 12], n)
        a["source"] = rng.choice([-1, 1], n)
        a["motion_x"] = rng.integers(-200, 200, n)
        a["motion_y"] = rng.integers(-200, 200, n)
        a["motion_scale"] = 4
        buf.add(f, a.view(np.uint8))
    return buf


def test_grid_in_chunks_equals_one_pass_and_a_plain_loop(synthetic_video_path, monkeypatch):
    read_clip(synthetic_video_path, 2, 1, start=3, motion="codec")  # learns the record dtype
    rng = np.random.default_rng(0)
    R, H, W = 12, 100, 136
    buf = _record_buffer(rng, R, W, H)
    kp, kf = rng.integers(1, 5, R).astype(np.float32), rng.integers(1, 5, R).astype(np.float32)
    one = vec.grid_components(buf, 0, R, H, W, 16, kp, kf)
    monkeypatch.setattr(vec, "_CHUNK", 300)  # several runs of frames
    chunked = vec.grid_components(buf, 0, R, H, W, 16, kp, kf)
    for x, y in zip(one, chunked):
        np.testing.assert_array_equal(x, y)
    # the definition, one block at a time
    gh, gw = H // 16, W // 16
    num = np.zeros((R, gh, gw, 2))
    den = np.zeros((R, gh, gw))
    for f, a in buf.per_frame():
        for v in a:
            cy, cx = v["dst_y"] // 16, v["dst_x"] // 16
            if cy >= gh or cx >= gw:
                continue
            k = kf[f] if v["source"] > 0 else kp[f]
            area = float(v["w"]) * float(v["h"])
            num[f, cy, cx] += area * v["source"] * np.array([v["motion_x"], v["motion_y"]]) / (v["motion_scale"] * k)
            den[f, cy, cx] += area
    ok = den > 0
    np.testing.assert_array_equal(one[2][:R], ok)
    vel = np.where(ok[..., None], num / np.maximum(den, 1)[..., None], 0)
    np.testing.assert_allclose(np.stack([one[0][:R], one[1][:R]], -1), vel, rtol=1e-5, atol=1e-5)
    assert not one[2][R].any()  # the extra frame is invalid everywhere
