"""Batched torch masks equal the numpy per-clip masks for the same draws."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from mgm.masking import (STRATEGIES, draw_shapes, make_mask, make_masks_torch,  # noqa: E402
                         masked_per_index, motion_to_patch_magnitude, sample_draws)
from test_masking_strategies import moving_square_motion  # noqa: E402

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
def test_batched_equals_per_clip_for_same_draws(strategy, device):
    for grid, ratio, opts in [((8, 14, 14), 0.75, {}), ((4, 7, 10), 0.5, {"topk": 3, "init": "motion"}),
                              ((8, 14, 14), 0.9, {"jitter": False, "velocity": 2.5}),
                              ((8, 12, 16), 0.6, {"init": "motion", "scale_step": 0.3, "min_motion": 0.2})]:
        b = 12
        mag, val = _batch_guidance(grid, b)
        g = torch.Generator(device=device).manual_seed(123)
        masks, info = make_masks_torch(strategy, magnitude=torch.tensor(mag, device=device),
                                       magnitude_valid=torch.tensor(val, device=device), grid=grid,
                                       ratio=ratio, generator=g, return_info=True, **opts)
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


def test_numpy_draws_drive_torch_and_generator_is_reproducible():
    grid = (8, 14, 14)
    mag, val = _batch_guidance(grid, 6)
    draws = sample_draws("mgm", grid, np.random.default_rng(5), batch=6)
    a = make_masks_torch("mgm", magnitude=torch.tensor(mag), magnitude_valid=torch.tensor(val), grid=grid,
                         draws={k: torch.tensor(v) for k, v in draws.items()})
    for i in range(6):
        one = make_mask("mgm", grid=grid, magnitude=mag[i], magnitude_valid=val[i],
                        draws={k: v[i] for k, v in draws.items()})
        assert (one == a[i].numpy()).all()
    x = make_masks_torch("smm", 8, grid=grid, generator=torch.Generator().manual_seed(1))
    y = make_masks_torch("smm", 8, grid=grid, generator=torch.Generator().manual_seed(1))
    z = make_masks_torch("smm", 8, grid=grid, generator=torch.Generator().manual_seed(2))
    assert torch.equal(x, y) and not torch.equal(x, z)
    assert set(draw_shapes("smm", grid)) == {"pos", "vel", "scale"}


def test_batched_argument_errors():
    with pytest.raises(ValueError):
        make_masks_torch("mgm", 4, grid=(8, 14, 14))                # needs magnitude
    with pytest.raises(ValueError):
        make_masks_torch("tube", grid=(8, 14, 14))                  # no batch size
    with pytest.raises(ValueError):
        make_masks_torch("mgm", magnitude=torch.zeros(2, 8, 14, 13), grid=(8, 14, 14))


def test_rect_table_equals_direct_rendering(monkeypatch):
    """The rectangle lookup table and direct rendering give the same masks (both backends)."""
    from mgm.masking import strategies

    grid = (8, 10, 12)
    mag, val = _batch_guidance(grid, 6, seed=3)
    for s in ("block", "smm", "mgm"):
        g = torch.Generator().manual_seed(9)
        kw = dict(magnitude=torch.tensor(mag), magnitude_valid=torch.tensor(val), grid=grid, ratio=0.6)
        a, info = make_masks_torch(s, generator=g, return_info=True, **kw)
        d = {k: v.numpy() for k, v in info.draws.items()}
        monkeypatch.setattr(strategies, "TABLE_MAX_BYTES", 0)
        b = make_masks_torch(s, draws=info.draws, **kw)
        c = [make_mask(s, grid=grid, ratio=0.6, magnitude=mag[i], magnitude_valid=val[i],
                       draws={k: v[i] for k, v in d.items()}) for i in range(6)]
        monkeypatch.undo()
        assert torch.equal(a, b)
        assert all((c[i] == a[i].numpy()).all() for i in range(6))


def test_degenerate_draws_still_exact_and_equal():
    """All-equal draws (every tie possible): exact counts, numpy == torch."""
    grid = (4, 7, 7)
    mag = np.zeros((2,) + grid, np.float32)
    mag[1, :, 3, 3] = 2.0
    for s in STRATEGIES:
        draws = {k: np.full((2,) + shp, 0.5) for k, shp in draw_shapes(s, grid).items()}
        t = make_masks_torch(s, magnitude=torch.tensor(mag), grid=grid, ratio=0.5,
                             draws={k: torch.tensor(v) for k, v in draws.items()})
        n = masked_per_index(0.5, grid)
        assert (t.sum((1, 2, 3)) == grid[0] * n).all()
        for i in range(2):
            one = make_mask(s, grid=grid, ratio=0.5, magnitude=mag[i], draws={k: v[i] for k, v in draws.items()})
            assert (one == t[i].numpy()).all(), s
