"""Codec motion vectors: sign, reference-distance normalisation, validity, grid, argmax."""
from __future__ import annotations

import numpy as np
import pytest

from mgm.video import read_clip
from mgm.video import motion as mv
from mgm.video import vectors as vec

V = np.array([1.5, 0.75])  # default fixture object velocity, px/frame


def _interior_cells(box, grid, shape, margin=0):
    """Cells lying entirely inside the object box (shrunk by ``margin`` px)."""
    gh, gw = shape
    x1, y1, x2, y2 = box
    cx0, cy0 = int(np.ceil((x1 + margin) / grid)), int(np.ceil((y1 + margin) / grid))
    cx1, cy1 = int(np.floor((x2 - margin) / grid)), int(np.floor((y2 - margin) / grid))
    m = np.zeros((gh, gw), bool)
    m[max(cy0, 0):max(min(cy1, gh), 0), max(cx0, 0):max(min(cx1, gw), 0)] = True
    return m


def _object_vectors(a, box, margin=4):
    x1, y1, x2, y2 = box
    inside = ((a["dst_x"] - a["w"] / 2 >= x1 + margin) & (a["dst_x"] + a["w"] / 2 <= x2 - margin)
              & (a["dst_y"] - a["h"] / 2 >= y1 + margin) & (a["dst_y"] + a["h"] / 2 <= y2 - margin))
    return a[inside]


@pytest.mark.parametrize("pyramid", ["none", "normal"])
def test_sign_and_normalised_magnitude_p_and_b(synthetic_video_factory, pyramid):
    """Object moving right/down: positive dx, dy from P-frames, from B-frames' past references
    and from B-frames' future references; after dividing by the estimated reference distance
    the speed is about the true one for P and B alike (raw P vectors span 4 frames).
    Single-reference encode (x264 ref=1): with more references x264 often points P blocks two
    anchors back, which no per-frame estimate can see (covered by the strided test below)."""
    from mgm.video.synthetic import SyntheticObject

    truth = synthetic_video_factory(b_pyramid=pyramid, refs=1,
                                    objects=[SyntheticObject(size=(48, 48), start=(36, 36), velocity=tuple(V))])
    clip = read_clip(truth.path, num_frames=40, stride=1, start=1, debug=True)
    kp, kf, start = clip.meta["k_past"], clip.meta["k_future"], clip.meta["raw_motion_start"]
    seen = {"P": [], "B-past": [], "B-future": []}
    raw_p = []
    for i, a in clip.meta["vectors"]:
        ft = clip.frame_types[i - clip.raw_start]
        obj = _object_vectors(a, truth.boxes[i, 0])
        for src, k in ((-1, kp[i - start]), (1, kf[i - start])):
            o = obj[obj["source"] == src]
            if len(o) == 0:
                continue
            m = np.stack([o["motion_x"], o["motion_y"]], 1) / o["motion_scale"][:, None]
            if ft == "P":
                raw_p.append(np.median(m, 0))
            key = "P" if ft == "P" else ("B-past" if src < 0 else "B-future")
            seen[key].append(np.median(src * m / k, 0))  # forward velocity estimate
    for key, vals in seen.items():
        assert len(vals) >= 3, f"no {key} object vectors in the test clip ({pyramid})"
        v = np.median(np.array(vals), 0)
        assert v[0] > 0 and v[1] > 0, (key, v)
        # normalised: about the true per-frame speed for every frame type
        assert np.linalg.norm(v) == pytest.approx(np.linalg.norm(V), rel=0.25), (key, v)
    # without normalisation P vectors are ~4x (IBBBP): the normalisation is doing the work
    assert np.linalg.norm(np.median(np.abs(raw_p), 0)) > 2.5 * np.linalg.norm(V)

    # the grid read_clip returns agrees on the object's interior cells, frame by frame
    mags = {"P": [], "B": []}
    for j, i in enumerate(clip.indices):
        cells = _interior_cells(truth.boxes[i, 0], clip.cell, clip.motion.shape[1:3]) & clip.motion_valid[j]
        ft = clip.frame_types[i - clip.raw_start]
        if cells.sum() == 0 or ft not in mags:
            continue
        d = np.median(clip.motion[j][cells], 0)
        assert d[0] > 0 and d[1] > 0, (i, ft, d)
        mags[ft].append(np.linalg.norm(d))
    for ft, m in mags.items():
        assert len(m) >= 5
        assert np.median(m) == pytest.approx(np.linalg.norm(V), rel=0.25), (ft, np.median(m))


