"""What each mask strategy is and takes: names, options and their defaults, which options a
strategy reads, the uniform draws it consumes, and the masked count per temporal index.

No array code and no torch here: the CLI's argument parsers and the config checks import this
module without paying for torch.
"""
from __future__ import annotations

from typing import Any

STRATEGIES = ("random", "tube", "block", "smm", "smm-sparse", "mgm", "mgm-sparse")
# the mask ratios `mgm ablate ratio` sweeps by default (paper Fig. 4a)
RATIO_SWEEP = (0.5, 0.6, 0.75, 0.9, 0.95)
GUIDED = ("mgm", "mgm-sparse")                       # read the motion magnitude
FALLBACK = {"mgm": "smm", "mgm-sparse": "smm-sparse"}  # used where a clip has no motion at all

# Options (named after the paper where it names them) and their defaults.
DEFAULT_OPTIONS: dict[str, Any] = {
    "topk": 1,           # MGM centre: mean position of the K strongest-motion patches (paper: 1)
    "jitter": True,      # SMM scale steps / MGM width-height jitter with zero sum (Table 4c)
    "init": "random",    # MGM first index: "random" position (paper) or centred on "motion"
    "velocity": 1.0,     # SMM: max |vx|, |vy| in patches per temporal index (uniform)
    "scale_step": 1.0,   # SMM scale / MGM jitter: max step of w (h) in patches per index
    "min_motion": 0.5,   # MGM: an index has motion if some valid patch moved >= this (px)
}
INITS = ("random", "motion")

# The options each strategy reads (a guided strategy also reads its fallback's).
OPTIONS_USED: dict[str, tuple[str, ...]] = {
    "random": (),
    "tube": (),
    "block": (),
    "smm": ("velocity", "jitter", "scale_step"),
    "smm-sparse": ("velocity",),
    "mgm": ("topk", "jitter", "init", "scale_step", "min_motion", "velocity"),
    "mgm-sparse": ("min_motion", "velocity"),
}


def draw_shapes(strategy: str, grid) -> dict[str, tuple[int, ...]]:
    """Per-mask shapes of the uniform [0, 1) draws a strategy consumes, in draw order.

    A guided strategy draws its fallback's draws first, under the same names, so that where a
    clip has no motion its mask is exactly the fallback's mask for the same generator state.
    """
    t, h, w = (int(g) for g in grid)
    steps = max(t - 1, 0)
    smm = {"pos": (2,), "vel": (steps, 2), "scale": (steps,)}
    sparse = {"perm": (h * w,), "vel": (steps, 2)}
    return {
        "random": {"perm": (t * h * w,)},
        "tube": {"perm": (h * w,)},
        "block": {"pos": (2,)},
        "smm": smm,
        "smm-sparse": sparse,
        "mgm": {**smm, "jit": (steps, 2)},
        "mgm-sparse": sparse,
    }[strategy]


def masked_per_index(ratio: float, grid) -> int:
    """n = round(ratio · Hp · Wp): masked patches per temporal index."""
    _, h, w = grid
    return int(round(float(ratio) * h * w))


def check_options(strategy: str, grid, ratio: float, options: dict) -> dict:
    """The options with defaults filled in; ValueError / TypeError naming what is wrong."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown mask strategy {strategy!r}; choose from {', '.join(STRATEGIES)}")
    grid = tuple(grid)
    if len(grid) != 3 or min(int(g) for g in grid) < 1:
        raise ValueError(f"grid must be (T', Hp, Wp) of positive ints, got {grid!r}")
    if not 0 < float(ratio) < 1:
        raise ValueError(f"mask ratio must be in (0, 1), got {ratio}")
    n = masked_per_index(ratio, grid)
    if not 1 <= n < grid[1] * grid[2]:
        raise ValueError(f"ratio {ratio} masks {n} of {grid[1] * grid[2]} patches per index")
    unknown = set(options) - set(DEFAULT_OPTIONS)
    if unknown:
        raise TypeError(f"unknown mask option(s) {sorted(unknown)}; known: {', '.join(DEFAULT_OPTIONS)}")
    opts = {**DEFAULT_OPTIONS, **options}
    if opts["init"] not in INITS:
        raise ValueError(f"init must be one of {', '.join(INITS)}, got {opts['init']!r}")
    if int(opts["topk"]) < 1:
        raise ValueError(f"topk must be >= 1, got {opts['topk']}")
    opts["topk"] = int(opts["topk"])
    opts["jitter"] = bool(opts["jitter"])
    for k in ("velocity", "scale_step", "min_motion"):
        opts[k] = float(opts[k])
        if opts[k] < 0:
            raise ValueError(f"{k} must be >= 0, got {opts[k]}")
    return opts


def unused_options(strategy: str, options: dict) -> list[str]:
    """Options set to something other than their default that ``strategy`` never reads (a
    config that sets them is most likely a mistake)."""
    return [k for k, v in options.items()
            if k in DEFAULT_OPTIONS and v != DEFAULT_OPTIONS[k] and k not in OPTIONS_USED[strategy]]
