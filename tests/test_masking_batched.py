"""Batched masks: each row equals the one-clip mask of its draws, on every device."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mgm.masking import (STRATEGIES, draw_shapes, make_mask, make_masks, masked_per_index,
                         motion_to_patch_magnitude, sample_draws)
from test_masking_strategies import moving_square_motion

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _batch_guidance(grid, b, seed=0):
    mags, vals = [], []
    for i in range(b):
        rng = np.random.default_rng(seed + i)
        motion, valid, _ = moving_square_motion(grid, speed=0.2 + 0.1 * (i % 4),
                                                start=(rng.integers(0, 4), rng.integers(0, grid[1] - 3)),
                                                rng=rng)
        if i % 5 == 3:
            motion[:] = 0                          # a clip without motion: fallback
        if i % 5 == 4:
            valid[2:6] = False                     # indices without vectors
        m, v = motion_to_patch_magnitude(motion, valid, grid, 2)
        if i % 7 == 6:
            m[:, :, :] = 1.0                       # all-equal magnitudes: tie-breaking
        mags.append(m)
        vals.append(v)
    return np.stack(mags), np.stack(vals)




@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_batch_rows_equal_one_clip_masks_of_their_draws(strategy, device):
    for grid, ratio, opts in [((8, 14, 14), 0.75, {}), ((4, 7, 10), 0.5, {"topk": 3, "init": "motion"}),
                              ((8, 14, 14), 0.9, {"jitter": False, "velocity": 2.5}),
                              ((8, 12, 16), 0.6, {"init": "motion", "scale_step": 0.3, "min_motion": 0.2})]:
        b = 12
        mag, val = _batch_guidance(grid, b)
        g = torch.Generator(device=device).manual_seed(123)
        masks, info = make_masks(strategy, grid, ratio, magnitude=torch.tensor(mag, device=device),
                                 magnitude_valid=torch.tensor(val, device=device), generator=g,
                                 return_info=True, **opts)
        assert masks.shape == (b,) + grid and masks.dtype == torch.bool
        assert masks.device.type == device
        n = masked_per_index(ratio, grid)
        assert (masks.sum((1, 2, 3)) == grid[0] * n).all()
        for i in range(b):
            d = {k: v[i].cpu().numpy() for k, v in info.draws.items()}
            one, oinfo = make_mask(strategy, grid=grid, ratio=ratio, magnitude=mag[i], magnitude_valid=val[i],
                                   draws=d, return_info=True, **opts)
            assert (one == masks[i].cpu().numpy()).all(), (strategy, grid, i)
            if strategy in ("mgm", "mgm-sparse"):
                assert bool(info.fallback[i]) == (oinfo.fallback is not None)
        if strategy in ("mgm", "mgm-sparse"):
            assert info.fallback.sum() >= 2
        if device != "cpu":       # the same draws give the same masks on the CPU
            cpu = make_masks(strategy, grid, ratio, magnitude=torch.tensor(mag), magnitude_valid=torch.tensor(val),
                             draws={k: v.cpu() for k, v in info.draws.items()}, **opts)
            assert torch.equal(cpu, masks.cpu())


def test_generator_is_reproducible_and_draws_are_its_stream():
    grid = (8, 14, 14)
    mag, val = _batch_guidance(grid, 6)
    kw = dict(magnitude=torch.tensor(mag), magnitude_valid=torch.tensor(val))
    a = make_masks("mgm", grid, 0.75, generator=torch.Generator().manual_seed(5), **kw)
    draws = sample_draws("mgm", grid, 6, torch.Generator().manual_seed(5))
    assert torch.equal(a, make_masks("mgm", grid, 0.75, draws=draws, **kw))
    x = make_masks("smm", grid, batch_size=8, generator=torch.Generator().manual_seed(1))
    y = make_masks("smm", grid, batch_size=8, generator=torch.Generator().manual_seed(1))
    z = make_masks("smm", grid, batch_size=8, generator=torch.Generator().manual_seed(2))
    assert torch.equal(x, y) and not torch.equal(x, z)
    assert set(draw_shapes("smm", grid)) == {"pos", "vel", "scale"}


def test_batched_argument_errors():
    with pytest.raises(ValueError, match="needs magnitude"):
        make_masks("mgm", (8, 14, 14), batch_size=4)
    with pytest.raises(ValueError, match="batch_size"):
        make_masks("tube", (8, 14, 14))
    with pytest.raises(ValueError, match="magnitude must be"):
        make_masks("mgm", (8, 14, 14), magnitude=torch.zeros(2, 8, 14, 13))
    with pytest.raises(ValueError, match="draw 'perm'"):
        make_masks("tube", (8, 14, 14), draws={"perm": torch.zeros(2, 5)})


def test_degenerate_draws_still_exact():
    """All-equal draws (every tie possible): exact counts, rows equal the one-clip masks."""
    grid = (4, 7, 7)
    mag = np.zeros((2,) + grid, np.float32)
    mag[1, :, 3, 3] = 2.0
    for s in STRATEGIES:
        draws = {k: np.full((2,) + shp, 0.5) for k, shp in draw_shapes(s, grid).items()}
        t = make_masks(s, grid, 0.5, magnitude=torch.tensor(mag), draws={k: torch.tensor(v) for k, v in draws.items()})
        n = masked_per_index(0.5, grid)
        assert (t.sum((2, 3)) == n).all() if s != "random" else (t.sum((1, 2, 3)) == grid[0] * n).all()
        for i in range(2):
            one = make_mask(s, grid=grid, ratio=0.5, magnitude=mag[i], draws={k: v[i] for k, v in draws.items()})
            assert (one == t[i].numpy()).all(), s
