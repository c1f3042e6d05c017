"""`mgm transfer`: the downstream protocols (fine-tune, linear probe, partial domain adaptation)
on the datasets given, for one pretrained checkpoint, into one markdown + CSV table
(mgm.experiments.transfer; docs/transfer.md)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

_VALUE_OPTS = {"--config": "config", "-c": "config", "--plan": "plan", "--protocol": "protocol",
               "--dataset": "dataset", "--data": "data", "--out": "out", "--label": "label",
               "--launcher": "launcher"}
_FLAGS = {"--force": "force", "--dry-run": "dry_run", "--print-plan": "print_plan"}

_DESCRIPTION = """\
Run downstream protocols through the engine's own fine-tune / linear-probe / eval and write
OUT/transfer.md + OUT/transfer.csv (one row per --label, one column per dataset, the commands that
made each cell). One cell: --config PRESET with data.train=... data.test=... (protocol from the
preset: da_* -> da, linprobe -> linprobe, else finetune). Many: --plan FILE (YAML: cells with
protocol, dataset, config, set) or --plan paper (Tables 2 and 3; lists under --data DIR, see
docs/transfer.md; --print-plan shows it). key=value overrides apply to every cell
(model.init=CKPT, run.resume=auto, ...). Rerunning skips cells finished with the same command.
Several GPUs: --launcher 'torchrun --standalone --nproc_per_node 8' runs each fine-tune / probe /
eval as its own torchrun job (mgm transfer itself stays one process)."""


def register(sub) -> None:
    p = sub.add_parser("transfer", help="fine-tune / linear probe / domain adaptation on several datasets, "
                                        "one table (paper Tables 2-3)", description=_DESCRIPTION)
    p.add_argument("--config", "-c", metavar="PRESET", help="one cell: a preset (finetune_*, linprobe, da_*) or YAML")
    p.add_argument("--plan", metavar="FILE|paper", help="several cells: a YAML plan or a built-in one")
    p.add_argument("--protocol", choices=["finetune", "linprobe", "da"], help="one cell: override the protocol")
    p.add_argument("--dataset", metavar="NAME", help="one cell: the column name (default: data.test's folder)")
    p.add_argument("--data", metavar="DIR", default="", help="fills {data} in a plan (the lists' folder)")
    p.add_argument("--out", metavar="DIR", default="runs/transfer", help="table and cell runs (default runs/transfer)")
    p.add_argument("--label", metavar="NAME", default="", help="row name (default: model.init's run folder)")
    p.add_argument("--launcher", metavar="CMD", default="",
                   help="run each engine run as CMD -m mgm ... (e.g. 'torchrun --standalone --nproc_per_node 8')")
    p.add_argument("--force", action="store_true", help="run cells again even if finished")
    p.add_argument("--dry-run", action="store_true", help="print each cell's commands, run nothing")
    p.add_argument("--print-plan", action="store_true", help="print the plan (YAML) and exit")
    # REMAINDER so that options may follow the overrides (as in mgm finetune)
    p.add_argument("overrides", nargs=argparse.REMAINDER, metavar="key=value")
    p.set_defaults(func=_transfer)


def _one_cell(args):
    from mgm.config import ConfigError, load_config
    from mgm.errors import UserError
    from mgm.experiments.transfer import Cell, infer_protocol

    try:
        cfg = load_config(args.config, args.overrides)
    except ConfigError as e:
        raise UserError(str(e)) from None
    test = cfg.data.test or ""
    name = args.dataset or (Path(test).parent.name or Path(test).stem if test else Path(args.config).stem)
    return "", [Cell(args.protocol or infer_protocol(args.config), name, args.config, [])]


def _transfer(args) -> int:
    from mgm.cli.train import split_overrides
    from mgm.errors import UserError

    split_overrides(args, _VALUE_OPTS, _FLAGS)
    if bool(args.config) == bool(args.plan):
        raise UserError("give either --config PRESET (one cell) or --plan FILE|paper (several cells)")
    if args.protocol not in (None, "finetune", "linprobe", "da"):     # given after the overrides
        raise UserError(f"--protocol {args.protocol!r} is not one of finetune, linprobe, da")
    from mgm.experiments.transfer import load_plan, plan_yaml, run_plan

    if args.print_plan:
        if not args.plan:
            raise UserError("--print-plan needs --plan")
        print(plan_yaml(args.plan), end="")
        return 0
    title, cells = load_plan(args.plan, args.data) if args.plan else _one_cell(args)
    from mgm.engine.preemption import EXIT_PREEMPTED, TrainingInterrupted
    from mgm.engine.trainer import TrainingStopped

    try:
        results = run_plan(cells, args.overrides, args.out, label=args.label, force=args.force,
                           dry_run=args.dry_run, title=title, launcher=args.launcher)
    except TrainingStopped as e:
        print(f"mgm transfer: stopped: {e}", file=sys.stderr)
        return 3
    except TrainingInterrupted as e:
        print(f"mgm transfer: interrupted by {e} (finished cells are kept; run the same command with "
              "run.resume=auto to continue this one)", file=sys.stderr)
        return EXIT_PREEMPTED
    except FileNotFoundError as e:
        raise UserError(str(e)) from None
    if not args.dry_run:
        for r in results:
            m = r["metrics"]
            extra = (f", restricted to the target's classes {m['top1_target_classes']:.2f}%"
                     if "top1_target_classes" in m else "")
            print(f"{r['label']} {r['protocol']}/{r['dataset']}: top-1 {m['top1']:.2f}%{extra}")
        print(f"table: {args.out}/transfer.md, {args.out}/transfer.csv")
    return 0
