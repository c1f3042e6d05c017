"""Mask strategies: exact counts, shapes over time, options, edge cases (one clip at a time)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mgm.masking import (STRATEGIES, draw_shapes, make_mask, masked_per_index,
                         motion_to_patch_magnitude, sample_draws)

GRIDS = [(8, 14, 14), (4, 7, 7), (8, 14, 10), (2, 16, 16), (1, 5, 9), (8, 6, 20)]
RATIOS = [0.5, 0.6, 0.75, 0.9, 0.95]


def moving_square_motion(grid=(8, 14, 14), tubelet=2, cell_grid=None, speed=0.6, start=(2.0, 5.0),
                         size=3, distractor=True, rng=None):
    """Motion grid (T, Hm, Wm, 2) of one square moving right at ``speed`` cells per frame
    (vectors of ``speed * 16`` px), a static textured distractor (zero vectors, some missing
    cells) and low noise. Returns motion, valid and the object's centre cell per frame."""
    rng = rng or np.random.default_rng(0)
    tp, hp, wp = grid
    hm, wm = cell_grid or (hp, wp)
    t = tp * tubelet
    motion = rng.normal(0, 0.05, (t, hm, wm, 2)).astype(np.float32)
    valid = rng.random((t, hm, wm)) > 0.1
    centres = []
    for i in range(t):
        x0, y0 = start[0] + speed * i, start[1]
        xs, ys = int(np.floor(x0)), int(np.floor(y0))
        motion[i, ys:ys + size, xs:xs + size] = (speed * 16, 0.0)
        valid[i, ys:ys + size, xs:xs + size] = True
        centres.append((x0 + size / 2, y0 + size / 2))
    if distractor:   # textured but static: zero vectors, some intra (missing)
        motion[:, hm - 4:hm - 1, 1:4] = 0.0
    return motion, valid, np.array(centres)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_exact_counts_every_grid_ratio_seed(strategy):
    for grid in GRIDS:
        motion, valid, _ = moving_square_motion(grid, speed=0.3)
        for ratio in RATIOS:
            n = masked_per_index(ratio, grid)
            assert n == round(ratio * grid[1] * grid[2])
            for seed in range(6):
                m = make_mask(strategy, grid=grid, ratio=ratio, motion=motion, motion_valid=valid,
                              seed=seed)
                assert m.shape == grid and m.dtype == bool
                assert m.sum() == grid[0] * n, (strategy, grid, ratio, seed)
                if strategy != "random":
                    assert (m.sum((1, 2)) == n).all(), (strategy, grid, ratio, seed)


def test_tube_constant_random_not():
    for seed in range(5):
        tube = make_mask("tube", grid=(8, 14, 14), ratio=0.75, seed=seed)
        assert (tube == tube[:1]).all()
        rand = make_mask("random", grid=(8, 14, 14), ratio=0.75, seed=seed)
        assert not (rand == rand[:1]).all()
        assert len({rand[i].sum() for i in range(8)}) > 1    # random is not per-frame exact


def _rect_of(info, t):
    (cx, cy), (w, h) = info.centres[t], info.sizes[t]
    return int(round(cx - w / 2)), int(round(cy - h / 2)), int(w), int(h)


@pytest.mark.parametrize("strategy", ["block", "smm", "mgm"])
def test_rectangles_inside_never_clipped_and_count_fixed_on_boundary(strategy):
    for grid in [(8, 14, 14), (8, 8, 20), (4, 7, 7)]:
        motion, valid, _ = moving_square_motion(grid, speed=0.5, start=(0.0, 0.0))
        for ratio in (0.5, 0.75, 0.9):
            n = masked_per_index(ratio, grid)
            for seed in range(8):
                m, info = make_mask(strategy, grid=grid, ratio=ratio, motion=motion, motion_valid=valid,
                                    seed=seed, return_info=True)
                for t in range(grid[0]):
                    x0, y0, w, h = _rect_of(info, t)
                    assert 0 <= x0 and x0 + w <= grid[2] and 0 <= y0 and y0 + h <= grid[1]
                    rect = np.zeros(grid[1:], bool)
                    rect[y0:y0 + h, x0:x0 + w] = True
                    diff = m[t] ^ rect
                    assert diff.sum() == abs(w * h - n)         # only the count fix differs
                    if w * h > n:                               # removed: boundary patches only
                        inner = np.zeros_like(rect)
                        inner[y0 + 1:y0 + h - 1, x0 + 1:x0 + w - 1] = True
                        assert not (diff & inner).any()
                    else:                                       # added: touching the rectangle
                        ring = np.zeros_like(rect)
                        ring[max(y0 - 1, 0):y0 + h + 1, max(x0 - 1, 0):x0 + w + 1] = True
                        assert (diff <= (ring & ~rect)).all()


