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

import torch.nn.functional as F

from mgm.config import Config, config_to_dict
from mgm.engine import distributed as du
from mgm.engine.evaluate import evaluate
from mgm.engine.mixup import VideoMixup, soft_cross_entropy
from mgm.engine.run_context import labelled_datasets
from mgm.engine.trainer import RunError, StepOutput, Trainer, setup_run, wrap_model


def build_classifier_from_config(cfg: Config, num_classes: int):
    """A classifier for ``cfg.model``; encoder weights from ``model.init`` when set."""
    m = cfg.model
    if m.init:
        from mgm.models import load_checkpoint

        model = load_checkpoint(m.init, num_frames=m.num_frames, img_size=m.img_size,
                                num_classes=num_classes, kind="classifier", drop_path=m.drop_path,
                                grad_checkpointing=m.grad_checkpointing)
        return model.train()
    from mgm.models import build_classifier

    return build_classifier(m.arch, num_classes=num_classes, num_frames=m.num_frames,
                            img_size=m.img_size, tubelet=m.tubelet, patch=m.patch,
                            attention=m.attention, drop_path=m.drop_path,
                            grad_checkpointing=m.grad_checkpointing)


def run_test(ctx, forward, cfg: Config, csv_name: str = "predictions.csv", task: str = "eval") -> dict:
    """Multi-view test on data.test (else data.val); metrics also to OUT_DIR/test_metrics.json."""
    from mgm.data import build_dataset, collate

    ds = build_dataset(cfg, "test", task=task)
    metrics = evaluate(ctx, forward, ds, cfg.optim.batch_size, ctx.out_dir / csv_name,
                       collate_fn=collate, desc="test")
    metrics["views_per_video"] = getattr(ds, "views", 1)
    if ctx.dist.is_main:
        (ctx.out_dir / "test_metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    return metrics


def run_finetune(cfg: Config, model=None, dataset=None, val_dataset=None, test: bool = True) -> dict:
    ctx = setup_run(cfg)
    try:
        from mgm.data import collate

        dataset, val_dataset = labelled_datasets(cfg, "finetune", dataset, val_dataset)
        num_classes = dataset.num_classes
        if model is None:
            model = build_classifier_from_config(cfg, num_classes)
        train_model = wrap_model(ctx, model)
        device = ctx.device
        f = cfg.finetune
        mixup = VideoMixup(num_classes, f.mixup, f.cutmix, f.mixup_prob, f.mixup_switch_prob,
                           f.label_smoothing, seed=cfg.run.seed * 1000 + ctx.dist.rank)
        use_mixup = mixup.active

        def step_fn(batch: dict) -> StepOutput:
            video = batch["video"].to(device, non_blocking=True)
            label = batch["label"].to(device, non_blocking=True)
            if use_mixup:
                video, target = mixup(video, label)
                loss = soft_cross_entropy(train_model(video), target)
            else:
                loss = F.cross_entropy(train_model(video).float(), label, label_smoothing=f.label_smoothing)
            return StepOutput(loss, int(video.shape[0]))

        def on_epoch_end(epoch: int) -> dict:
            every = cfg.run.eval_every
            if val_dataset is None or every <= 0 or (epoch + 1) % every:
                return {}
            model.eval()
            try:
                m = evaluate(ctx, model, val_dataset, cfg.optim.batch_size, collate_fn=collate, desc="val")
            finally:
                model.train()
            return {"top1": m["top1"], "top5": m["top5"], "loss": m["loss"]}

        trainer = Trainer(ctx, model, train_model, dataset, step_fn, collate_fn=collate,
                          stateful={"mixup": mixup}, on_epoch_end=on_epoch_end, desc="finetune",
                          repeats=f.repeated_aug)
        result = trainer.fit()
        if ctx.dist.is_main:
            from mgm.models import save_checkpoint

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
            from mgm.models import load_checkpoint

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
