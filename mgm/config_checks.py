"""The checks a config passes before a run reads any data: names from fixed lists (with the
nearest one for a typo), shapes that fit together, option ranges, and options the run would
silently ignore (mask options the strategy never reads, fields the task never reads).

    validate_config(load_config("tiny_linprobe", ["finetune.mixup=0.8"]))
    # ConfigError: finetune.mixup=0.8 has no effect on linprobe (...); leave it at 0.0

The run functions (``mgm.engine``) call it with ``cfg.task`` set to the task they run.
"""
from __future__ import annotations

import dataclasses
import difflib

from mgm.config import TASKS, Config, ConfigError
from mgm.data.annotations import FORMATS
from mgm.data.class_map import ClassMapError, load_class_map
from mgm.data.options import MOTIONS, SAMPLINGS
from mgm.masking.options import INITS, OPTIONS_USED, STRATEGIES, check_options, unused_options
from mgm.models.options import ARCHS, ATTENTIONS, POOLS

OPTIMIZERS = ("adamw", "sgd", "lars")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DEVICES = ("auto", "cpu", "cuda", "cuda:N")

# every key whose value is a name from a fixed list, and the list (owned by the module that
# uses the names; all of them are torch-free). A typo here must fail before any data is read.
CHOICES = {
    "task": TASKS,
    "model.arch": tuple(ARCHS),
    "model.attention": ATTENTIONS,
    "model.pool": POOLS,
    "mask.strategy": STRATEGIES,
    "mask.init": INITS,
    "data.format": FORMATS,
    "data.sampling": SAMPLINGS,
    "data.motion": MOTIONS,
    "optim.name": OPTIMIZERS,
    "run.precision": PRECISIONS,
}


def check_choice(key: str, value, choices) -> None:
    """ConfigError naming the key, the value and the choices (and the nearest one) unless
    ``value`` is one of ``choices``."""
    if value in choices:
        return
    near = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
    hint = f" (did you mean {near[0]}?)" if near else ""
    raise ConfigError(f"{key}={value!r} is not one of {', '.join(map(str, choices))}{hint}")


def get_key(cfg: Config, dotted: str):
    obj = cfg
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def validate_config(cfg: Config) -> None:
    """Errors a run would otherwise hit late (or silently): raise ConfigError with the fix."""
    for key, choices in CHOICES.items():
        check_choice(key, get_key(cfg, key), choices)
    dev = cfg.run.device
    if not (dev in ("auto", "cpu", "cuda") or (dev.startswith("cuda:") and dev[5:].isdigit())):
        check_choice("run.device", dev, DEVICES)
    if cfg.model.num_frames != cfg.data.num_frames:
        raise ConfigError(
            f"model.num_frames={cfg.model.num_frames} but data.num_frames={cfg.data.num_frames}: "
            "set both to the same value")
    if cfg.model.img_size != cfg.data.size:
        raise ConfigError(f"model.img_size={cfg.model.img_size} but data.size={cfg.data.size}: "
                          "set both to the same value")
    if cfg.model.num_frames % cfg.model.tubelet or cfg.model.img_size % cfg.model.patch:
        raise ConfigError("model.num_frames must divide by model.tubelet and model.img_size by "
                          "model.patch")
    o = cfg.optim
    if o.batch_size < 1 or o.accum_steps < 1:
        raise ConfigError("optim.batch_size and optim.accum_steps must be >= 1")
    if len(o.betas) != 2:
        raise ConfigError(f"optim.betas needs two numbers, got {o.betas}")
    if not 0 < o.layer_decay <= 1:
        raise ConfigError(f"optim.layer_decay must be in (0, 1], got {o.layer_decay}")
    if o.warmup_epochs < 0 or o.epochs < 1:
        raise ConfigError("optim.epochs must be >= 1 and optim.warmup_epochs >= 0")
    if not 0 <= o.ema < 1:
        raise ConfigError(f"optim.ema must be in [0, 1) (0: off), got {o.ema}")
    _validate_mask(cfg)
    _validate_task_reads(cfg)
    _validate_class_map(cfg)
    if cfg.finetune.repeated_aug < 1:
        raise ConfigError("finetune.repeated_aug must be >= 1")
    r = cfg.run
    if r.ckpt_every_steps < 0 or r.ckpt_every_minutes < 0 or r.keep_last < 1:
        raise ConfigError("run.ckpt_every_steps and run.ckpt_every_minutes must be >= 0 (0: off) "
                          "and run.keep_last >= 1")


def _validate_mask(cfg: Config) -> None:
    """The mask options ``make_masks`` would reject, and options the strategy never reads (set
    to a non-default value they are a mistake: an ablation over them would measure nothing)."""
    m = cfg.mask
    options = {k: v for k, v in dataclasses.asdict(m).items() if k not in ("strategy", "ratio")}
    mc = cfg.model
    grid = (max(mc.num_frames // mc.tubelet, 1), max(mc.img_size // mc.patch, 1), max(mc.img_size // mc.patch, 1))
    try:
        check_options(m.strategy, grid, m.ratio, options)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"mask: {e}") from None
    unused = unused_options(m.strategy, options)
    if unused:
        raise ConfigError(f"{', '.join('mask.' + k for k in unused)} has no effect with mask.strategy="
                          f"{m.strategy} (it reads: {', '.join(OPTIONS_USED[m.strategy]) or 'no options'}); "
                          "leave it at its default")


def _validate_class_map(cfg: Config) -> None:
    """The map file must read; whether its classes fit the lists and the model is checked when
    the test set is built (it needs both)."""
    if not cfg.data.class_map:
        return
    try:
        load_class_map(cfg.data.class_map)
    except ClassMapError as e:
        raise ConfigError(f"data.class_map: {e}") from None


# Fields a task never reads, the value at which they do nothing, and why: any other value would
# be silently ignored by that task, so it is refused, as mask options the strategy never reads
# are. (Whole sections a task skips by name, e.g. ``mask`` when fine-tuning, are not listed.)
CLASS_MAP_ONLY_IN_TEST = ("", "it maps the classes of the multi-view test, which only finetune and eval run")
INERT = {
    "linprobe": {
        "data.class_map": CLASS_MAP_ONLY_IN_TEST,
        "finetune.mixup": (0.0, "a linear probe trains without mixup"),
        "finetune.cutmix": (0.0, "a linear probe trains without cutmix"),
        "finetune.repeated_aug": (1, "a linear probe reads each clip once per epoch"),
        "model.drop_path": (0.0, "the frozen encoder runs in eval mode"),
        "model.grad_checkpointing": (False, "no gradient flows through the frozen encoder"),
        "optim.layer_decay": (1.0, "the probe is one layer; there are no blocks to decay"),
    },
    "finetune": {
        "finetune.cache_features": (False, "fine-tuning trains the encoder, so its features change every step"),
    },
    "pretrain": {
        "data.class_map": CLASS_MAP_ONLY_IN_TEST,
        "data.val": ("", "pretraining runs no validation; mgm recon measures held-out reconstruction"),
        "data.test": ("", "pretraining runs no test"),
    },
}


def _validate_task_reads(cfg: Config) -> None:
    for key, (inert, why) in INERT.get(cfg.task, {}).items():
        value = get_key(cfg, key)
        if value != inert:
            raise ConfigError(f"{key}={value!r} has no effect on {cfg.task} ({why}); leave it at {inert!r}")
