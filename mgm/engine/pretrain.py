"""Masked-autoencoder pretraining (``mgm pretrain``).

The dataset returns clips and, for the guided strategies, their patch-grid motion magnitude; the
training step builds the batch's masks (``mgm.masking.make_masks``) on the training device.

Randomness of the masks: the uniform draws of optimiser step ``s`` are drawn for the whole global
batch at once from a generator seeded by ``(run.seed, s)``, and every process takes the rows of
its own samples (the sampler gives process ``r`` the global positions ``r, r + W, ...``). So a
clip gets the same mask whatever the number of processes or of accumulation steps, and a resumed
run draws exactly the masks of the run it continues.

The final weights are also written to ``OUT_DIR/pretrained.safetensors`` (+ ``.json``), the
file to pass to fine-tuning as ``model.init``.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np
import torch

from mgm.config import Config, config_to_dict
from mgm.data.dataset import build_dataset, collate
from mgm.data.transforms import normalize
from mgm.engine import distributed as du
from mgm.engine.run_context import model_from_config, setup_run, wrap_model
from mgm.engine.trainer import StepOutput, Trainer
from mgm.masking.options import GUIDED
from mgm.masking.strategies import make_masks, sample_draws
from mgm.models.checkpoint import save_checkpoint


def mask_options(mask_cfg) -> dict:
    """Every ``MaskConfig`` field but strategy and ratio, as ``make_masks`` options: passing all
    of them (not a chosen subset) means a field added to the config reaches the masks or fails
    loudly as an unknown option."""
    return {k: v for k, v in dataclasses.asdict(mask_cfg).items() if k not in ("strategy", "ratio")}


def step_seed(seed: int, step: int) -> int:
    """The mask generator's seed for optimiser step ``step`` (a hash: no two steps of two seeds
    share a stream)."""
    return int(np.random.SeedSequence([seed & 0xFFFFFFFF, step]).generate_state(1, np.uint64)[0] >> 1)


def batch_masks(cfg: Config, batch: dict, step: int, micro: int, world: int, rank: int, accum: int,
                device: torch.device) -> torch.Tensor:
    """(B, N) masks of one micro-batch, rows of the step's global draws (see the module doc)."""
    m = cfg.mask
    mc = cfg.model
    grid = (mc.num_frames // mc.tubelet, mc.img_size // mc.patch, mc.img_size // mc.patch)
    b = batch["video"].shape[0]
    g = torch.Generator(device=device).manual_seed(step_seed(cfg.run.seed, step))
    draws = sample_draws(m.strategy, grid, b * world * accum, g)
    rows = (micro * b + torch.arange(b, device=device)) * world + rank
    guided = m.strategy in GUIDED
    mask = make_masks(m.strategy, grid, m.ratio, draws={k: v[rows] for k, v in draws.items()},
                      magnitude=batch["magnitude"].to(device, non_blocking=True) if guided else None,
                      magnitude_valid=batch["magnitude_valid"].to(device, non_blocking=True) if guided else None,
                      device=device, **mask_options(m))
    return mask.reshape(b, -1)


@du.releases_process_group
def run_pretrain(cfg: Config, model=None, dataset=None, on_step: Callable[[int], None] | None = None) -> dict:
    ctx = setup_run(cfg, "pretrain")
    if dataset is None:
        dataset = build_dataset(cfg, "train", task="pretrain", guidance=cfg.mask.strategy in GUIDED)
    if model is None:
        model = model_from_config(cfg, "pretrainer")
    train_model = wrap_model(ctx, model)
    device, d = ctx.device, ctx.dist

    def step_fn(batch: dict, step: int, micro: int) -> StepOutput:
        video = normalize(batch["video"].to(device, non_blocking=True))
        mask = batch_masks(cfg, batch, step, micro, d.world_size, d.rank, ctx.accum_steps, device)
        loss, _ = train_model(video, mask)
        return StepOutput(loss, int(video.shape[0]), {"masked_ratio": mask.float().mean()})

    trainer = Trainer(ctx, model, train_model, dataset, step_fn, collate_fn=collate, desc="pretrain",
                      on_step=on_step)
    result = trainer.fit()
    if d.is_main:
        path = save_checkpoint(model, ctx.out_dir / "pretrained.safetensors", config=config_to_dict(cfg),
                               extra={"step": trainer.step, "epoch": trainer.epoch})
        result["weights"] = str(path)
    du.barrier()
    return result
