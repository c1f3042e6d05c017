"""Mask generators of the paper's Table 4(e): random, tube, block, SMM and MGM (dense/sparse).

    from mgm.masking import make_mask, STRATEGIES, motion_to_patch_magnitude, make_masks_torch
    mask = make_mask("mgm", grid=(8, 14, 14), ratio=0.75, motion=clip.motion,
                     motion_valid=clip.motion_valid, tubelet=2, rng=np.random.default_rng(0))

Masks are bool (T', Hp, Wp), True = masked. See docs/masking.md for the exact rules.
torch is imported only by :func:`make_masks_torch`.
"""
from .guidance import motion_to_patch_magnitude
from .strategies import (DEFAULT_OPTIONS, STRATEGIES, MaskInfo, draw_shapes, make_mask,
                         mask_options, masked_per_index, sample_draws)


def make_masks_torch(*args, **kwargs):
    from .batched import make_masks_torch as _impl

    return _impl(*args, **kwargs)


make_masks_torch.__doc__ = "Batched torch masks; see mgm.masking.batched.make_masks_torch."

__all__ = ["STRATEGIES", "DEFAULT_OPTIONS", "MaskInfo", "make_mask", "make_masks_torch",
           "motion_to_patch_magnitude", "draw_shapes", "mask_options", "masked_per_index", "sample_draws"]
