"""Masked-autoencoder pretraining (``mgm pretrain``).

Masks come from the dataset (built in the loader workers from the clip's motion), or, with
``mask.on_device=true``, are built batched on the training device from the magnitude grids the
dataset returns (``mgm.masking.make_masks_torch``), with a generator seeded from
(seed, step, rank, micro-batch) so that a resumed run draws the same masks.

The final weights are also written to ``OUT_DIR/pretrained.safetensors`` (+ ``.json``), the
file to pass to fine-tuning as ``model.init``.
"""
from __future__ import annotations

import torch

from mgm.config import Config, config_to_dict
from mgm.engine import distributed as du
from mgm.engine.trainer import StepOutput, Trainer, setup_run, wrap_model


def build_model(cfg: Config):
    from mgm.models import build_pretrainer

    m = cfg.model
    return build_pretrainer(m.arch, num_frames=m.num_frames, img_size=m.img_size, tubelet=m.tubelet,
                            patch=m.patch, decoder_depth=m.decoder_depth, decoder_dim=m.decoder_dim,
                            norm_pix_loss=m.norm_pix_loss, attention=m.attention,
                            drop_path=m.drop_path, grad_checkpointing=m.grad_checkpointing)


def run_pretrain(cfg: Config, model=None, dataset=None) -> dict:
    ctx = setup_run(cfg)
    try:
        from mgm.data import build_dataset, collate

        if dataset is None:
            dataset = build_dataset(cfg, "train", task="pretrain")
        if model is None:
            model = build_model(cfg)
            if cfg.model.init:
                from mgm.models import init_from

                init_from(model, cfg.model.init)
        train_model = wrap_model(ctx, model)
        device = ctx.device
        m = cfg.model
        grid = (m.num_frames // m.tubelet, m.img_size // m.patch, m.img_size // m.patch)
        on_device = cfg.mask.on_device
        counter = {"micro": 0}
        trainer_ref: dict = {}

        def step_fn(batch: dict) -> StepOutput:
            video = batch["video"].to(device, non_blocking=True)
            if on_device:
                from mgm.masking import make_masks_torch

                g = torch.Generator(device=device)
                t = trainer_ref["t"]
                g.manual_seed(hash((cfg.run.seed, t.step, ctx.dist.rank, counter["micro"])) & 0x7FFFFFFF)
                counter["micro"] = (counter["micro"] + 1) % ctx.accum_steps
                from mgm.masking import mask_options

                options = mask_options(cfg.mask)
                mask = make_masks_torch(
                    cfg.mask.strategy, video.shape[0],
                    magnitude=batch["magnitude"].to(device), magnitude_valid=batch["magnitude_valid"].to(device),
                    grid=grid, ratio=cfg.mask.ratio, generator=g, device=device, **options)
                mask = mask.reshape(video.shape[0], -1)
            else:
                mask = batch["mask"].to(device, non_blocking=True).reshape(video.shape[0], -1)
            loss, _ = train_model(video, mask)
            return StepOutput(loss, int(video.shape[0]), {"masked_ratio": mask.float().mean()})

        trainer = Trainer(ctx, model, train_model, dataset, step_fn, collate_fn=collate, desc="pretrain")
        trainer_ref["t"] = trainer
        result = trainer.fit()
        if ctx.dist.is_main:
            from mgm.models import save_checkpoint

            path = save_checkpoint(model, ctx.out_dir / "pretrained.safetensors", config=config_to_dict(cfg),
                                   extra={"step": trainer.step, "epoch": trainer.epoch})
            result["weights"] = str(path)
        du.barrier()
        return result
    finally:
        du.cleanup()