def test_block_static_smm_moves_continuously():
    grid = (8, 14, 14)
    moved = 0
    for seed in range(20):
        b = make_mask("block", grid=grid, ratio=0.5, seed=seed)
        assert (b == b[:1]).all()
        m, info = make_mask("smm", grid=grid, ratio=0.5, seed=seed,
                            return_info=True, velocity=1.0)
        c = info.centres
        step = np.abs(np.diff(c, axis=0))
        assert (step <= 1.0 + 1.0).all()                        # velocity bound + rounding
        assert all((m[t] & m[t + 1]).sum() > 0.5 * m[t].sum() for t in range(7))
        moved += int(not (m == m[:1]).all())
    assert moved >= 15


def test_velocity_zero_makes_smm_static_in_position():
    for seed in range(5):
        _, info = make_mask("smm", grid=(8, 14, 14), ratio=0.5, seed=seed,
                            velocity=0.0, jitter=False, return_info=True)
        assert (info.centres == info.centres[:1]).all()


@pytest.mark.parametrize("strategy", ["smm", "mgm"])
def test_jitter_steps_sum_to_zero_and_option_switches_it(strategy):
    grid = (8, 14, 14)
    motion, valid, _ = moving_square_motion(grid)
    varied = 0
    for seed in range(20):
        kw = dict(grid=grid, ratio=0.5, motion=motion, motion_valid=valid, return_info=True)
        _, on = make_mask(strategy, seed=seed, **kw)
        _, off = make_mask(strategy, seed=seed, jitter=False, **kw)
        assert abs(on.steps.sum(0)).max() < 1e-12                 # Σ steps = 0 (each axis)
        assert (on.sizes[0] == on.sizes[-1]).all()                # back to the first shape
        assert (off.sizes == off.sizes[:1]).all() and (off.steps == 0).all()
        varied += int(len({tuple(s) for s in on.sizes}) > 1)
    assert varied >= 10


def test_scale_step_bounds_the_jitter():
    for seed in range(10):
        _, info = make_mask("mgm", grid=(8, 14, 14), ratio=0.5, motion=moving_square_motion()[0],
                            seed=seed, scale_step=0.25, return_info=True)
        assert np.abs(info.steps).max() <= 0.5 + 1e-9


def test_mgm_follows_moving_object_not_static_distractor():
    covered = {s: [] for s in STRATEGIES}
    for seed in range(12):
        rng = np.random.default_rng(100 + seed)
        motion, valid, centres = moving_square_motion(speed=0.4 + 0.1 * (seed % 3),
                                                      start=(0.5 + seed % 2, 2.0 + seed % 7), rng=rng)
        for s in STRATEGIES:
            m = make_mask(s, grid=(8, 14, 14), ratio=0.5, motion=motion, motion_valid=valid,
                          seed=seed)
            for t in range(8):
                cx, cy = centres[2 * t + 1]
                covered[s].append(m[t, int(cy), int(cx)])
            if s == "mgm":   # continuous in time: after the random first index, big overlaps
                n = m[0].sum()
                assert all((m[t] & m[t + 1]).sum() >= 0.6 * n for t in range(1, 7))
    cov = {s: float(np.mean(v)) for s, v in covered.items()}
    assert cov["mgm"] >= 0.9, cov
    assert cov["mgm-sparse"] >= 0.9, cov
    assert cov["mgm"] > cov["tube"] + 0.2 and cov["mgm"] > cov["random"] + 0.2, cov


def test_init_motion_centres_first_index_on_motion():
    grid = (8, 14, 14)
    motion, valid, centres = moving_square_motion(grid, start=(8.0, 8.0), speed=0.3)
    mag, _ = motion_to_patch_magnitude(motion, valid, grid, 2)
    firsts = set()
    for seed in range(10):
        _, a = make_mask("mgm", grid=grid, ratio=0.25, motion=motion, motion_valid=valid,
                         seed=seed, init="motion", jitter=False, return_info=True)
        iy, ix = np.unravel_index(np.argmax(mag[0]), mag[0].shape)
        assert abs(a.centres[0][0] - (ix + 0.5)) <= 0.5 and abs(a.centres[0][1] - (iy + 0.5)) <= 0.5
        _, r = make_mask("mgm", grid=grid, ratio=0.25, motion=motion, motion_valid=valid,
                         seed=seed, jitter=False, return_info=True)
        firsts.add(tuple(r.centres[0]))
        assert (r.centres[1:] == a.centres[1:]).all()            # only index 0 differs
    assert len(firsts) >= 5                                       # random start (paper)


def test_topk_moves_centre_to_mean_of_top_k():
    grid = (4, 14, 14)
    mag = np.zeros(grid, np.float32)
    mag[:, 2, 2] = 10.0                              # strongest single patch, top-left
    mag[:, 10:13, 10:13] = 5.0                       # a larger, weaker moving region
    valid = np.ones(grid, bool)
    kw = dict(grid=grid, ratio=0.1, magnitude=mag, magnitude_valid=valid, jitter=False,
              init="motion", return_info=True, seed=0)
    _, one = make_mask("mgm", topk=1, **kw)
    assert (np.abs(one.centres - [2.5, 2.5]) <= 0.5).all()      # rectangle centred on argmax
    _, ten = make_mask("mgm", topk=10, **kw)
    # top-10 = (2,2) + the 9 patches of the region: the centre is their mean position
    ys, xs = np.r_[2, np.repeat(np.arange(10, 13), 3)], np.r_[2, np.tile(np.arange(10, 13), 3)]
    want = np.array([xs.mean() + 0.5, ys.mean() + 0.5])
    assert (np.abs(ten.centres - want) <= 0.5).all(), (ten.centres, want)
    assert (np.abs(ten.centres - one.centres) >= 6).all()


