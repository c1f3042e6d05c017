"""What each mask strategy is and takes: names, options with their defaults and checks, the
uniform draws it consumes, and the masked count per temporal index.

Shared by the per-clip numpy path and the batched torch path (``mgm.masking.strategies``,
``mgm.masking.batched``); no array code here.
"""
from __future__ import annotations

import functools
from typing import Any


STRATEGIES = ("random", "tube", "block", "smm", "smm-sparse", "mgm", "mgm-sparse")
GUIDED = ("mgm", "mgm-sparse")
FALLBACK = {"mgm": "smm", "mgm-sparse": "smm-sparse"}

# Options (named after the paper where it names them) and their defaults.
DEFAULT_OPTIONS: dict[str, Any] = {
    "topk": 1,           # MGM centre: mean position of the K strongest-motion patches (paper: 1)
    "jitter": True,      # SMM scale steps / MGM width-height jitter with zero sum (Table 4c)
    "init": "random",    # MGM first index: "random" position (paper) or centred on "motion"
    "velocity": 1.0,     # SMM: max |vx|, |vy| in patches per temporal index (uniform)
    "scale_step": 1.0,   # SMM scale / MGM jitter: max step of w (h) in patches per index
    "min_motion": 0.5,   # MGM: an index has motion if some valid patch moved >= this (px)
}


def mask_options(mask_cfg) -> dict:
    """The make_mask / make_masks_torch options of a ``MaskConfig`` (fields that exist)."""
    return {k: getattr(mask_cfg, k) for k in DEFAULT_OPTIONS if hasattr(mask_cfg, k)}


def draw_shapes(strategy: str, grid) -> dict[str, tuple[int, ...]]:
    """Per-mask shapes of the uniform draws a strategy consumes, in draw order."""
    return dict(_draw_shapes(strategy, tuple(int(g) for g in grid)))


@functools.lru_cache(maxsize=256)
def _draw_shapes(strategy: str, grid) -> dict[str, tuple[int, ...]]:
    t, h, w = grid
    steps = max(t - 1, 0)
    smm = {"pos": (2,), "vel": (steps, 2), "scale": (steps,)}
    return {
        "random": {"perm": (t * h * w,)},
        "tube": {"perm": (h * w,)},
        "block": {"pos": (2,)},
        "smm": smm,
        "smm-sparse": {"perm": (h * w,), "vel": (steps, 2)},
        "mgm": {**smm, "jit": (steps, 2)},
        "mgm-sparse": {"perm": (h * w,), "vel": (steps, 2)},
    }[strategy]


def masked_per_index(ratio: float, grid) -> int:
    """n = round(ratio · Hp · Wp): masked patches per temporal index."""
    _, h, w = grid
    return int(round(float(ratio) * h * w))


def check_args(strategy: str, grid, ratio: float, options: dict) -> dict:
    """Validated options with defaults filled in (cached: called for every mask)."""
    try:
        key = (strategy, tuple(grid), float(ratio), tuple(sorted(options.items())))
        hash(key)
    except TypeError:
        return _check_args(strategy, grid, ratio, options)
    opts = _CHECKED.get(key)
    if opts is None:
        opts = _check_args(strategy, grid, ratio, options)
        if len(_CHECKED) < 4096:
            _CHECKED[key] = opts
    return dict(opts)


_CHECKED: dict = {}


def _check_args(strategy: str, grid, ratio: float, options: dict) -> dict:
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown mask strategy {strategy!r}; choose from {', '.join(STRATEGIES)}")
    if len(tuple(grid)) != 3 or min(int(g) for g in grid) < 1:
        raise ValueError(f"grid must be (T', Hp, Wp) of positive ints, got {grid!r}")
    if not 0 < float(ratio) < 1:
        raise ValueError(f"mask ratio must be in (0, 1), got {ratio}")
    n = masked_per_index(ratio, grid)
    if not 1 <= n <= grid[1] * grid[2]:
        raise ValueError(f"ratio {ratio} masks {n} of {grid[1] * grid[2]} patches per index")
    unknown = set(options) - set(DEFAULT_OPTIONS)
    if unknown:
        raise TypeError(f"unknown mask option(s) {sorted(unknown)}; known: {', '.join(DEFAULT_OPTIONS)}")
    opts = {**DEFAULT_OPTIONS, **options}
    if opts["init"] not in ("random", "motion"):
        raise ValueError(f"init must be 'random' or 'motion', got {opts['init']!r}")
    if int(opts["topk"]) < 1:
        raise ValueError(f"topk must be >= 1, got {opts['topk']}")
    opts["topk"] = int(opts["topk"])
    opts["jitter"] = bool(opts["jitter"])
    for k in ("velocity", "scale_step", "min_motion"):
        opts[k] = float(opts[k])
        if opts[k] < 0:
            raise ValueError(f"{k} must be >= 0, got {opts[k]}")
    return opts
