"""What a run sets up before its loop: shared by pretraining, fine-tuning and linear probing.

    ctx = setup_run(cfg, "finetune")      # validate, process group, seed, precision, out_dir
    model = model_from_config(cfg, "classifier", num_classes)   # fresh, or from model.init
    train_model = wrap_model(ctx, model)  # DDP / torch.compile
    loader = make_loader(ctx, dataset, sampler, batch_size, drop_last)

``RunContext`` carries the config, the process group, the output directory, the autocast
dtype and the fp16 GradScaler. ``rng_state`` / ``set_rng_state`` capture every RNG for an exact resume
(``mgm.engine.trainer``).
"""
from __future__ import annotations

import functools
import random
import sys
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader

from mgm.config import Config, accum_steps_for, save_config
from mgm.config_checks import validate_config
from mgm.data.dataset import build_dataset
from mgm.engine import distributed as du
from mgm.engine.logging import RunLogger
from mgm.engine.preemption import stop_signal_gate, worker_stop_signals
from mgm.errors import UserError
from mgm.models.checkpoint import init_from, load_checkpoint
from mgm.models.spec import VideoMAESpec
from mgm.models.vit import build_model


class RunError(UserError, ValueError):
    """A run that cannot start as configured (missing checkpoint, no GPU, ...): a message for
    the user, not a traceback."""