def test_no_motion_at_an_index_keeps_previous_centre():
    grid = (8, 14, 14)
    motion, valid, _ = moving_square_motion(grid, speed=0.8)
    valid[6:8] = False                     # index 3: every vector missing (an I-frame pair)
    motion[10:12] = 0.0                    # index 5: static
    valid[10:12] = True
    _, info = make_mask("mgm", grid=grid, ratio=0.3, motion=motion, motion_valid=valid, jitter=False,
                        seed=0, return_info=True)
    assert list(info.motion_found) == [True, True, True, False, True, False, True, True]
    assert (info.centres[3] == info.centres[2]).all()
    assert (info.centres[5] == info.centres[4]).all()
    assert info.fallback is None


@pytest.mark.parametrize("strategy,fallback", [("mgm", "smm"), ("mgm-sparse", "smm-sparse")])
def test_no_motion_in_clip_falls_back_to_simulated_and_reports_it(strategy, fallback):
    grid = (8, 14, 14)
    still = np.zeros((16, 14, 14, 2), np.float32)
    for valid in (np.ones((16, 14, 14), bool), np.zeros((16, 14, 14), bool)):
        for seed in range(4):
            draws = {k: v[0] for k, v in sample_draws(strategy, grid, 1, torch.Generator().manual_seed(seed)).items()}
            m, info = make_mask(strategy, grid=grid, ratio=0.75, motion=still, motion_valid=valid,
                                draws=draws, return_info=True)
            assert info.fallback == fallback and not info.motion_found.any()
            sub = {k: draws[k] for k in draw_shapes(fallback, grid)}
            assert (m == make_mask(fallback, grid=grid, ratio=0.75, draws=sub)).all()
            # the same generator state gives the fallback's mask too (its draws come first)
            assert (m == make_mask(fallback, grid=grid, ratio=0.75, seed=seed)).all() == \
                (make_mask(strategy, grid=grid, ratio=0.75, motion=still, motion_valid=valid, seed=seed)
                 == make_mask(fallback, grid=grid, ratio=0.75, seed=seed)).all()
    _, info = make_mask(strategy, grid=grid, ratio=0.75, motion=moving_square_motion()[0],
                        seed=0, return_info=True)
    assert info.fallback is None


def test_smm_sparse_is_scattered_pattern_moving_rigidly():
    m = make_mask("smm-sparse", grid=(8, 14, 14), ratio=0.5, seed=3, velocity=1.0)
    shifts = []
    for t in range(8):
        found = [(dy, dx) for dy in range(14) for dx in range(14)
                 if (np.roll(m[0], (dy, dx), axis=(0, 1)) == m[t]).all()]
        assert found
        shifts.append(found[0])
    assert len(set(shifts)) > 1


def test_mgm_sparse_masks_strongest_motion_patches():
    grid = (4, 14, 14)
    rng = np.random.default_rng(0)
    mag = rng.random(grid).astype(np.float32) * 5
    m = make_mask("mgm-sparse", grid=grid, ratio=0.3, magnitude=mag, seed=0)
    n = masked_per_index(0.3, grid)
    for t in range(4):
        thr = np.sort(mag[t].ravel())[::-1][n - 1]
        assert (m[t] == (mag[t] >= thr)).all()


def test_pure_and_reproducible():
    motion, valid, _ = moving_square_motion()
    keep = motion.copy(), valid.copy()
    for s in STRATEGIES:
        a = make_mask(s, grid=(8, 14, 14), ratio=0.75, motion=motion, motion_valid=valid,
                      seed=7)
        b = make_mask(s, grid=(8, 14, 14), ratio=0.75, motion=motion, motion_valid=valid,
                      seed=7)
        assert (a == b).all()
    assert (keep[0] == motion).all() and (keep[1] == valid).all()


def test_magnitude_input_equals_motion_input():
    motion, valid, _ = moving_square_motion()
    mag, mval = motion_to_patch_magnitude(motion, valid, (8, 14, 14), 2)
    for s in ("mgm", "mgm-sparse"):
        a = make_mask(s, grid=(8, 14, 14), motion=motion, motion_valid=valid, seed=1)
        b = make_mask(s, grid=(8, 14, 14), magnitude=mag, magnitude_valid=mval, seed=1)
        assert (a == b).all()


def test_bad_arguments():
    with pytest.raises(ValueError):
        make_mask("nope")
    with pytest.raises(ValueError):
        make_mask("tube", ratio=1.0)
    with pytest.raises(ValueError):
        make_mask("mgm")                                  # needs motion
    with pytest.raises(TypeError):
        make_mask("tube", top_k=3)
    with pytest.raises(ValueError):
        make_mask("mgm", motion=np.zeros((10, 14, 14, 2)))  # 10 frames != 8 x 2
