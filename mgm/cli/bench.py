"""`mgm bench ...`: speed measurements, reported as ratios measured side by side.

Each benchmark lives next to the code it measures, in a module exposing
``add_arguments(parser)`` and ``run(args) -> int``. Add new ones to BENCHMARKS.
"""
from __future__ import annotations

import importlib

# name -> (module, one-line help)
BENCHMARKS = {
    "motion": ("mgm.video.bench", "decode time: RGB only vs + codec motion vs + DIS flow (vs decord, torchcodec)"),
    "masks": ("mgm.masking.bench", "µs per mask per strategy, per clip and batched (vs decode time)"),
    "loader": ("mgm.data.bench", "clips/s through the DataLoader: tube vs MGM masks, interleaved"),
    "model": ("mgm.models.bench", "pretraining step time, memory, TFLOP/s, MFU, SDPA kernel; mask ratios side by side"),
}


def register(sub) -> None:
    p = sub.add_parser("bench", help="speed benchmarks (ratios measured side by side)")
    bsub = p.add_subparsers(dest="bench", metavar="BENCH")
    for name, (module, help_) in BENCHMARKS.items():
        bp = bsub.add_parser(name, help=help_)
        bp.set_defaults(func=_runner(module))
        # argument definitions are light: they live in a function of the module,
        # which must not import torch/av at module level.
        importlib.import_module(module).add_arguments(bp)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _runner(module: str):
    def run(args) -> int:
        return importlib.import_module(module).run(args)

    return run
