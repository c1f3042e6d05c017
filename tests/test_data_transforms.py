"""Clip sampling and the spatial transforms applied alike to frames, motion grid and boxes."""
import dataclasses

import numpy as np
import pytest
import torch

from data_fixtures import tiny_cfg, tiny_synth
from mgm.data import sampling
from mgm.data import transforms as T
from mgm.masking import make_mask, motion_to_patch_magnitude


# ---------------------------------------------------------------- sampling


def test_dense_sampling():
    rng = np.random.default_rng(0)
    for _ in range(50):
        idx = sampling.clip_indices(300, 16, 4, "dense", "train", rng=rng)
        assert np.all(np.diff(idx) == 4) and idx[0] >= 0 and idx[-1] <= 299
    short = sampling.clip_indices(20, 16, 4, "dense", "train", rng=rng)     # clamped
    assert short[0] == 0 and short[-1] == 19 and np.all(np.diff(short) >= 0)
    assert sampling.dense_test_starts(100, 16, 2, 1) == [(100 - 31) // 2]
    starts = sampling.dense_test_starts(300, 16, 4, 5)
    assert starts[0] == 0 and starts[-1] == 300 - 61 and len(set(starts)) == 5


def test_segment_sampling():
    rng = np.random.default_rng(1)
    for _ in range(50):
        idx = sampling.clip_indices(64, 16, 2, "segment", "train", rng=rng)
        assert np.all(idx // 4 == np.arange(16))                # one frame per segment
    v0 = sampling.clip_indices(64, 16, 2, "segment", "test", clip=0, num_clips=2)
    v1 = sampling.clip_indices(64, 16, 2, "segment", "test", clip=1, num_clips=2)
    assert np.all(v0 // 4 == np.arange(16)) and np.all(v1 > v0)
    assert sampling.clip_indices(5, 16, 2, "segment", "val").max() <= 4


# ---------------------------------------------------------------- geometry


def test_motion_grid_follows_crop_resize_and_flip():
    motion = np.zeros((2, 6, 8, 2), np.float32)     # 96 x 128 source, 16 px cells
    valid = np.zeros((2, 6, 8), bool)
    motion[:, 2, 3] = (3.0, -1.0)                    # cell x 48..64, y 32..48
    valid[:, 2, 3] = True
    g = T.Geometry(x0=32, y0=16, w=64, h=64, out_w=128, out_h=128)   # 2x zoom
    m, v = T.apply_motion(motion, valid, g, 16, 16)
    assert m.shape == (2, 8, 8, 2) and v.shape == (2, 8, 8)
    ys, xs = np.nonzero(v[0])
    # source x 48..64 -> output (48-32)*2 = 32..64 -> cols 2,3; y 32..48 -> 32..64 -> rows 2,3
    assert set(xs) == {2, 3} and set(ys) == {2, 3}
    assert np.allclose(m[0, 2, 2], (6.0, -2.0))          # displacement scaled by the zoom
    gf = dataclasses.replace(g, flip=True)
    mf, vf = T.apply_motion(motion, valid, gf, 16, 16)
    expect = m[:, :, ::-1].copy()
    expect[..., 0] *= -1
    assert np.array_equal(mf, expect) and np.array_equal(vf, v[:, :, ::-1])
    # boxes go through the same geometry
    b = T.apply_boxes([[48, 32, 64, 48]], g)
    assert np.allclose(b, [[32, 32, 64, 64]])
    assert np.allclose(T.apply_boxes([[48, 32, 64, 48]], gf), [[64, 32, 96, 64]])


def test_frames_crop_and_flip():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (3, 40, 60, 3), dtype=np.uint8)
    g = T.Geometry(10, 5, 32, 32, 32, 32)
    out = T.apply_frames(frames, g)
    assert np.array_equal(out, frames[:, 5:37, 10:42])
    assert np.array_equal(T.apply_frames(frames, dataclasses.replace(g, flip=True)), out[:, :, ::-1])
    for _ in range(30):
        g = T.multiscale_crop(240, 320, 224, [1, 0.875, 0.75, 0.66], rng, flip_prob=0.5)
        assert g.x0 + g.w <= 320 and g.y0 + g.h <= 240 and (g.out_w, g.out_h) == (224, 224)
    crops = T.test_crops(240, 320, 224, 3)
    assert [c.x0 for c in crops] == [0, 40, 80] and all(c.w == 240 for c in crops)
    frames = np.random.default_rng(0).integers(0, 256, (2, 4, 6, 3), dtype=np.uint8)
    u8 = T.channels_first(frames)
    assert u8.dtype == torch.uint8 and tuple(u8.shape) == (3, 2, 4, 6)
    assert np.array_equal(u8.numpy(), frames.transpose(3, 0, 1, 2))
    x = T.normalize(u8)
    assert x.dtype == torch.float32
    want = (frames.transpose(3, 0, 1, 2) / 255.0 - np.array(T.MEAN).reshape(3, 1, 1, 1)) / np.array(T.STD).reshape(3, 1, 1, 1)
    np.testing.assert_allclose(x.numpy(), want, atol=1e-5)
    assert torch.equal(T.normalize(u8[None])[0], x)                  # a batch: the same numbers
    with pytest.raises(TypeError, match="normalised twice"):
        T.normalize(x)


# ---------------------------------------------------------------- masks follow the transform


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return tiny_synth(tmp_path_factory.mktemp("synth_tf"), videos=8, size=112, frames=24)


def _decode(path, cfg, start=0):
    from mgm.video import read_clip

    return read_clip(str(path), num_frames=cfg.data.num_frames, stride=cfg.data.stride,
                     start=start, motion="auto", cell=cfg.data.motion_cell)


def test_guidance_of_flipped_clip_is_mirrored(synth):
    """The magnitude grid the masks follow mirrors with the frames (a flip negates dx, whose
    magnitude is unchanged), so a mask built from it follows the flipped object."""
    from mgm.data.annotations import load_annotations
    from mgm.data.dataset import VideoDataset

    cfg = tiny_cfg(str(synth / "train.txt"))
    ds = VideoDataset(load_annotations(synth / "train.txt"), cfg, "train", "pretrain", guidance=True)
    for vid in (0, 1, 2):
        clip = _decode(synth / f"videos/{vid:05d}.mp4", cfg)
        for seed in range(3):
            g = T.multiscale_crop(112, 112, 64, cfg.data.scales, np.random.default_rng(seed))
            gf = dataclasses.replace(g, flip=True)
            fa, ma, va = T.apply_clip(clip.frames, clip.motion, clip.motion_valid, g, ds.cell)
            fb, mb, vb = T.apply_clip(clip.frames, clip.motion, clip.motion_valid, gf, ds.cell)
            assert np.array_equal(fb, fa[:, :, ::-1])
            assert np.array_equal(vb, va[:, :, ::-1])
            assert np.array_equal(mb[..., 0], -ma[:, :, ::-1, 0]) and np.array_equal(mb[..., 1], ma[:, :, ::-1, 1])
            pa = motion_to_patch_magnitude(ma, va, ds.patch_grid, ds.tubelet)
            pb = motion_to_patch_magnitude(mb, vb, ds.patch_grid, ds.tubelet)
            assert np.array_equal(pb[0], pa[0][:, :, ::-1]) and np.array_equal(pb[1], pa[1][:, :, ::-1])


def test_mgm_mask_follows_object_through_crop_and_flip(synth):
    from mgm.data.annotations import load_annotations
    from mgm.data.dataset import VideoDataset
    from mgm.data.synth import load_boxes

    boxes = load_boxes(synth / "boxes.json")["videos"]
    cfg = tiny_cfg(str(synth / "train.txt"), **{"mask.init": "motion", "mask.ratio": 0.4,
                                                "data.size": 112, "model.img_size": 112})
    ds = VideoDataset(load_annotations(synth / "train.txt"), cfg, "train", "pretrain", guidance=True)
    hits = total = 0
    for vid in (0, 1, 2, 3):                          # left, right, up, down
        clip = _decode(synth / f"videos/{vid:05d}.mp4", cfg)
        for seed in range(4):
            rng = np.random.default_rng(seed)
            g = dataclasses.replace(T.multiscale_crop(112, 112, 112, [1.0, 0.875], rng), flip=seed % 2 == 1)
            _, motion, valid = T.apply_clip(clip.frames, clip.motion, clip.motion_valid, g, ds.cell)
            mask = make_mask("mgm", ds.patch_grid, 0.4, motion=motion, motion_valid=valid, tubelet=ds.tubelet,
                             seed=seed, init="motion")
            b = T.apply_boxes(boxes[f"videos/{vid:05d}.mp4"]["boxes"][clip.indices], g)
            for t in range(mask.shape[0]):
                x0, y0, x1, y1 = b[2 * t + 1]
                if x1 - x0 < 4 or y1 - y0 < 4:
                    continue                           # object cropped out
                cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
                hits += bool(mask[t, min(int(cy // 16), 6), min(int(cx // 16), 6)])
                total += 1
    assert total > 50
    assert hits / total >= 0.9, (hits, total)