def test_strided_motion_sums_raw_frames(synthetic_video):
    """Motion of a sampled frame = displacement since the previous sampled frame (stride x v),
    also with x264's default multi-reference P-frames (the per-span median ignores them)."""
    stride = 4
    clip = read_clip(synthetic_video.path, num_frames=9, stride=stride, start=2)
    assert clip.motion_source == "codec"
    for j, i in enumerate(clip.indices):
        cells = _interior_cells(synthetic_video.boxes[i, 0], 16, clip.motion.shape[1:3]) & clip.motion_valid[j]
        assert cells.any()
        d = np.median(clip.motion[j][cells], 0)
        np.testing.assert_allclose(d, stride * V, rtol=0.3, atol=0.5)


def test_left_and_up_are_negative(synthetic_video_factory):
    from mgm.video.synthetic import SyntheticObject

    truth = synthetic_video_factory(objects=[SyntheticObject(size=(32, 32), start=(96, 64), velocity=(-1.5, -1.0))],
                                    num_frames=32)
    clip = read_clip(truth.path, num_frames=12, stride=2, start=4)
    ds = []
    for j, i in enumerate(clip.indices):
        cells = _interior_cells(truth.boxes[i, 0], 16, clip.motion.shape[1:3]) & clip.motion_valid[j]
        if cells.any():
            ds.append(np.median(clip.motion[j][cells], 0))
    d = np.median(ds, 0)
    assert d[0] < -1.5 and d[1] < -1.0, d


def test_argmax_near_true_centre(synthetic_video_factory):
    """Top-1 motion cell (what MGM centres its mask on) lies on the moving object, not on the
    static textured distractors or background."""
    truth = synthetic_video_factory(distractors=3, seed=1)
    clip = read_clip(truth.path, num_frames=12, stride=3, start=2)
    mag = np.linalg.norm(clip.motion, axis=-1) * clip.motion_valid
    dists = []
    for j, i in enumerate(clip.indices):
        cy, cx = np.unravel_index(np.argmax(mag[j]), mag[j].shape)
        dists.append(np.hypot((cx + 0.5) * 16 - truth.centres[i, 0, 0], (cy + 0.5) * 16 - truth.centres[i, 0, 1]))
    dists = np.array(dists)
    # object is 32x32 on a 16 px grid: a cell centre on the object is within ~23 px of its centre
    assert np.mean(dists <= 24) >= 0.9, dists


def test_panning_background(synthetic_video_factory):
    truth = synthetic_video_factory(pan=(1.0, 0.0), objects=[], num_frames=40)
    clip = read_clip(truth.path, num_frames=8, stride=4, start=4)
    v = clip.motion[clip.motion_valid]
    assert clip.motion_valid.mean() > 0.8
    np.testing.assert_allclose(np.median(v, 0), [4.0, 0.0], atol=0.6)


def test_missing_is_not_zero(synthetic_video):
    """I-frames have no vectors: their cells are invalid (not zero motion); so is frame 0."""
    clip = read_clip(synthetic_video.path, num_frames=40, stride=1, start=0)
    ft = clip.frame_types
    assert ft[0] == "I" and ft[32] == "I"  # GOP 32
    assert not clip.motion_valid[0].any()
    assert not clip.motion_valid[32].any()  # span (31, 32] holds only the I-frame
    assert np.all(clip.motion[32] == 0)
    assert clip.motion_valid[33].mean() > 0.5
    # with stride 2 the I-frame's neighbour fills the gap: valid
    clip2 = read_clip(synthetic_video.path, num_frames=4, stride=2, start=28)
    assert list(clip2.indices) == [28, 30, 32, 34]
    assert clip2.motion_valid[2].mean() > 0.5


