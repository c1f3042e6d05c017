"""Supervised fine-tuning (``mgm finetune``) and multi-view testing (``mgm eval``).

Recipe as VideoMAE: the classifier's encoder starts from ``model.init`` (a pretraining or any
checkpoint ``mgm.models.load_checkpoint`` reads; fc_norm and head fresh), layer-wise lr decay,
drop path, mixup/cutmix with label smoothing, repeated augmentation, no weight decay on
norms/biases/tokens, optional gradient clipping. After each ``run.eval_every`` epochs a
single-view validation on ``data.val``; at the end a multi-view test (``data.test``, else
``data.val``) whose per-video predictions go to ``OUT_DIR/predictions.csv``.

With ``data.class_map`` the test list is another dataset's (partial domain adaptation, the paper's
Table 3): its labels are mapped to the model's classes (``mgm.data.class_map``; the map is checked
against the test list before training starts) and the metrics add top-1 restricted to the target's
classes (``mgm.engine.evaluate``).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import torch.nn.functional as F

from mgm.config import Config, config_to_dict
from mgm.data.class_map import load_class_map, map_annotations, resolve_class_map
from mgm.data.dataset import VideoDataset, build_dataset, collate
from mgm.data.transforms import normalize
from mgm.engine import distributed as du
from mgm.engine.evaluate import evaluate
from mgm.engine.mixup import VideoMixup, soft_cross_entropy
from mgm.engine.run_context import (RunError, labelled_datasets, model_from_config, note_checkpoint_architecture,
                                    setup_run, wrap_model)
from mgm.engine.trainer import StepOutput, Trainer
from mgm.models.checkpoint import load_checkpoint, save_checkpoint


def build_test_set(cfg: Config, task: str, source_classes: list[str] | None = None, num_source: int = 0,
                   model: str = "the model") -> tuple[VideoDataset, list[int] | None]:
    """The multi-view test set (data.test, else data.val) and, with ``data.class_map``, the
    model's classes that the target's classes map to (None without a map). ``source_classes`` /
    ``num_source``: the model's class names (None if unknown) and outputs; ``model`` names it in
    errors."""
    ds = build_dataset(cfg, "test", task=task)
    if not cfg.data.class_map:
        return ds, None
    mapping = resolve_class_map(load_class_map(cfg.data.class_map), ds.ann, source_classes, num_source, model)
    mapped = map_annotations(ds.ann, mapping, source_classes, num_source)
    return VideoDataset(mapped, cfg, split="test", task=task), sorted(set(mapping.values()))


def recorded_classes(checkpoint: str | Path) -> list[str] | None:
    """The class names a fine-tuning run recorded beside its weights (``extra.classes`` of the
    ``.json`` sidecar ``save_checkpoint`` writes), or None."""
    try:
        extra = json.loads(Path(checkpoint).with_suffix(".json").read_text()).get("extra") or {}
        names = extra.get("classes")
    except (OSError, ValueError, AttributeError):
        return None
    return [str(n) for n in names] if isinstance(names, list) else None


def run_test(ctx, forward, cfg: Config, csv_name: str = "predictions.csv", task: str = "eval",
             test_set: tuple | None = None) -> dict:
    """Multi-view test on data.test (else data.val); metrics also to OUT_DIR/test_metrics.json.
    ``test_set``: what ``build_test_set`` returned (needed with data.class_map)."""
    ds, restrict = test_set if test_set is not None else build_test_set(
        cfg, task, None, getattr(forward, "num_classes", 0))
    metrics = evaluate(ctx, forward, ds, cfg.optim.batch_size, ctx.out_dir / csv_name,
                       collate_fn=collate, desc="test", restrict_to=restrict)
    metrics["views_per_video"] = getattr(ds, "views", 1)
    if restrict is not None:
        metrics.update(class_map=cfg.data.class_map, target_classes=len(restrict),
                       source_classes=ds.num_classes)
    if ctx.dist.is_main:
        (ctx.out_dir / "test_metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    return metrics


@du.releases_process_group
def run_finetune(cfg: Config, model=None, dataset=None, val_dataset=None, test: bool = True,
                 on_step: Callable[[int], None] | None = None) -> dict:
    ctx = setup_run(cfg, "finetune")
    dataset, val_dataset = labelled_datasets(cfg, "finetune", dataset, val_dataset)
    num_classes = dataset.num_classes
    test_set = None
    if cfg.data.class_map and not cfg.data.test:
        raise RunError("data.class_map maps the classes of data.test (the target list) to the "
                       "training classes; set data.test=TARGET_LIST")
    if test and (cfg.data.test or cfg.data.val):     # a bad map or test list fails before training
        test_set = build_test_set(cfg, "finetune", getattr(dataset, "classes", None), num_classes,
                                  f"the training list {cfg.data.train}")
    if model is None:
        model = model_from_config(cfg, "classifier", num_classes)
    train_model = wrap_model(ctx, model)
    device = ctx.device
    f = cfg.finetune
    mixup = VideoMixup(num_classes, f.mixup, f.cutmix, f.mixup_prob, f.mixup_switch_prob,
                       f.label_smoothing, seed=cfg.run.seed * 1000 + ctx.dist.rank)
    use_mixup = mixup.active

    def step_fn(batch: dict, step: int, micro: int) -> StepOutput:
        video = normalize(batch["video"].to(device, non_blocking=True))
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
    if test_set is not None:
        model.eval()
        result["test"] = run_test(ctx, model, cfg, task="finetune", test_set=test_set)
        if ctx.dist.is_main:
            print(_fmt_test(result["test"]), flush=True)
    du.barrier()
    return result


def _fmt_test(m: dict) -> str:
    line = (f"test: top-1 {m['top1']:.2f}%  top-5 {m['top5']:.2f}%  on {m['videos']} videos "
            f"x {m.get('views_per_video', 1)} views (softmax per view, averaged)")
    if "top1_target_classes" in m:
        line += (f"\ntest through class map {m['class_map']}: top-1 {m['top1']:.2f}% over all "
                 f"{m['source_classes']} source classes (a source-only class counts as an error); "
                 f"top-1 restricted to the {m['target_classes']} target classes "
                 f"{m['top1_target_classes']:.2f}%; {m['predicted_outside_target']:.1f}% of videos "
                 "predicted as a source-only class")
    return line


@du.releases_process_group
def run_eval(cfg: Config, model=None) -> dict:
    """``mgm eval``: multi-view test of ``model.init`` (a fine-tuned checkpoint). Its config goes
    to ``OUT_DIR/eval_config.yaml`` (a fine-tuning run's ``config.yaml`` stays as it was)."""
    ctx = setup_run(cfg, "eval", config_name="eval_config.yaml")
    if model is None:
        if not cfg.model.init:
            raise RunError("mgm eval needs model.init=CHECKPOINT (a fine-tuned classifier)")
        model = load_checkpoint(cfg.model.init, num_frames=cfg.model.num_frames,
                                img_size=cfg.model.img_size, kind="classifier")
        note_checkpoint_architecture(cfg, model.spec)
    model.to(ctx.device).eval()
    if getattr(model, "num_classes", 1) == 0:
        raise RunError(f"{cfg.model.init} has no classification head; fine-tune it first "
                         "(or use mgm linprobe)")
    names = recorded_classes(cfg.model.init) if cfg.model.init else None
    test_set = build_test_set(cfg, "eval", names, model.num_classes, cfg.model.init or "the model")
    metrics = run_test(ctx, model, cfg, task="eval", test_set=test_set)
    if ctx.dist.is_main:
        print(_fmt_test(metrics), flush=True)
        print(f"per-video predictions: {ctx.out_dir / 'predictions.csv'}", flush=True)
    return metrics
