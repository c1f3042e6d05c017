"""Supervised fine-tuning (``mgm finetune``) and multi-view testing (``mgm eval``).

Recipe as VideoMAE: the classifier's encoder starts from ``model.init`` (a pretraining or any
checkpoint ``mgm.models.load_checkpoint`` reads; fc_norm and head fresh), layer-wise lr decay,
drop path, mixup/cutmix with label smoothing, repeated augmentation, no weight decay on
norms/biases/tokens, optional gradient clipping. After each ``run.eval_every`` epochs a
single-view validation on ``data.val``; at the end a multi-view test (``data.test``, else
``data.val``) whose per-video predictions go to ``OUT_DIR/predictions.csv``.
"""
from __future__ import annotations

import json
from typing import Callable

import torch.nn.functional as F

from mgm.config import Config, config_to_dict
from mgm.data.dataset import build_dataset, collate
from mgm.engine import distributed as du
from mgm.engine.evaluate import evaluate
from mgm.engine.mixup import VideoMixup, soft_cross_entropy
from mgm.engine.run_context import RunError, labelled_datasets, model_from_config, setup_run, wrap_model
from mgm.engine.trainer import StepOutput, Trainer
from mgm.models.checkpoint import load_checkpoint, save_checkpoint


def run_test(ctx, forward, cfg: Config, csv_name: str = "predictions.csv", task: str = "eval") -> dict:
    """Multi-view test on data.test (else data.val); metrics also to OUT_DIR/test_metrics.json."""
    ds = build_dataset(cfg, "test", task=task)
    metrics = evaluate(ctx, forward, ds, cfg.optim.batch_size, ctx.out_dir / csv_name,
                       collate_fn=collate, desc="test")
    metrics["views_per_video"] = getattr(ds, "views", 1)
    if ctx.dist.is_main:
        (ctx.out_dir / "test_metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    return metrics


def run_finetune(cfg: Config, model=None, dataset=None, val_dataset=None, test: bool = True,
                 on_step: Callable[[int], None] | None = None) -> dict:
    ctx = setup_run(cfg)
    try:
        dataset, val_dataset = labelled_datasets(cfg, "finetune", dataset, val_dataset)
        num_classes = dataset.num_classes
        if model is None:
            model = model_from_config(cfg, "classifier", num_classes)
        train_model = wrap_model(ctx, model)
        device = ctx.device
        f = cfg.finetune
        mixup = VideoMixup(num_classes, f.mixup, f.cutmix, f.mixup_prob, f.mixup_switch_prob,
                           f.label_smoothing, seed=cfg.run.seed * 1000 + ctx.dist.rank)
        use_mixup = mixup.active

        def step_fn(batch: dict, step: int, micro: int) -> StepOutput:
            video = batch["video"].to(device, non_blocking=True)
            label = batch["label"].to(device, non_blocking=True)
            if use_mixup:
                video, target = mixup(video, label)
                loss = soft_cross_entropy(train_model(video), target)
            else:
                loss = F.cross_entropy(train_model(video).float(), label, label_smoothing=f.label_smoothing)
            return StepOutput(loss, int(video.shape[0]))

        def validate() -> dict:
            model.eval()
            try:
                m = evaluate(ctx, model, val_dataset, cfg.optim.batch_size, collate_fn=collate, desc="val")
            finally:
                model.train()
            return {"top1": m["top1"], "top5": m["top5"], "loss": m["loss"]}

        trainer = Trainer(ctx, model, train_model, dataset, step_fn, collate_fn=collate,
                          stateful={"mixup": mixup}, evaluate=validate if val_dataset is not None else None,
                          on_step=on_step, desc="finetune", repeats=f.repeated_aug)
        result = trainer.fit()
        if ctx.dist.is_main:
            result["weights"] = str(save_checkpoint(
                model, ctx.out_dir / "finetuned.safetensors", config=config_to_dict(cfg),
                extra={"step": trainer.step, "epoch": trainer.epoch, "classes": getattr(dataset, "classes", None)}))
        if test and (cfg.data.test or cfg.data.val):
            model.eval()
            result["test"] = run_test(ctx, model, cfg, task="finetune")
            if ctx.dist.is_main:
                print(_fmt_test(result["test"]), flush=True)
        du.barrier()
        return result
    finally:
        du.cleanup()


def _fmt_test(m: dict) -> str:
    return (f"test: top-1 {m['top1']:.2f}%  top-5 {m['top5']:.2f}%  on {m['videos']} videos "
            f"x {m.get('views_per_video', 1)} views (softmax per view, averaged)")


def run_eval(cfg: Config, model=None) -> dict:
    """``mgm eval``: multi-view test of ``model.init`` (a fine-tuned checkpoint). Its config goes
    to ``OUT_DIR/eval_config.yaml`` (a fine-tuning run's ``config.yaml`` stays as it was)."""
    ctx = setup_run(cfg, config_name="eval_config.yaml")
    try:
        if model is None:
            if not cfg.model.init:
                raise RunError("mgm eval needs model.init=CHECKPOINT (a fine-tuned classifier)")
            model = load_checkpoint(cfg.model.init, num_frames=cfg.model.num_frames,
                                    img_size=cfg.model.img_size, kind="classifier")
        model.to(ctx.device).eval()
        if getattr(model, "num_classes", 1) == 0:
            raise RunError(f"{cfg.model.init} has no classification head; fine-tune it first "
                             "(or use mgm linprobe)")
        metrics = run_test(ctx, model, cfg, task="eval")
        if ctx.dist.is_main:
            print(_fmt_test(metrics), flush=True)
            print(f"per-video predictions: {ctx.out_dir / 'predictions.csv'}", flush=True)
        return metrics
    finally:
        du.cleanup()
