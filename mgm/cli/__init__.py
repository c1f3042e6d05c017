"""The `mgm` command.

Each subcommand lives in its own module under ``mgm.cli`` and exposes
``register(subparsers)``, which adds its parser and sets ``func`` to a callable
taking the parsed args and returning an exit code. Modules must keep their
top-level imports light (no torch / av at import time) so ``mgm --help`` is fast;
import heavy things inside the command function.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from mgm.errors import UserError

# Order here is the order in `mgm --help`.
COMMAND_MODULES = [
    "mgm.cli.motion",   # mgm motion VIDEO
    "mgm.cli.masks",    # mgm masks VIDEO
    "mgm.cli.data",     # mgm data check|transcode|synth|subset
    "mgm.cli.bench",    # mgm bench {motion,masks,loader,model}
    "mgm.cli.export",   # mgm export CHECKPOINT --to hf DIR
    "mgm.cli.train",    # mgm pretrain|finetune|linprobe|eval, mgm configs
    "mgm.cli.transfer", # mgm transfer (fine-tune / linear probe / domain adaptation table)
    "mgm.cli.demo",     # mgm demo, mgm ablate masks|ratio|motion, mgm saliency, mgm recon
]


class CommandParser(argparse.ArgumentParser):
    """An argument parser that stores itself in the parsed args as ``command_parser``.

    Subparsers are built with their parent's class, so every (sub)command's parser is one, and
    the deepest parser that ran sets the value last: an unknown option or a ``UserError`` is
    reported with that command's usage and name (``mgm data synth: error: ...``), not the top
    level's.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.set_defaults(command_parser=self)


def build_parser() -> argparse.ArgumentParser:
    from mgm import __version__

    parser = CommandParser(
        prog="mgm",
        description="Self-supervised video pretraining with motion-guided masking.",
    )
    parser.add_argument("--version", action="version", version=f"mgm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        args.command_parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except UserError as e:
        print(f"{args.command_parser.prog}: error: {e}", file=sys.stderr)   # e.g. "mgm data synth: error: ..."
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
