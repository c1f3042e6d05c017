"""One typed configuration tree for every run, loaded from YAML presets plus
``key=value`` overrides.

    cfg = load_config("tiny", ["mask.strategy=tube", "optim.epochs=3"])

A preset is a name (a YAML file in ``mgm/configs/``) or a path to a YAML file. A YAML
file may start from another preset with ``base: NAME`` and then override keys; keys
that are not fields of the tree are an error (a typo must not be silently ignored). The
checks of values (choices, shapes, options a strategy or task would ignore) are in
``mgm.config_checks``; a run makes them before it reads any data.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mgm.errors import UserError, parse_problem

PRESET_DIR = Path(__file__).parent / "configs"


class ConfigError(UserError, ValueError):
    pass


@dataclass
class ModelConfig:
    arch: str = "vit_tiny"            # vit_tiny | vit_small | vit_base | vit_large | vit_huge
    depth: int | None = None          # encoder blocks (None: the arch's, 12 for vit_tiny..base)
    num_frames: int = 16
    img_size: int = 224
    tubelet: int = 2
    patch: int = 16
    decoder_depth: int = 4
    decoder_dim: int | None = None    # None: VideoMAE's default for the arch
    norm_pix_loss: bool = True
    attention: str = "joint"          # joint | divided (TimeSformer, paper Table 4a)
    drop_path: float = 0.0
    pool: str = "mean"                # classifier features: mean of all tokens (VideoMAE) | time
                                      # (spatial mean per temporal index, concatenated)
    grad_checkpointing: bool = False
    init: str | None = None           # checkpoint to start from (fine-tune / linear probe)


@dataclass
class MaskConfig:
    strategy: str = "mgm"             # random | tube | block | smm | smm-sparse | mgm | mgm-sparse
    ratio: float = 0.75
    topk: int = 1
    jitter: bool = True               # aspect-ratio jitter (paper Table 4c)
    init: str = "random"              # first rectangle: random (paper) | motion
    velocity: float = 1.0             # SMM: max speed, patches per temporal index
    scale_step: float = 1.0           # SMM scale / MGM jitter: max step, patches per index
    min_motion: float = 0.5           # MGM: px of motion at a patch that count as motion


@dataclass
class DataConfig:
    train: str = ""                   # list file, SSv2 JSON, class-folder tree or video folder
    val: str = ""
    test: str = ""
    root: str = ""                    # prefix for relative paths in lists
    format: str = "auto"              # auto | list | ssv2 | folders | unlabeled
    splits: str = ""                  # folder of official UCF101/HMDB51 split files (format folders)
    split_id: int = 1                 # which official split (paper: 1)
    num_classes: int = 0              # 0: inferred from the annotations
    num_frames: int = 16
    stride: int = 4                   # 4 for K400, 2 for SSv2 (paper Sec. 4.2)
    sampling: str = "dense"           # dense | segment (TSN, SSv2 fine-tuning)
    size: int = 224
    flip: bool = True                 # off for SSv2: its labels depend on direction
    scales: list[float] = field(default_factory=lambda: [1.0, 0.875, 0.75, 0.66])
    motion: str = "auto"              # auto | codec | flow | none
    motion_cell: int = 16             # px per motion-vector cell (16: the macroblock)
    test_clips: int = 5               # temporal views at test time
    test_crops: int = 3               # spatial views at test time
    class_map: str = ""               # multi-view test on another dataset: its classes -> the model's
                                      # (a YAML/CSV file or a built-in name; mgm.data.class_map)
    num_workers: int = 4


@dataclass
class OptimConfig:
    epochs: int = 800
    warmup_epochs: float = 40
    batch_size: int = 32              # per process
    accum_steps: int = 1
    base_lr: float = 1.5e-4           # lr = base_lr * global_batch / 256 (paper Table 5)
    min_lr: float = 1e-6
    weight_decay: float = 0.05
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    layer_decay: float = 1.0          # < 1: layer-wise lr decay (fine-tuning)
    clip_grad: float | None = None
    name: str = "adamw"               # adamw | sgd (momentum 0.9; linear probe) | lars (MAE's linear probe)
    global_batch: int = 0             # > 0: the recipe's total batch; accum_steps is derived
                                      # as global_batch / (batch_size * world size)
    ema: float = 0.0                  # > 0: the run ends with the moving average of its weights,
                                      # with this decay per step (mgm.engine.ema)


@dataclass
class FinetuneConfig:
    mixup: float = 0.8
    cutmix: float = 1.0
    mixup_prob: float = 1.0
    mixup_switch_prob: float = 0.5
    label_smoothing: float = 0.1
    repeated_aug: int = 1
    cache_features: bool = False      # linear probe: extract frozen features once


@dataclass
class RunConfig:
    out_dir: str = "runs/default"
    seed: int = 0
    device: str = "auto"              # auto | cpu | cuda
    precision: str = "auto"           # auto (bf16 on GPU, fp32 on CPU) | fp32 | bf16 | fp16
    compile: bool = False
    log_every: int = 10
    ckpt_every_steps: int = 0         # 0: only at epoch end
    ckpt_every_minutes: float = 0.0   # > 0: also a checkpoint when this much time has passed since
                                      # the last one (0: off; the cluster presets set 30)
    keep_last: int = 2
    resume: str = ""                  # "" | auto | PATH
    max_bad_steps: int = 20           # consecutive non-finite losses before stopping
    max_steps: int = 0                # > 0: stop after this many optimiser steps (smoke tests)
    eval_every: int = 1               # fine-tune/linprobe: validate every N epochs (0: never)
    threads: int = 0                  # > 0: torch.set_num_threads per process
    tensorboard: bool = True


TASKS = ("pretrain", "finetune", "linprobe", "eval")


@dataclass
class Config:
    task: str = "pretrain"            # pretrain | finetune | linprobe | eval
    model: ModelConfig = field(default_factory=ModelConfig)
    mask: MaskConfig = field(default_factory=MaskConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    run: RunConfig = field(default_factory=RunConfig)


# ---------------------------------------------------------------- loading


def list_presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def preset_description(name: str) -> str:
    """The first comment line of a preset file."""
    path = PRESET_DIR / f"{name}.yaml"
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            return line.lstrip("# ").strip()
    return ""


def load_config(preset: str | None = None, overrides: list[str] | None = None) -> Config:
    cfg = Config()
    if preset:
        _apply_dict(cfg, _read_preset(preset, seen=()), where=str(preset))
    for item in overrides or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        _set_path(cfg, key.strip(), yaml.safe_load(value) if value != "" else "", where="command line")
    return cfg


def config_to_dict(cfg: Config) -> dict:
    return dataclasses.asdict(cfg)


def config_from_dict(d: dict) -> Config:
    cfg = Config()
    _apply_dict(cfg, d, where="dict")
    return cfg


def save_config(cfg: Config, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))


def _read_preset(name: str, seen: tuple) -> dict:
    path = Path(name)
    if not (path.suffix in (".yaml", ".yml") and path.exists()):
        path = PRESET_DIR / f"{name}.yaml"
    if not path.exists():
        raise ConfigError(f"no preset or file named {name!r}; presets: {', '.join(list_presets())}")
    if path.resolve() in seen:
        raise ConfigError(f"preset {name!r} includes itself through 'base'")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({parse_problem(e)})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    base = data.pop("base", None)
    if base is None:
        return data
    merged = _read_preset(base, seen + (path.resolve(),))
    return _deep_merge(merged, data)


def _deep_merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _apply_dict(obj, data: dict, where: str, prefix: str = "") -> None:
    for key, value in data.items():
        full = f"{prefix}{key}"
        if isinstance(value, dict):
            sub = getattr(obj, key, None)
            if not dataclasses.is_dataclass(sub):
                raise ConfigError(f"{where}: unknown config section {full!r}")
            _apply_dict(sub, value, where, prefix=full + ".")
        else:
            _set_path(obj, key, value, where, prefix)


def _set_path(obj, dotted: str, value: Any, where: str, prefix: str = "") -> None:
    *parents, leaf = dotted.split(".")
    for p in parents:
        obj = getattr(obj, p, None)
        if not dataclasses.is_dataclass(obj):
            raise ConfigError(f"{where}: unknown config section {prefix + p!r}")
        prefix += p + "."
    fields = {f.name: f for f in dataclasses.fields(obj)}
    if leaf not in fields:
        raise ConfigError(f"{where}: unknown config key {prefix + leaf!r}; known: {', '.join(fields)}")
    hint = typing.get_type_hints(type(obj))[leaf]
    setattr(obj, leaf, _coerce(value, hint, f"{prefix}{leaf}", where))


def _coerce(value: Any, hint, key: str, where: str):
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, key, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{where}: bad value for {key}")
    if origin is list:
        if isinstance(value, (int, float, str)):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: {key} expects a list, got {value!r}")
        return [_coerce(v, args[0], key, where) for v in value] if args else list(value)
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: {key} expects true/false, got {value!r}")
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: {key} expects an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, str):       # YAML 1.1 reads 1e-3 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: {key} expects a number, got {value!r}")
        return float(value)
    if hint is str:
        if value is None:
            return ""
        return str(value)
    return value


# ---------------------------------------------------------------- derived values


def accum_steps_for(cfg: Config, world_size: int) -> int:
    """Micro-batches per optimiser step: optim.global_batch fixes the recipe's total batch
    whatever the number of processes; otherwise optim.accum_steps."""
    o = cfg.optim
    if o.global_batch <= 0:
        return o.accum_steps
    per_step = o.batch_size * world_size
    if o.global_batch % per_step:
        raise ConfigError(
            f"optim.global_batch={o.global_batch} is not a multiple of optim.batch_size "
            f"({o.batch_size}) x processes ({world_size}); change optim.batch_size, or set "
            "optim.global_batch=0 to use optim.accum_steps")
    return o.global_batch // per_step
