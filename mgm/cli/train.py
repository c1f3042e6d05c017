"""`mgm pretrain|finetune|linprobe|eval --config CONFIG [key=value ...]` and `mgm configs`.

CONFIG is a preset name (`mgm configs` lists them) or a YAML path; `key=value` overrides any
field of the config tree (`optim.epochs=3 data.train=LIST data.root=DIR mask.ratio=0.9`).
Multi-process: `torchrun --nproc_per_node N -m mgm pretrain --config ...` (torch is imported
only when a command runs).
"""
from __future__ import annotations

import argparse
import os
import sys

TASK_HELP = {
    "pretrain": "masked-autoencoder pretraining with motion-guided (or other) masks",
    "finetune": "supervised fine-tuning (VideoMAE recipe) + multi-view test",
    "linprobe": "linear probe on frozen features (BatchNorm + linear)",
    "eval": "multi-view test of a fine-tuned checkpoint (model.init=...)",
}


def register(sub) -> None:
    for task, help_ in TASK_HELP.items():
        p = sub.add_parser(task, help=help_, description=f"{help_}. " + _USAGE)
        p.add_argument("--config", "-c", metavar="CONFIG",
                       help="preset name (see `mgm configs`) or YAML file (required)")
        p.add_argument("--resume", metavar="auto|PATH", default=None,
                       help="continue from the newest checkpoint in run.out_dir (auto) or PATH "
                            "(same as run.resume=...)")
        p.add_argument("--out", metavar="DIR", default=None, help="output directory (run.out_dir)")
        p.add_argument("--print-config", action="store_true",
                       help="print the resolved config and exit")
        # REMAINDER: options may also come after the overrides (argparse cannot interleave
        # a '*' positional with options); split_overrides sorts them out
        p.add_argument("overrides", nargs=argparse.REMAINDER, metavar="key=value")
        p.set_defaults(func=_runner(task))
    c = sub.add_parser("configs", help="list the config presets")
    c.add_argument("name", nargs="?", help="print this preset fully resolved")
    c.set_defaults(func=_configs)


_USAGE = ("Overrides: key=value for any config field, e.g. optim.epochs=3 data.train=LIST "
          "data.root=DIR model.init=CKPT. Several processes: torchrun --nproc_per_node N -m mgm ...")


_VALUE_OPTS = {"--config": "config", "-c": "config", "--resume": "resume", "--out": "out"}
_FLAGS = {"--print-config": "print_config"}


def split_overrides(args, value_opts: dict[str, str], flags: dict[str, str]) -> None:
    """Move the options found among ``args.overrides`` (an ``argparse.REMAINDER``) to ``args``:
    ``value_opts`` / ``flags`` map an option to its attribute. The rest must be key=value."""
    from mgm.errors import UserError

    rest, items, i = [], list(args.overrides), 0
    while i < len(items):
        tok = items[i]
        name, eq, val = tok.partition("=")
        if tok in flags:
            setattr(args, flags[tok], True)
        elif name in value_opts and tok.startswith("-"):
            if not eq:
                i += 1
                if i >= len(items):
                    raise UserError(f"{name} needs a value")
                val = items[i]
            setattr(args, value_opts[name], val)
        elif tok.startswith("-"):
            raise UserError(f"unknown option {tok}")
        elif not eq:
            raise UserError(f"{tok!r} is not an override of the form key=value")
        else:
            rest.append(tok)
        i += 1
    args.overrides = rest


def _load(args, task: str):
    from mgm.errors import UserError
    from mgm.config import ConfigError, load_config
    from mgm.config_checks import validate_config

    split_overrides(args, _VALUE_OPTS, _FLAGS)
    if not args.config:
        raise UserError("--config CONFIG is required (a preset name, see `mgm configs`, or a YAML file)")
    overrides = list(args.overrides)
    if args.resume is not None:
        overrides.append(f"run.resume={args.resume}")
    if args.out is not None:
        overrides.append(f"run.out_dir={args.out}")
    try:
        cfg = load_config(args.config, overrides)
        cfg.task = task
        validate_config(cfg)
    except ConfigError as e:
        raise UserError(str(e)) from None
    return cfg


def _runner(task: str):
    def run(args) -> int:
        from mgm.errors import UserError

        cfg = _load(args, task)
        if args.print_config:
            import yaml

            from mgm.config import config_to_dict

            print(yaml.safe_dump(config_to_dict(cfg), sort_keys=False), end="")
            return 0
        if task in ("pretrain", "finetune") and not cfg.data.train:
            raise UserError("no training data: set data.train=LIST_OR_DIR (and data.root=DIR for "
                            "relative paths); `mgm data synth DIR` makes a small demo set")
        from mgm.engine.preemption import EXIT_PREEMPTED, TrainingInterrupted
        from mgm.engine.trainer import TrainingStopped

        if task == "pretrain":
            from mgm.engine.pretrain import run_pretrain as fn
        elif task == "finetune":
            from mgm.engine.finetune import run_finetune as fn
        elif task == "linprobe":
            from mgm.engine.linprobe import run_linprobe as fn
        else:
            from mgm.engine.finetune import run_eval as fn
        try:
            result = fn(cfg)      # errors of the user's input (mgm.errors.UserError) reach main()
        except TrainingStopped as e:
            print(f"mgm {task}: stopped: {e}", file=sys.stderr)
            return 3
        except TrainingInterrupted as e:     # pre-emption: checkpoint written, resume later
            if _is_rank0():
                print(f"mgm {task}: interrupted by {e}", file=sys.stderr)
            return EXIT_PREEMPTED
        except FileNotFoundError as e:
            raise UserError(str(e)) from None
        if isinstance(result, dict) and "step" in result:
            t = result.get("timing", {})
            steps = t.get("steps", 0)
            tail = ""
            if steps:
                total = t["data"] + t["compute"]
                tail = (f"; {steps / total:.3g} steps/s, {t['clips'] / total:.3g} clips/s, "
                        f"data wait {100 * t['data'] / total:.0f}% of step time")
            if _is_rank0():
                print(f"done: step {result['step']}, epoch {result['epoch']}, "
                      f"{result['bad_steps']} skipped steps{tail}; output in {cfg.run.out_dir}")
        return 0

    return run


def _is_rank0() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def _configs(args) -> int:
    from mgm.errors import UserError
    from mgm.config import ConfigError, config_to_dict, list_presets, load_config, preset_description

    if args.name:
        import yaml

        try:
            cfg = load_config(args.name)
        except ConfigError as e:
            raise UserError(str(e)) from None
        print(yaml.safe_dump(config_to_dict(cfg), sort_keys=False), end="")
        return 0
    names = list_presets()
    width = max(len(n) for n in names) if names else 0
    for n in names:
        print(f"{n:<{width}}  {preset_description(n)}")
    return 0
