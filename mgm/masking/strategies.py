"""Mask strategies of the paper's Table 4(e), written once for numpy and torch.

A mask is a bool array (T', Hp, Wp), True = masked (hidden from the encoder). Every mask of
one (ratio, grid) hides exactly ``T' · n`` tokens with ``n = round(ratio · Hp · Wp)``, and
every strategy except ``random`` hides exactly ``n`` per temporal index.

Randomness is separated from construction: a mask is a pure function of the guidance and a
small set of uniform [0, 1) "draws" in float64 (:data:`DRAW_SHAPES`). ``make_mask(rng=...)``
draws them with numpy, ``make_masks_torch(generator=...)`` with torch; given the *same draws*
(``draws=``) the two give identical masks.

Strategy names, options, draw shapes and argument checks are ``mgm.masking.options``
(re-exported here).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .options import (
    DEFAULT_OPTIONS,
    FALLBACK,
    GUIDED,
    STRATEGIES,
    _draw_shapes,
    check_args,
    draw_shapes,
    mask_options,
    masked_per_index,
)
from .rect import rect_origin, rect_size, rect_table, render_rects, table_bytes

# the option names stay importable from here, where they were first defined
__all__ = ["STRATEGIES", "GUIDED", "FALLBACK", "DEFAULT_OPTIONS", "MaskInfo", "build_masks",
           "check_args", "draw_shapes", "make_mask", "mask_options", "masked_per_index",
           "sample_draws", "TABLE_MAX_BYTES", "Q"]


@dataclass
class MaskInfo:
    """What a mask was made from. Per clip: arrays without the batch axis, ``fallback`` a
    str or None. Batched (torch): tensors with a leading batch axis, ``fallback`` a bool
    tensor (B,) and ``fallback_strategy`` the strategy used where it is True."""

    strategy: str
    masked_per_index: int
    fallback: Any = None                 # "smm"/"smm-sparse" when the clip had no motion at all
    fallback_strategy: str | None = None
    centres: Any = None                  # (T', 2) rectangle centres (cx, cy) in patch units
    sizes: Any = None                    # (T', 2) integer rectangle (w, h) before count fix
    motion_found: Any = None             # (T',) bool: the guidance had motion at this index
    steps: Any = None                    # (T'-1, 2) jitter / scale steps actually applied
    draws: dict = field(default_factory=dict)


# --------------------------------------------------------------------------- core (batched)


Q = 256.0   # random steps are quantised to 1/256 patch: every sum of them is exact in float64


def _sym(xp, u, bound: float):
    """Uniform draws in [0, 1) → values in [-bound, bound], quantised to 1/Q."""
    return xp.floor((2.0 * u - 1.0) * (bound * Q) + 0.5) / Q


def _zero_sum_offsets(xp, u, bound: float):
    """Zero-sum steps s (B, S, K) from draws u (B, S, K) (uniform in [-bound, bound] minus
    their mean over S) and the offsets O (B, S+1, K) = [0, s0, s0+s1, ..., Σs]. Exact: the
    last offset is 0 (all sums are of 1/Q-quantised values, exact in float64)."""
    q = _sym(xp, u, bound)
    n = q.shape[1]
    total = xp.sum(q, 1)[:, None]                      # (B, 1, K), exact
    c = xp.cumsum(q, 1)                                # exact
    t = (xp.arange(n) + 1.0)[:, None]
    offsets = (float(n) * c - t * total) / float(n)    # (n·C_t − t·Σq)/n: one rounding
    s = q - total / float(n)                           # the steps, for reporting
    return s, xp.concat([0.0 * total, offsets], 1)


def _start(xp, grid, n, draws):
    """Random start (paper: x0, y0 ~ rand(0, W' − w0)) as a centre, with w0 = h0 = √n."""
    _, hp, wp = grid
    w0 = float(np.sqrt(n))
    pos = draws["pos"]
    cx = pos[:, 0] * max(wp - w0, 0.0) + min(w0, wp) / 2
    cy = pos[:, 1] * max(hp - w0, 0.0) + min(w0, hp) / 2
    return cx, cy, w0


def _smm_track(xp, grid, n, draws, opts):
    """Centres (B,T) cx, cy and aspects (B,T) of the simulated-motion rectangle (Eq. 5)."""
    t, hp, wp = grid
    cx, cy, w0 = _start(xp, grid, n, draws)
    ex, ey = min(w0, wp) / 2, min(w0, hp) / 2
    v = _sym(xp, draws["vel"], opts["velocity"])
    cxs, cys = [cx], [cy]
    for i in range(t - 1):   # the state stays where the rectangle fits (no drift off-frame)
        cx = xp.clip(cx + v[:, i, 0], ex, wp - ex)
        cy = xp.clip(cy + v[:, i, 1], ey, hp - ey)
        cxs.append(cx)
        cys.append(cy)
    cx, cy = xp.stack(cxs, 1), xp.stack(cys, 1)
    if opts["jitter"] and t > 1:
        # Eq. 5 scales w and h together; at a fixed count per index a uniform scale cannot
        # change the rectangle, so the zero-sum scale step s_t is applied as w+S, h−S.
        s, off = _zero_sum_offsets(xp, draws["scale"][..., None], opts["scale_step"])
        steps = xp.concat([s, -s], -1)
        off = off[..., 0]
        aspect = xp.maximum(w0 + off, 0.5) / xp.maximum(w0 - off, 0.5)
    else:
        steps = xp.zeros((cx.shape[0], max(t - 1, 0), 2))
        aspect = 0.0 * cx + 1.0
    return cx, cy, aspect, steps


def _motion_centres(xp, grid, mag, valid, opts):
    """Per index: centre of the top-K motion patches and whether the index has motion."""
    _, hp, wp = grid
    b, t = mag.shape[:2]
    m = xp.to_f64(mag).reshape((b, t, hp * wp))
    v = valid.reshape((b, t, hp * wp))
    moving = v & (m >= opts["min_motion"])
    found = xp.any(moving, -1)
    if opts["topk"] == 1:   # argmax: first maximum in both backends, like the stable sort;
        # where found, the argmax patch is itself moving (its magnitude is the largest valid)
        of = xp.to_f64(xp.argmax(xp.where(v, m, -1.0)))
        return xp.remainder(of, float(wp)) + 0.5, xp.floor(of / float(wp)) + 0.5, found
    order = xp.argsort(xp.where(v, -m, float("inf")))[..., : opts["topk"]]
    wgt = xp.to_f64(xp.take(moving, order))                          # (B,T,K) 0/1
    of = xp.to_f64(order)
    ix = xp.remainder(of, float(wp)) + 0.5
    iy = xp.floor(of / float(wp)) + 0.5
    cnt = xp.maximum(xp.sum(wgt, -1), 1.0)
    # sums of multiples of 0.5: exact in any summation order
    return xp.sum(wgt * ix, -1) / cnt, xp.sum(wgt * iy, -1) / cnt, found


def _mgm_track(xp, grid, n, draws, mag, valid, opts):
    t, hp, wp = grid
    mcx, mcy, found = _motion_centres(xp, grid, mag, valid, opts)
    cx, cy, w0 = _start(xp, grid, n, draws)                          # random start (paper)
    if opts["init"] == "motion":
        found0 = found
    else:                                                            # index 0 never guided
        found0 = xp.where(xp.arange(t)[None, :] == 0.0, found & False, found)
    last = xp.last_true_index(found0)                                # no motion: keep centre
    has = last >= 0
    li = xp.maximum(last, 0)
    cxs = xp.where(has, xp.take(mcx, li), cx[:, None] + 0.0 * mcx)
    cys = xp.where(has, xp.take(mcy, li), cy[:, None] + 0.0 * mcy)
    if opts["jitter"] and t > 1:
        steps, off = _zero_sum_offsets(xp, draws["jit"], opts["scale_step"])
        off = xp.maximum(w0 + off, 0.5)
        aspect = off[..., 0] / off[..., 1]
    else:
        aspect = 0.0 * cxs + 1.0
        steps = xp.zeros((cxs.shape[0], max(t - 1, 0), 2))
    return cxs, cys, aspect, steps, found


TABLE_MAX_BYTES = 64 << 20
_DEVICE_TABLES: dict = {}


def _rect_masks(xp, grid, n, cx, cy, aspect):
    _, hp, wp = grid
    w, h = rect_size(xp, n, hp, wp, aspect)
    x0, y0 = rect_origin(xp, cx, cy, w, h, hp, wp)
    if table_bytes(n, hp, wp) <= TABLE_MAX_BYTES:
        # look the masks up in a table of every possible rectangle, rendered once by
        # render_rects: same masks as rendering them here, much cheaper for both backends
        offsets, table = rect_table(n, hp, wp)
        if xp.name != "numpy":
            key = (n, hp, wp, str(x0.device))
            if key not in _DEVICE_TABLES:
                t = xp.torch
                _DEVICE_TABLES[key] = (t.from_numpy(offsets).to(x0.device), t.from_numpy(table.copy()).to(x0.device))
            offsets, table = _DEVICE_TABLES[key]
        wi = xp.to_int(w)
        idx = offsets[wi] + xp.to_int(y0) * (wp + 1 - wi) + xp.to_int(x0)
        mask = table[idx]
    else:
        mask = render_rects(xp, n, hp, wp, x0, y0, w, h)
    return mask, xp.stack([x0 + w / 2, y0 + h / 2], -1), xp.stack([w, h], -1)


def _bits(n: int) -> int:
    return max(1, (n - 1).bit_length())


def _random_subset(xp, u, k):
    """The k patches with the smallest draws (ties, at 2^-40 or finer, by index)."""
    return xp.select_smallest(xp.float_key(u, _bits(u.shape[-1])), k)


def _sparse_shift(xp, grid, n, draws, opts):
    """smm-sparse: a random set of n patches translated (with wrap-around) by a random walk."""
    t, hp, wp = grid
    b = draws["perm"].shape[0]
    base = _random_subset(xp, draws["perm"], n)                        # (B, P)
    if t == 1:
        return base.reshape((b, 1, hp, wp))
    v = _sym(xp, draws["vel"], opts["velocity"])                      # (B, T-1, 2)
    d = xp.cumsum(v, 1)                                              # exact (dyadic)
    d = xp.floor(xp.stack([0.0 * d[:, 0]] + [d[:, i] for i in range(t - 1)], 1) + 0.5)
    dx = d[:, :, 0][..., None, None]
    dy = d[:, :, 1][..., None, None]
    xs = xp.arange(wp).reshape((1, 1, 1, wp))
    ys = xp.arange(hp).reshape((1, 1, hp, 1))
    src = xp.remainder(ys - dy, float(hp)) * wp + xp.remainder(xs - dx, float(wp))
    src = xp.to_int(src.reshape((b, t * hp * wp)))
    return xp.take(base, src).reshape((b, t, hp, wp))


def _sparse_guided(xp, grid, n, draws, mag, valid, opts):
    """mgm-sparse: per index the n patches of highest motion (ties: a per-clip random order);
    an index without motion reuses the last index that had motion (none yet: random order)."""
    t, hp, wp = grid
    b = mag.shape[0]
    m = xp.where(valid, xp.to_f64(mag), 0.0).reshape((b, t, hp * wp))
    moving = valid.reshape((b, t, hp * wp)) & (m >= opts["min_motion"])
    found = xp.any(moving, -1)
    last = xp.last_true_index(found)
    m = xp.take_rows(m, xp.maximum(last, 0)) * xp.to_f64(last >= 0)[..., None]
    # order by (−m, rank of the patch in the per-clip random order): one unique int64 key
    # (float32 bit patterns of m ≥ 0 sort like m), so any selection method gives the same set
    rank = xp.ranks(xp.argsort(draws["perm"]))[:, None, :]            # (B,1,P)
    key = ((1 << 31) - xp.f32_bits(m)) * (1 << _bits(hp * wp)) + rank
    return xp.select_smallest(key, n).reshape((b, t, hp, wp)), found


def build_masks(xp, strategy, grid, ratio, draws, magnitude=None, magnitude_valid=None, opts=None):
    """Masks (B, T', Hp, Wp) and a batched MaskInfo, from draws (dict of (B, ...) float64)."""
    grid = tuple(int(g) for g in grid)
    t, hp, wp = grid
    n = masked_per_index(ratio, grid)
    b = next(iter(draws.values())).shape[0]
    info = MaskInfo(strategy=strategy, masked_per_index=n, draws=draws)
    if strategy == "random":
        mask = _random_subset(xp, draws["perm"], t * n).reshape((b, t, hp, wp))
    elif strategy == "tube":
        base = _random_subset(xp, draws["perm"], n).reshape((b, 1, hp, wp))
        mask = (xp.zeros((b, t, 1, 1)) == 0) & base
    elif strategy == "block":
        cx, cy, _ = _start(xp, grid, n, draws)
        ones = xp.zeros((b, t)) + 1.0
        mask, info.centres, info.sizes = _rect_masks(xp, grid, n, ones * cx[:, None], ones * cy[:, None], ones)
    elif strategy == "smm":
        cx, cy, aspect, info.steps = _smm_track(xp, grid, n, draws, opts)
        mask, info.centres, info.sizes = _rect_masks(xp, grid, n, cx, cy, aspect)
    elif strategy == "smm-sparse":
        mask = _sparse_shift(xp, grid, n, draws, opts)
    elif strategy in GUIDED:
        if magnitude is None:
            raise ValueError(f"strategy {strategy!r} needs motion (motion= or magnitude=)")
        # numpy (per clip) skips the fallback when every clip has motion; torch always
        # computes both (a data-dependent branch would synchronise the device)
        if strategy == "mgm":
            cx, cy, aspect, steps, found = _mgm_track(xp, grid, n, draws, magnitude, magnitude_valid, opts)
            any_motion = xp.any(found, -1)
            if not (xp.name == "numpy" and bool(any_motion.all())):
                scx, scy, sasp, ssteps = _smm_track(xp, grid, n, draws, opts)
                sel = any_motion[:, None]
                cx, cy = xp.where(sel, cx, scx), xp.where(sel, cy, scy)
                aspect = xp.where(sel, aspect, sasp)
                steps = xp.where(sel[..., None], steps, ssteps)
            info.steps = steps
            mask, info.centres, info.sizes = _rect_masks(xp, grid, n, cx, cy, aspect)
        else:
            mask, found = _sparse_guided(xp, grid, n, draws, magnitude, magnitude_valid, opts)
            any_motion = xp.any(found, -1)
            if not (xp.name == "numpy" and bool(any_motion.all())):
                fb = _sparse_shift(xp, grid, n, draws, opts)
                mask = xp.where(any_motion[:, None, None, None], mask, fb)
        info.motion_found = found
        info.fallback = ~any_motion
        info.fallback_strategy = FALLBACK[strategy]
    else:  # pragma: no cover - check_args guards
        raise ValueError(strategy)
    return mask, info


# --------------------------------------------------------------------------- per clip (numpy)

_NP = None


def _np_xp():
    global _NP
    if _NP is None:
        from ._xp import NumpyXP

        _NP = NumpyXP()
    return _NP


def sample_draws(strategy: str, grid, rng: np.random.Generator | None = None, batch: int | None = None):
    """Uniform [0, 1) float64 draws for ``strategy``: dict name → (batch, *shape) (or
    (*shape) when batch is None), drawn from ``rng`` in :func:`draw_shapes` order."""
    rng = rng if rng is not None else np.random.default_rng()
    lead = () if batch is None else (int(batch),)
    return {k: rng.random(lead + s) for k, s in _draw_shapes(strategy, tuple(int(g) for g in grid)).items()}


def make_mask(strategy: str, grid=(8, 14, 14), ratio: float = 0.75, motion=None, motion_valid=None,
              tubelet: int = 2, rng: np.random.Generator | None = None, *, magnitude=None,
              magnitude_valid=None, draws: dict | None = None, return_info: bool = False, **options):
    """One mask, bool (T', Hp, Wp), True = masked. Pure: same inputs and draws → same mask.

    strategy:  one of STRATEGIES.
    grid:      (T', Hp, Wp) token grid, e.g. (8, 14, 14) for 16×224² with 2×16×16 tubelets.
    motion, motion_valid: the clip's motion grid (T, Hm, Wm, 2) and validity (T, Hm, Wm),
               reduced with :func:`motion_to_patch_magnitude`; or give ``magnitude`` and
               ``magnitude_valid`` (T', Hp, Wp) directly. Ignored by unguided strategies.
    rng:       numpy Generator the draws come from (default: a fresh unseeded one);
    draws:     or the draws themselves (dict name → array of :func:`draw_shapes`).
    options:   see DEFAULT_OPTIONS (topk, jitter, init, velocity, scale_step, min_motion).
    return_info: also return a :class:`MaskInfo`; ``info.fallback`` is "smm" /
               "smm-sparse" when a guided strategy found no motion anywhere in the clip
               (the mask is then that simulated-motion mask), else None.
    """
    opts = check_args(strategy, grid, ratio, options)
    grid = tuple(int(g) for g in grid)
    xp = _np_xp()
    if draws is None:
        draws = sample_draws(strategy, grid, rng)
    d = {}
    for k, s in _draw_shapes(strategy, grid).items():
        a = np.asarray(draws[k], dtype=np.float64)
        if a.shape != s:
            raise ValueError(f"draw {k!r} has shape {a.shape}, expected {s}")
        d[k] = a
    mag = val = None
    if strategy in GUIDED:
        if magnitude is None and motion is not None:
            from .guidance import motion_to_patch_magnitude

            magnitude, magnitude_valid = motion_to_patch_magnitude(motion, motion_valid, grid, tubelet)
        if magnitude is not None:
            mag = np.asarray(magnitude, dtype=np.float32)
            if mag.shape != grid:
                raise ValueError(f"magnitude shape {mag.shape} does not match grid {grid}")
            val = np.isfinite(mag)
            if magnitude_valid is not None:
                val &= np.asarray(magnitude_valid, dtype=bool)
    n = masked_per_index(ratio, grid)
    if (strategy in ("block", "smm") or (strategy == "mgm" and mag is not None and opts["topk"] == 1)) \
            and table_bytes(n, grid[1], grid[2]) <= TABLE_MAX_BYTES:
        from ._fast import rect_mask

        mask, centres, sizes, steps, found, fb = rect_mask(strategy, grid, n, d, mag, val, opts)
        if not return_info:
            return mask
        info = MaskInfo(strategy=strategy, masked_per_index=n, centres=centres, sizes=sizes,
                        steps=steps, motion_found=found, draws=d)
        if strategy == "mgm":
            info.fallback_strategy = FALLBACK[strategy]
            info.fallback = info.fallback_strategy if fb else None
        return mask, info
    bdraws = {k: v[None] for k, v in d.items()}
    if mag is not None:
        mag, val = mag[None], val[None]
    mask, info = build_masks(xp, strategy, grid, ratio, bdraws, mag, val, opts)
    mask = mask[0]
    if not return_info:
        return mask
    info.draws = d
    for k in ("centres", "sizes", "motion_found", "steps"):
        v = getattr(info, k)
        if v is not None:
            setattr(info, k, v[0])
    if info.fallback is not None:
        info.fallback = info.fallback_strategy if bool(info.fallback[0]) else None
    return mask, info
