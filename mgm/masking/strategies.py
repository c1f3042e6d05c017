"""The mask strategies of the paper's Table 4(e), batched in torch on any device.

A mask is bool (B, T', Hp, Wp), True = masked (hidden from the encoder). Every mask of one
(ratio, grid) hides exactly ``T'·n`` tokens with ``n = round(ratio·Hp·Wp)``, and every strategy
except ``random`` hides exactly ``n`` per temporal index.

A mask is a pure function of its guidance (the patch-grid motion magnitude) and of uniform
[0, 1) "draws" (:func:`mgm.masking.options.draw_shapes`): ``make_masks(generator=g)`` draws
them, ``make_masks(draws=d)`` takes them, so a training step can draw the randomness of a
whole global batch and give every process its rows.

    masks = make_masks("mgm", (8, 14, 14), 0.75, magnitude=mag, magnitude_valid=valid, generator=g)
    mask = make_mask("mgm", (8, 14, 14), 0.75, motion=clip.motion, motion_valid=clip.motion_valid, seed=0)
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from mgm.masking.guidance import motion_to_patch_magnitude
from mgm.masking.options import FALLBACK, GUIDED, check_options, draw_shapes, masked_per_index
from mgm.masking.rect import rect_masks


@dataclass
class MaskInfo:
    """What masks were made from; tensors with a leading batch axis (``make_mask``: numpy
    arrays without it, and ``fallback`` the fallback strategy's name or None)."""

    strategy: str
    masked_per_index: int
    fallback: Any = None          # (B,) bool: the clip had no motion, FALLBACK[strategy] was used
    centres: Any = None           # (B, T', 2) rectangle centres (cx, cy) in patch units
    sizes: Any = None             # (B, T', 2) integer rectangle (w, h) before the count fix
    motion_found: Any = None      # (B, T') bool: the guidance had motion at this index
    steps: Any = None             # (B, T'-1, 2) jitter / scale steps applied to (w, h)
    draws: dict = field(default_factory=dict)


# ---------------------------------------------------------------- building blocks


def _symmetric(u: torch.Tensor, bound: float) -> torch.Tensor:
    """Uniform [0, 1) → uniform [-bound, bound)."""
    return (2.0 * u - 1.0) * bound


def _zero_sum_offsets(u: torch.Tensor, bound: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Steps s (B, S, K) uniform in [-bound, bound] with Σ_t s_t = 0 (Eq. 5, 7), and the
    cumulative offsets O (B, S+1, K) = [0, s_0, s_0 + s_1, ..., 0]. The last offset is exactly 0
    (the ramp takes off the total exactly), so the shape returns to the first one."""
    c = torch.cumsum(_symmetric(u, bound), 1)
    ramp = torch.arange(1, u.shape[1] + 1, device=u.device, dtype=u.dtype)[None, :, None] / u.shape[1]
    off = torch.cat([torch.zeros_like(c[:, :1]), c - ramp * c[:, -1:]], 1)
    return torch.diff(off, dim=1), off


def _start(grid, n: int, pos: torch.Tensor):
    """Random first centre (paper: x0, y0 ~ rand(0, W' − w0), here as a centre) with
    w0 = h0 = √n."""
    _, hp, wp = grid
    w0 = math.sqrt(n)
    cx = pos[:, 0] * max(wp - w0, 0.0) + min(w0, wp) / 2
    cy = pos[:, 1] * max(hp - w0, 0.0) + min(w0, hp) / 2
    return cx, cy, w0


def _smallest(keys: torch.Tensor, k: int) -> torch.Tensor:
    """Bool mask of the k smallest keys along the last axis (exactly k, ties by position)."""
    idx = keys.argsort(dim=-1, stable=True)[..., :k]
    return torch.zeros(keys.shape, dtype=torch.bool, device=keys.device).scatter_(-1, idx, True)


def _last_with(found: torch.Tensor) -> torch.Tensor:
    """(B, T) index of the last t' <= t where found, -1 where none yet."""
    t = torch.arange(found.shape[1], device=found.device)
    return torch.where(found, t, -1).cummax(1).values


# ---------------------------------------------------------------- the strategies


def _smm_track(grid, n, d, opts):
    """Simulated motion (Eq. 5): random start, random velocity per index (the rectangle stays
    in the frame), zero-sum scale steps. Returns centres (B, T) cx, cy, aspect w/h, steps."""
    t, hp, wp = grid
    cx, cy, w0 = _start(grid, n, d["pos"])
    ex, ey = min(w0, wp) / 2, min(w0, hp) / 2
    v = _symmetric(d["vel"], opts["velocity"])
    cxs, cys = [cx], [cy]
    for i in range(t - 1):
        cxs.append((cxs[-1] + v[:, i, 0]).clamp(ex, wp - ex))
        cys.append((cys[-1] + v[:, i, 1]).clamp(ey, hp - ey))
    cx, cy = torch.stack(cxs, 1), torch.stack(cys, 1)
    if opts["jitter"] and t > 1:
        # Eq. 5 grows w and h together, but at a fixed count per index a uniform scale cannot
        # change the rectangle: the zero-sum step s_t is applied as w + s_t, h - s_t.
        s, off = _zero_sum_offsets(d["scale"][..., None], opts["scale_step"])
        steps = torch.cat([s, -s], -1)
        aspect = (w0 + off[..., 0]).clamp(min=0.5) / (w0 - off[..., 0]).clamp(min=0.5)
    else:
        steps = torch.zeros(cx.shape[0], max(t - 1, 0), 2, dtype=cx.dtype, device=cx.device)
        aspect = torch.ones_like(cx)
    return cx, cy, aspect, steps


def _motion_centres(grid, mag, valid, opts):
    """Pool_topK of Eq. 7 per index: the mean position of the K strongest valid patches that
    moved (top-1: the argmax, first in raster order on ties), and whether the index moved."""
    _, hp, wp = grid
    b, t = mag.shape[:2]
    m = torch.where(valid, mag.double(), -1.0).reshape(b, t, hp * wp)
    moving = m >= opts["min_motion"]
    order = (-m).argsort(dim=-1, stable=True)[..., : opts["topk"]]         # (B, T, K)
    weight = moving.gather(-1, order).double()
    count = weight.sum(-1).clamp(min=1.0)
    cx = ((order % wp).double() + 0.5) * weight
    cy = (torch.div(order, wp, rounding_mode="floor").double() + 0.5) * weight
    return cx.sum(-1) / count, cy.sum(-1) / count, moving.any(-1)


def _mgm_track(grid, n, d, mag, valid, opts):
    """Motion-guided (Eq. 7): the centre of each index is the motion centre of the last index
    up to it that had motion (index 0 is never guided with init="random", as in the paper:
    it starts at a random position); w and h get independent zero-sum jitter."""
    t = grid[0]
    mcx, mcy, found = _motion_centres(grid, mag, valid, opts)
    cx, cy, w0 = _start(grid, n, d["pos"])
    guided = found.clone()
    if opts["init"] == "random":
        guided[:, 0] = False
    last = _last_with(guided)
    li = last.clamp(min=0)
    cxs = torch.where(last >= 0, mcx.gather(1, li), cx[:, None])
    cys = torch.where(last >= 0, mcy.gather(1, li), cy[:, None])
    if opts["jitter"] and t > 1:
        steps, off = _zero_sum_offsets(d["jit"], opts["scale_step"])
        wh = (w0 + off).clamp(min=0.5)
        aspect = wh[..., 0] / wh[..., 1]
    else:
        steps = torch.zeros(cxs.shape[0], max(t - 1, 0), 2, dtype=cxs.dtype, device=cxs.device)
        aspect = torch.ones_like(cxs)
    return cxs, cys, aspect, steps, found


def _sparse_shift(grid, n, d, opts):
    """smm-sparse: a random set of n patches translated (with wrap-around) by a random walk."""
    t, hp, wp = grid
    base = _smallest(d["perm"], n)                                     # (B, Hp·Wp)
    walk = torch.cumsum(_symmetric(d["vel"], opts["velocity"]), 1)
    shift = torch.floor(torch.cat([walk.new_zeros(walk.shape[0], 1, 2), walk], 1) + 0.5).long()
    dev = base.device
    xs = torch.arange(wp, device=dev).view(1, 1, 1, wp)
    ys = torch.arange(hp, device=dev).view(1, 1, hp, 1)
    src = ((ys - shift[..., 1, None, None]) % hp) * wp + (xs - shift[..., 0, None, None]) % wp
    return base.gather(1, src.reshape(base.shape[0], t * hp * wp)).reshape(-1, t, hp, wp)


def _sparse_guided(grid, n, d, mag, valid, opts):
    """mgm-sparse: per index the n patches of highest motion (ties in a per-clip random order);
    an index without motion reuses the last index that had motion (none yet: random order)."""
    t, hp, wp = grid
    b = mag.shape[0]
    m = torch.where(valid, mag.double(), 0.0).reshape(b, t, hp * wp)
    found = (valid.reshape(b, t, -1) & (m >= opts["min_motion"])).any(-1)
    last = _last_with(found)
    m = m.gather(1, last.clamp(min=0)[..., None].expand(-1, -1, hp * wp)) * (last >= 0)[..., None]
    shuffle = d["perm"].argsort(-1)[:, None, :].expand(-1, t, -1)       # random order, then
    by_motion = (-m.gather(-1, shuffle)).argsort(dim=-1, stable=True)[..., :n]  # stable by motion
    keep = shuffle.gather(-1, by_motion)
    mask = torch.zeros(b, t, hp * wp, dtype=torch.bool, device=m.device).scatter_(-1, keep, True)
    return mask.reshape(b, t, hp, wp), found


def build_masks(strategy: str, grid, n: int, d: dict, mag, valid, opts) -> tuple[torch.Tensor, MaskInfo]:
    """Masks (B, T', Hp, Wp) and their MaskInfo from draws ``d`` (dict of (B, ...) float64)."""
    t, hp, wp = grid
    b = next(iter(d.values())).shape[0]
    info = MaskInfo(strategy=strategy, masked_per_index=n, draws=d)
    if strategy == "random":
        return _smallest(d["perm"], t * n).reshape(b, t, hp, wp), info
    if strategy == "tube":
        return _smallest(d["perm"], n).reshape(b, 1, hp, wp).expand(b, t, hp, wp).contiguous(), info
    if strategy == "smm-sparse":
        return _sparse_shift(grid, n, d, opts), info
    if strategy == "mgm-sparse":
        mask, found = _sparse_guided(grid, n, d, mag, valid, opts)
        info.motion_found, info.fallback = found, ~found.any(-1)
        mask = torch.where(info.fallback[:, None, None, None], _sparse_shift(grid, n, d, opts), mask)
        return mask, info
    if strategy == "block":
        cx, cy, _ = _start(grid, n, d["pos"])
        cx, cy = cx[:, None].expand(b, t), cy[:, None].expand(b, t)
        aspect = torch.ones_like(cx)
    elif strategy == "smm":
        cx, cy, aspect, info.steps = _smm_track(grid, n, d, opts)
    else:  # mgm; both tracks are computed (a branch on the data would synchronise the device)
        cx, cy, aspect, steps, found = _mgm_track(grid, n, d, mag, valid, opts)
        scx, scy, saspect, ssteps = _smm_track(grid, n, d, opts)
        info.motion_found, info.fallback = found, ~found.any(-1)
        fb = info.fallback[:, None]
        cx, cy, aspect = torch.where(fb, scx, cx), torch.where(fb, scy, cy), torch.where(fb, saspect, aspect)
        info.steps = torch.where(fb[..., None], ssteps, steps)
    mask, info.centres, info.sizes = rect_masks(n, hp, wp, cx, cy, aspect)
    return mask, info


# ---------------------------------------------------------------- public API


def sample_draws(strategy: str, grid, batch: int, generator: torch.Generator | None = None,
                 device=None) -> dict:
    """Uniform [0, 1) float64 draws for ``batch`` masks: name → (batch, *shape) tensor, drawn
    from ``generator`` (on its device) in :func:`draw_shapes` order."""
    if device is None:
        device = generator.device if generator is not None else "cpu"
    return {k: torch.rand((int(batch),) + s, generator=generator, dtype=torch.float64, device=device)
            for k, s in draw_shapes(strategy, grid).items()}


def make_masks(strategy: str, grid, ratio: float = 0.75, *, batch_size: int | None = None,
               magnitude=None, magnitude_valid=None, generator: torch.Generator | None = None,
               draws: dict | None = None, device=None, return_info: bool = False, **options):
    """(B, T', Hp, Wp) bool masks, True = masked.

    grid:       (T', Hp, Wp) token grid, e.g. (8, 14, 14) for 16×224² with 2×16×16 tubelets.
    magnitude, magnitude_valid: (B, T', Hp, Wp) patch-grid motion magnitude (px) and validity
                (:func:`motion_to_patch_magnitude`); needed by mgm / mgm-sparse, ignored by
                the others. Missing validity: every finite magnitude is valid.
    generator:  torch.Generator the draws come from; or ``draws`` (dict name → (B, *shape)).
    device:     where to compute (default: the magnitude's, else the draws' or generator's).
    options:    topk, jitter, init, velocity, scale_step, min_motion (``DEFAULT_OPTIONS``).
    return_info: also return a :class:`MaskInfo`; ``info.fallback`` (B,) is True where a
                guided strategy found no motion in the clip and used FALLBACK[strategy].
    """
    opts = check_options(strategy, grid, ratio, options)
    grid = tuple(int(g) for g in grid)
    mag = valid = None
    if strategy in GUIDED and magnitude is None:
        raise ValueError(f"strategy {strategy!r} needs magnitude= (B, T', Hp, Wp)")
    if magnitude is not None:
        mag = torch.as_tensor(magnitude)
        if mag.dim() != 4 or tuple(mag.shape[1:]) != grid:
            raise ValueError(f"magnitude must be (B, {grid[0]}, {grid[1]}, {grid[2]}), got {tuple(mag.shape)}")
        device = device or mag.device
        batch_size = mag.shape[0] if batch_size is None else batch_size
    if draws is None:
        if batch_size is None:
            raise ValueError("give batch_size, magnitude or draws")
        draws = sample_draws(strategy, grid, batch_size, generator)
    device = torch.device(device or next(iter(draws.values())).device)
    d = {}
    for k, s in draw_shapes(strategy, grid).items():
        if k not in draws:
            raise ValueError(f"draws lack {k!r}")
        d[k] = torch.as_tensor(draws[k], dtype=torch.float64).to(device)
        if tuple(d[k].shape[1:]) != s or d[k].shape[0] != next(iter(d.values())).shape[0]:
            raise ValueError(f"draw {k!r} has shape {tuple(d[k].shape)}, expected (B,)+{s}")
    b = next(iter(d.values())).shape[0]
    if batch_size is not None and b != batch_size:
        raise ValueError(f"draws are for {b} clips, batch_size is {batch_size}")
    if strategy not in GUIDED:
        mag = None
    if mag is not None:
        mag = mag.to(device=device, dtype=torch.float32)
        valid = torch.isfinite(mag)
        if magnitude_valid is not None:
            valid &= torch.as_tensor(magnitude_valid, device=device).bool()
    mask, info = build_masks(strategy, grid, masked_per_index(ratio, grid), d, mag, valid, opts)
    return (mask, info) if return_info else mask


def make_mask(strategy: str, grid=(8, 14, 14), ratio: float = 0.75, motion=None, motion_valid=None,
              tubelet: int = 2, seed: int | np.random.Generator | None = None, *, magnitude=None,
              magnitude_valid=None, draws: dict | None = None, return_info: bool = False, **options):
    """One clip's mask as a numpy bool array (T', Hp, Wp): :func:`make_masks` on a batch of one.

    motion, motion_valid: the clip's motion grid (T, Hm, Wm, 2) px and validity (T, Hm, Wm), as
               ``read_clip`` gives them (reduced by :func:`motion_to_patch_magnitude`); or give
               ``magnitude`` and ``magnitude_valid`` (T', Hp, Wp) directly.
    seed:      int, or a numpy Generator one integer is drawn from (None: unseeded); or ``draws``
               (dict name → array of :func:`draw_shapes`).
    return_info: also return a :class:`MaskInfo` of numpy arrays; ``info.fallback`` is the
               fallback strategy's name when a guided strategy found no motion, else None.
    """
    grid = tuple(int(g) for g in grid)
    if strategy in GUIDED and magnitude is None and motion is not None:
        magnitude, magnitude_valid = motion_to_patch_magnitude(motion, motion_valid, grid, tubelet)
    if magnitude is not None:
        magnitude = torch.as_tensor(np.asarray(magnitude, np.float32))[None]
        if magnitude_valid is not None:
            magnitude_valid = torch.as_tensor(np.asarray(magnitude_valid, bool))[None]
    generator = None
    if draws is not None:
        draws = {k: torch.as_tensor(np.asarray(v, np.float64))[None] for k, v in draws.items()}
    else:
        if isinstance(seed, np.random.Generator):
            seed = int(seed.integers(2**63 - 1))
        generator = torch.Generator()
        if seed is None:
            generator.seed()
        else:
            generator.manual_seed(int(seed))
    mask, info = make_masks(strategy, grid, ratio, batch_size=1, magnitude=magnitude,
                            magnitude_valid=magnitude_valid, generator=generator, draws=draws,
                            device="cpu", return_info=True, **options)
    if not return_info:
        return mask[0].numpy()
    for k in ("centres", "sizes", "motion_found", "steps"):
        v = getattr(info, k)
        if v is not None:
            setattr(info, k, v[0].numpy())
    info.draws = {k: v[0].numpy() for k, v in info.draws.items()}
    if info.fallback is not None:
        info.fallback = FALLBACK[strategy] if bool(info.fallback[0]) else None
    return mask[0].numpy(), info
