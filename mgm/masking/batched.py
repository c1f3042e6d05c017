"""Batched masks in torch, on any device (e.g. in the training step on the GPU).

    masks = make_masks_torch("mgm", magnitude=mag, magnitude_valid=valid, grid=(8, 14, 14),
                             ratio=0.75, generator=g)            # (B, T', Hp, Wp) bool

"Same random draws": every mask is a pure function of its guidance and its uniform draws
(:func:`mgm.masking.draw_shapes`). ``make_masks_torch`` draws them with ``torch.rand(...,
dtype=float64, generator=generator)`` in :func:`draw_shapes` order, one tensor of shape
(B, *shape) per name, unless ``draws=`` gives them. For every b,
``make_masks_torch(..., draws=D)[b] == make_mask(..., draws={k: D[k][b]})`` exactly
(numpy and torch run the same float64 operation sequence, see ``_xp``); the draws used are
returned in ``info.draws`` with ``return_info=True``.
"""
from __future__ import annotations

from .strategies import GUIDED, build_masks, check_args, draw_shapes


def sample_draws_torch(strategy: str, grid, batch: int, generator=None, device=None) -> dict:
    import torch

    if generator is not None and device is None:
        device = generator.device
    return {k: torch.rand((int(batch),) + s, generator=generator, dtype=torch.float64, device=device)
            for k, s in draw_shapes(strategy, tuple(int(g) for g in grid)).items()}


def make_masks_torch(strategy: str, batch_size: int | None = None, *, magnitude=None,
                     magnitude_valid=None, grid=(8, 14, 14), ratio: float = 0.75, generator=None,
                     device=None, draws: dict | None = None, return_info: bool = False, **options):
    """(B, T', Hp, Wp) bool masks, True = masked, on the magnitude's (or ``device``) device.

    batch_size:   number of masks (not needed when ``magnitude`` or ``draws`` is given).
    magnitude, magnitude_valid: (B, T', Hp, Wp) patch-grid guidance (see
                  :func:`motion_to_patch_magnitude`); needed for mgm / mgm-sparse.
    generator:    torch.Generator the draws come from (its device is used for them).
    draws:        or the draws: dict name → (B, *shape) float64 tensors.
    return_info:  also return a batched MaskInfo; ``info.fallback`` is a bool tensor (B,):
                  True where a clip had no motion at all and ``info.fallback_strategy`` was used.
    """
    import torch

    from ._xp import TorchXP

    opts = check_args(strategy, grid, ratio, options)
    grid = tuple(int(g) for g in grid)
    if magnitude is not None:
        magnitude = torch.as_tensor(magnitude)
        if device is None:
            device = magnitude.device
        if magnitude.dim() != 4 or tuple(magnitude.shape[1:]) != grid:
            raise ValueError(f"magnitude must be (B, {grid[0]}, {grid[1]}, {grid[2]}), got {tuple(magnitude.shape)}")
        batch_size = magnitude.shape[0] if batch_size is None else batch_size
        if magnitude.shape[0] != batch_size:
            raise ValueError(f"batch_size {batch_size} but magnitude has {magnitude.shape[0]} clips")
    elif strategy in GUIDED:
        raise ValueError(f"strategy {strategy!r} needs magnitude= (B, T', Hp, Wp)")
    if draws is None:
        if batch_size is None:
            raise ValueError("give batch_size, magnitude or draws")
        draws = sample_draws_torch(strategy, grid, batch_size, generator, device)
    else:
        draws = {k: torch.as_tensor(v, dtype=torch.float64) for k, v in draws.items()}
    if device is None:
        device = next(iter(draws.values())).device
    shapes = draw_shapes(strategy, grid)
    b = None
    for k, s in shapes.items():
        if k not in draws:
            raise ValueError(f"draws lack {k!r}")
        draws[k] = draws[k].to(device)
        b = draws[k].shape[0] if b is None else b
        if tuple(draws[k].shape) != (b,) + s:
            raise ValueError(f"draw {k!r} has shape {tuple(draws[k].shape)}, expected (B,)+{s}")
    if batch_size is not None and b != batch_size:
        raise ValueError(f"draws are for {b} clips, batch_size is {batch_size}")
    mag = val = None
    if strategy in GUIDED:
        mag = magnitude.to(device=device, dtype=torch.float32)
        val = (torch.ones(mag.shape, dtype=torch.bool, device=device) if magnitude_valid is None
               else torch.as_tensor(magnitude_valid, device=device).to(torch.bool))
        val = val & torch.isfinite(mag)
    xp = TorchXP(device)
    mask, info = build_masks(xp, strategy, grid, ratio, {k: draws[k] for k in shapes}, mag, val, opts)
    return (mask, info) if return_info else mask