@dataclass
class RunContext:
    cfg: Config
    dist: du.DistInfo
    out_dir: Path
    amp_dtype: torch.dtype | None
    scaler: torch.amp.GradScaler | None
    accum_steps: int
    logger: RunLogger | None = None
    meta: dict = field(default_factory=dict)

    @property
    def device(self) -> torch.device:
        return self.dist.device

    def autocast(self):
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict:
    """RNG states in plain types + tensors, so trainer.pt loads with ``weights_only=True``."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    st = {"python": random.getstate(),
          "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)),
          "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def set_rng_state(st: dict) -> None:
    random.setstate(st["python"])
    kind, keys, pos, has_gauss, gauss = st["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(st["torch"])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def _amp(cfg: Config, device: torch.device) -> tuple[torch.dtype | None, bool]:
    p = cfg.run.precision
    if p == "auto":
        p = "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else (
            "fp16" if device.type == "cuda" else "fp32")
    if p == "fp32":
        return None, False
    if p == "fp16" and device.type != "cuda":
        raise RunError("run.precision=fp16 needs a GPU; use fp32 (or bf16) on CPU")
    return (torch.bfloat16 if p == "bf16" else torch.float16), p == "fp16"


def setup_run(cfg: Config, task: str, config_name: str = "config.yaml") -> RunContext:
    """Set ``cfg.task`` to the task that runs (so the checks and the saved config say what the
    run is), validate, init the process group, seed, create the output directory, save the config."""
    cfg.task = task
    validate_config(cfg)
    if cfg.run.threads > 0:
        torch.set_num_threads(cfg.run.threads)
    try:
        dist = du.init_distributed(cfg.run.device)
    except ValueError as e:
        raise RunError(str(e)) from None
    accum = accum_steps_for(cfg, dist.world_size)
    seed_everything(cfg.run.seed + dist.rank)
    amp_dtype, fp16 = _amp(cfg, dist.device)
    scaler = torch.amp.GradScaler("cuda") if fp16 else None
    out = Path(cfg.run.out_dir)
    if dist.is_main:
        out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out / config_name)    # the resolved config of this run
    du.barrier()
    return RunContext(cfg, dist, out, amp_dtype, scaler, accum)


def make_loader(ctx: RunContext, dataset, sampler, batch_size: int, drop_last: bool, collate_fn=None):
    nw = ctx.cfg.data.num_workers
    kwargs = {}
    if nw > 0:
        # SIGTERM / SIGUSR1 are for the training process to stop cleanly (mgm.engine.preemption)
        kwargs.update(persistent_workers=True, prefetch_factor=2,
                      worker_init_fn=functools.partial(worker_stop_signals, stop_signal_gate()))
    return DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, num_workers=nw, drop_last=drop_last,
        collate_fn=collate_fn, pin_memory=ctx.device.type == "cuda",
        # a private generator: making an iterator must not consume the global torch RNG,
        # or a resumed run would draw different drop-path / mixup numbers than the original
        generator=torch.Generator().manual_seed(ctx.cfg.run.seed), **kwargs)


def wrap_model(ctx: RunContext, model: torch.nn.Module, trainable: bool = True):
    """DDP (when distributed and there is something to train) and optional torch.compile."""
    model.to(ctx.device)
    train_model = model
    if ctx.dist.distributed and trainable:
        ids = [ctx.device.index] if ctx.device.type == "cuda" else None
        train_model = DDP(model, device_ids=ids)
    if ctx.cfg.run.compile:
        train_model = torch.compile(train_model)
    return train_model


def model_from_config(cfg: Config, kind: str, num_classes: int = 0) -> torch.nn.Module:
    """The model a run starts from: built from ``cfg.model``, with weights from ``model.init``
    when set. A classifier from a checkpoint takes its architecture from the file (any format
    ``load_checkpoint`` reads) and the run's frames, size, pooling, drop path and gradient
    checkpointing; a pretrainer is built from the config and initialised from the file."""
    m = cfg.model
    if kind == "classifier" and m.init:
        model = load_checkpoint(m.init, num_frames=m.num_frames, img_size=m.img_size, num_classes=num_classes,
                                kind="classifier", drop_path=m.drop_path, pool=m.pool,
                                grad_checkpointing=m.grad_checkpointing).train()
        note_checkpoint_architecture(cfg, model.spec)
        return model
    model = build_model(m, kind, num_classes)
    if m.init:
        init_from(model, m.init)
    return model


# what a classifier loaded from model.init keeps of the file, whatever the config's model.* say
ARCHITECTURE = ("embed_dim", "depth", "num_heads", "patch", "tubelet", "attention")


def architecture_differences(m, spec: VideoMAESpec) -> list[str]:
    """The encoder sizes in which checkpoint ``spec`` differs from those the config's ``model.*``
    (arch, depth, patch, tubelet, attention) describe, as ``"depth 12 (config 4)"``."""
    try:
        want = VideoMAESpec(arch=m.arch, depth=m.depth, patch=m.patch, tubelet=m.tubelet, attention=m.attention,
                            num_frames=m.num_frames, img_size=m.img_size)
    except ValueError:          # the config's own architecture is invalid: the checkpoint's is used anyway
        return []
    return [f"{f} {getattr(spec, f)} (config {getattr(want, f)})" for f in ARCHITECTURE
            if getattr(spec, f) != getattr(want, f)]


def note_checkpoint_architecture(cfg: Config, spec: VideoMAESpec) -> None:
    """Say in one line (main process) when a classifier takes an architecture from ``model.init``
    other than the one its config describes, e.g. the vit_base preset ``finetune_k400`` given a
    ViT-S checkpoint: the run is right (the weights decide the shape), but the config's
    ``model.arch`` would mislead, and a preset's recipe (layer decay, lr) is sized for its arch."""
    diffs = architecture_differences(cfg.model, spec)
    if diffs and (not du.is_dist() or torch.distributed.get_rank() == 0):
        print(f"mgm {cfg.task}: the encoder is {cfg.model.init}'s, not the one model.* describe: {', '.join(diffs)}; "
              "model.arch/depth/patch/tubelet/attention are not read with a checkpoint "
              "(mgm configs lists a preset of its size)", file=sys.stderr, flush=True)


def labelled_datasets(cfg, task: str, dataset=None, val_dataset=None):
    """The train dataset and, when ``data.val`` is set and evaluation is on, the val dataset
    of a labelled task (finetune / linprobe); given ones are used as they are."""
    if dataset is None:
        dataset = build_dataset(cfg, "train", task=task)
    if val_dataset is None and cfg.data.val and cfg.run.eval_every > 0:
        val_dataset = build_dataset(cfg, "val", task=task)
    return dataset, val_dataset
