"""Mask generators of the paper's Table 4(e): random, tube, block, SMM and MGM (dense/sparse).

    from mgm.masking import make_masks, make_mask, STRATEGIES, motion_to_patch_magnitude
    masks = make_masks("mgm", (8, 14, 14), 0.75, magnitude=mag, magnitude_valid=valid,
                       generator=g)                      # (B, T', Hp, Wp) bool, torch, any device
    mask = make_mask("mgm", (8, 14, 14), 0.75, motion=clip.motion,
                     motion_valid=clip.motion_valid, seed=0)   # one clip, numpy

Masks are True = masked. One implementation (``mgm.masking.strategies``, torch, batched);
``make_mask`` is a batch of one. See docs/masking.md for the exact rules.

Names that need torch are imported on first use, so that the CLI's argument parsers and the
config checks can read ``STRATEGIES`` and the options without loading torch.
"""
from __future__ import annotations

from mgm.masking.options import (DEFAULT_OPTIONS, FALLBACK, GUIDED, OPTIONS_USED, STRATEGIES,
                                 check_options, draw_shapes, masked_per_index, unused_options)

_TORCH_NAMES = {"MaskInfo", "make_masks", "make_mask", "sample_draws"}

__all__ = ["STRATEGIES", "GUIDED", "FALLBACK", "DEFAULT_OPTIONS", "OPTIONS_USED", "check_options",
           "draw_shapes", "masked_per_index", "unused_options", "motion_to_patch_magnitude",
           *sorted(_TORCH_NAMES)]


def __getattr__(name):
    if name in _TORCH_NAMES:
        from mgm.masking import strategies

        return getattr(strategies, name)
    if name == "motion_to_patch_magnitude":
        from mgm.masking.guidance import motion_to_patch_magnitude

        return motion_to_patch_magnitude
    raise AttributeError(f"module 'mgm.masking' has no attribute {name!r}")