def test_grid_fast_path_matches_block_splitting(synthetic_video):
    clip = read_clip(synthetic_video.path, num_frames=10, stride=2, start=1, debug=True)
    vecs = [(i - clip.meta["raw_motion_start"], a) for i, a in clip.meta["vectors"]]
    R = clip.meta["raw_velocity"].shape[0]
    args = (vecs, R, 96, 128, 16, clip.meta["k_past"], clip.meta["k_future"])
    v1, ok1 = vec.vectors_to_grid(*args)
    v2, ok2 = vec.vectors_to_grid(*args, exact=True)
    np.testing.assert_array_equal(ok1, ok2)
    np.testing.assert_allclose(v1, v2, atol=1e-5)
    # grid 8 and 32 give consistent shapes and the same overall mean motion
    v8, ok8 = vec.vectors_to_grid(*args[:4], 8, *args[5:])
    assert v8.shape == (R, 12, 16, 2)
    w16 = np.abs(v1[ok1]).mean()
    w8 = np.abs(v8[ok8]).mean()
    assert w8 == pytest.approx(w16, rel=0.2)


def test_reference_distances_pyramid_and_plain():
    # display I0 B1 b2 B3 P4; decode order I0 P4 b2 B1 B3 (B-pyramid: b2 is a reference)
    disp = np.array([0, 1, 2, 3, 4])
    dpos = np.array([0, 3, 2, 4, 1])
    kp, kf = mv.reference_distances(disp, dpos, np.array([0, 4, 2]), np.array([0, 1, 2]))
    assert kp.tolist() == [1, 1, 2, 1, 4]
    assert kf.tolist() == [1, 1, 2, 1, 1]  # I0, P4: no future reference decoded before them
    # plain IBBBP: only I/P are references
    dpos = np.array([0, 2, 3, 4, 1])
    kp, kf = mv.reference_distances(disp, dpos, np.array([0, 4]), np.array([0, 1]))
    assert kp.tolist() == [1, 1, 2, 3, 4]
    assert kf.tolist() == [1, 3, 2, 1, 1]


def test_h264_ref_idc_avcc_and_annexb():
    avcc = (6).to_bytes(4, "big") + b"\x06" + b"\x05" * 5 + (3).to_bytes(4, "big") + b"\x41ab"
    assert mv.h264_ref_idc(avcc, 4) == 2
    # a length of 0x0000015e must not be mistaken for an Annex-B start code
    avcc2 = (0x15E).to_bytes(4, "big") + b"\x01" + bytes(0x15D)
    assert mv.h264_ref_idc(avcc2, 4) == 0
    assert mv.h264_ref_idc(b"\x00\x00\x00\x01\x67xx\x00\x00\x01\x65yy", 0) == 3
    assert mv.h264_ref_idc(b"\x00\x00\x01\x01zz", 0) == 0
    assert mv.h264_ref_idc(b"\x00\x00\x01\x06zz", 0) is None


def test_accumulate_policy():
    R, gh, gw = 8, 1, 1
    vel = np.ones((R, gh, gw, 2), np.float32)
    valid = np.ones((R, gh, gw), bool)
    valid[4] = False  # a missing frame inside a span is filled by the mean
    m, ok = mv.accumulate(vel, valid, 0, np.array([2, 6, 6, 4]), np.array([0, 2, 6, 6]), first_span=2)
    assert ok.all()
    np.testing.assert_allclose(m[:, 0, 0, 0], [2, 4, 0, -2])
    valid[:] = False
    m, ok = mv.accumulate(vel, valid, 0, np.array([2, 6]), np.array([0, 2]), first_span=2)
    assert not ok.any() and (m == 0).all()


def test_accumulate_is_the_median_for_short_spans():
    rng = np.random.default_rng(0)
    R, gh, gw = 17, 3, 4
    vel = rng.normal(size=(R, gh, gw, 2)).astype(np.float32)
    valid = rng.random((R, gh, gw)) > 0.3
    idx = np.array([4, 8, 12, 16])
    m, ok = mv.accumulate(vel, valid, 0, idx, idx - 4, first_span=4)
    for j, i in enumerate(idx):
        for y in range(gh):
            for x in range(gw):
                sel = valid[i - 3:i + 1, y, x]
                assert ok[j, y, x] == sel.any()
                if sel.any():
                    np.testing.assert_allclose(m[j, y, x], 4 * np.median(vel[i - 3:i + 1, y, x][sel], 0), rtol=1e-5)
