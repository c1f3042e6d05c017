"""Motion grid → patch-grid magnitude (tubelet mean, nearest-upsampling + top-1 pooling)."""
from __future__ import annotations

import numpy as np
import pytest

from mgm.masking import motion_to_patch_magnitude


def test_same_grid_tubelet_mean_over_valid_frames():
    motion = np.zeros((4, 2, 2, 2), np.float32)
    motion[0, 0, 0] = (3, 4)      # |v| = 5
    motion[1, 0, 0] = (6, 8)      # 10 -> mean 7.5
    motion[2, 1, 1] = (0, 2)
    motion[3, 1, 1] = (9, 9)      # missing: ignored
    valid = np.ones((4, 2, 2), bool)
    valid[3, 1, 1] = False
    valid[2:, 0, 1] = False       # never valid in tubelet 1
    mag, val = motion_to_patch_magnitude(motion, valid, (2, 2, 2), tubelet=2)
    assert mag.dtype == np.float32 and val.dtype == bool and mag.shape == (2, 2, 2)
    assert mag[0, 0, 0] == pytest.approx(7.5)
    assert mag[1, 1, 1] == pytest.approx(2.0)
    assert not val[1, 0, 1] and mag[1, 0, 1] == 0 and val[0, 0, 1]


def test_finer_motion_grid_is_max_pooled():
    motion = np.zeros((2, 28, 28, 2), np.float32)      # 8 px cells, 16 px patches
    motion[:, 5, 9] = (2, 0)
    mag, val = motion_to_patch_magnitude(motion, None, (1, 14, 14), tubelet=2)
    assert mag[0, 2, 4] == pytest.approx(2.0)
    assert mag.sum() == pytest.approx(2.0) and val.all()


def test_coarser_and_non_divisible_grids_cover_the_same_extent():
    motion = np.zeros((2, 7, 7, 2), np.float32)        # 32 px cells
    motion[:, 3, 6] = (0, 1)
    mag, _ = motion_to_patch_magnitude(motion, None, (1, 14, 14), tubelet=2)
    assert (mag[0, 6:8, 12:14] == 1).all() and mag.sum() == 4
    motion = np.zeros((2, 10, 10, 2), np.float32)      # 10 cells → 14 patches
    motion[:, 9, 0] = (1, 0)
    mag, _ = motion_to_patch_magnitude(motion, None, (1, 14, 14), tubelet=2)
    assert mag[0, 13, 0] == 1 and mag[0, 0, 13] == 0 and mag[0, 12, 0] == 1
    assert mag[0, :12].sum() == 0


def test_missing_cells_are_not_zero_motion_and_nan_is_invalid():
    motion = np.full((2, 4, 4, 2), np.nan, np.float32)
    motion[:, 0, 0] = (1, 1)
    mag, val = motion_to_patch_magnitude(motion, None, (1, 4, 4), tubelet=2)
    assert val.sum() == 1 and np.isfinite(mag).all()


def test_shape_errors():
    with pytest.raises(ValueError):
        motion_to_patch_magnitude(np.zeros((6, 4, 4, 2)), None, (2, 4, 4), tubelet=2)
    with pytest.raises(ValueError):
        motion_to_patch_magnitude(np.zeros((4, 4, 4)), None, (2, 4, 4), tubelet=2)
