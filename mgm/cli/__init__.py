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


def build_parser() -> argparse.ArgumentParser:
    from mgm import __version__

    parser = argparse.ArgumentParser(
        prog="mgm",
        description="Self-supervised video pretraining with motion-guided masking.",
    )
    parser.add_argument("--version", action="version", version=f"mgm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    _remember_parsers(parser)
    return parser


def _remember_parsers(parser: argparse.ArgumentParser) -> None:
    """Each (sub)command's parser stores itself in the parsed args, so that an unknown option is
    reported with that command's usage (``mgm data synth: ... --videos``), not the top level's."""
    parser.set_defaults(command_parser=parser)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _remember_parsers(child)


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
