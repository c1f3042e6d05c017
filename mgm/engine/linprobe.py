"""Linear probing (``mgm linprobe``), MAE-style: frozen encoder, ``BatchNorm1d(affine=False)`` +
``Linear`` on the pooled features, trained with the optimiser in ``optim`` (SGD in the presets).

With ``finetune.cache_features=true`` the frozen features of the train and val sets are
extracted once (without augmentation: the dataset switches to centre crops), gathered from all
ranks, kept in ``OUT_DIR/features_{split}.pt`` and reused on restart; the probe then trains on
these tensors in seconds. Without the cache every step runs the frozen encoder on augmented clips.

Checkpoints hold the probe (``probe.safetensors``) and, for use anywhere, the whole classifier
with the BatchNorm folded into the linear head (``model.safetensors``): ``load_checkpoint``
returns a plain classifier whose logits equal the probe's.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from mgm.config import Config, config_to_dict
from mgm.data.dataset import collate
from mgm.data.transforms import normalize
from mgm.engine import distributed as du
from mgm.engine.evaluate import evaluate
from mgm.engine.run_context import RunError, labelled_datasets, make_loader, model_from_config, setup_run, wrap_model
from mgm.engine.samplers import ResumableDistributedSampler
from mgm.engine.trainer import StepOutput, Trainer
from mgm.models.checkpoint import save_checkpoint, unwrap


class LinearProbe(nn.Module):
    def __init__(self, dim: int, num_classes: int):
        super().__init__()
        self.bn = nn.BatchNorm1d(dim, affine=False, eps=1e-6)
        self.head = nn.Linear(dim, num_classes)
        nn.init.trunc_normal_(self.head.weight, std=0.01)
        nn.init.zeros_(self.head.bias)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.head(self.bn(feats.float()))

    def folded(self) -> nn.Linear:
        """One Linear equal to bn (eval mode) + head."""
        s = torch.sqrt(self.bn.running_var + self.bn.eps)
        lin = nn.Linear(self.head.in_features, self.head.out_features)
        with torch.no_grad():
            w = self.head.weight / s[None, :]
            lin.weight.copy_(w)
            lin.bias.copy_(self.head.bias - (w * self.bn.running_mean[None, :]).sum(1))
        return lin


class ProbedClassifier(nn.Module):
    def __init__(self, backbone: nn.Module, probe: LinearProbe):
        super().__init__()
        self.backbone, self.probe = backbone, probe

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return self.probe(self.backbone.forward_features(video))


class FeatureSet(torch.utils.data.Dataset):
    def __init__(self, feats: torch.Tensor, labels: torch.Tensor, samples=None, classes=None):
        self.feats, self.labels = feats, labels
        self.samples, self.classes = samples, classes
        self.num_classes = len(classes) if classes else int(labels.max()) + 1

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        return {"video": self.feats[i], "label": int(self.labels[i]), "index": i, "view": 0}


@torch.no_grad()
def extract_features(ctx, backbone, dataset, batch_size: int, path: Path, desc: str) -> FeatureSet:
    """Features of every item (all ranks share the work, every rank gets the whole set)."""
    n = len(dataset)
    if path.exists():
        blob = torch.load(path, map_location="cpu", weights_only=True)
        if blob["feats"].shape[0] == n:
            return FeatureSet(blob["feats"], blob["labels"], getattr(dataset, "samples", None),
                              getattr(dataset, "classes", None))
    d = ctx.dist
    sampler = ResumableDistributedSampler(n, d.world_size, d.rank, shuffle=False)
    loader = make_loader(ctx, dataset, sampler, batch_size, False, collate)
    idx, feats, labels = [], [], []
    seen = 0
    for batch in loader:
        b = batch["video"].shape[0]
        pos = d.rank + d.world_size * torch.arange(seen, seen + b)
        seen += b
        keep = pos < n
        with ctx.autocast():
            f = backbone.forward_features(normalize(batch["video"].to(ctx.device, non_blocking=True)))
        idx.append(batch["index"][keep])
        feats.append(f.float().cpu()[keep])
        labels.append(batch["label"][keep])
    parts = du.all_gather_object((torch.cat(idx), torch.cat(feats), torch.cat(labels)))
    all_idx = torch.cat([p[0] for p in parts])
    order = torch.argsort(all_idx)
    fs = torch.cat([p[1] for p in parts])[order]
    ys = torch.cat([p[2] for p in parts])[order]
    if d.is_main:
        tmp = path.with_name(path.name + ".tmp")
        torch.save({"feats": fs, "labels": ys}, tmp)
        tmp.replace(path)
        print(f"{desc}: cached {tuple(fs.shape)} features in {path}", flush=True)
    du.barrier()
    return FeatureSet(fs, ys, getattr(dataset, "samples", None), getattr(dataset, "classes", None))


@du.releases_process_group
def run_linprobe(cfg: Config, backbone=None, dataset=None, val_dataset=None,
                 on_step: Callable[[int], None] | None = None) -> dict:
    ctx = setup_run(cfg, "linprobe")
    dataset, val_dataset = labelled_datasets(cfg, "linprobe", dataset, val_dataset)
    num_classes = dataset.num_classes
    if backbone is None:
        if not cfg.model.init:
            raise RunError("mgm linprobe needs model.init=CHECKPOINT (the pretrained encoder)")
        backbone = model_from_config(cfg, "classifier", 0)
    backbone.to(ctx.device).eval()
    for p in backbone.parameters():
        p.requires_grad_(False)
    probe = LinearProbe(backbone.num_features, num_classes).to(ctx.device)
    train_probe = wrap_model(ctx, probe)
    device = ctx.device
    cached = cfg.finetune.cache_features
    if cached:
        dataset = extract_features(ctx, backbone, dataset, cfg.optim.batch_size,
                                   ctx.out_dir / "features_train.pt", "train")
        if val_dataset is not None:
            val_dataset = extract_features(ctx, backbone, val_dataset, cfg.optim.batch_size,
                                           ctx.out_dir / "features_val.pt", "val")
    smoothing = cfg.finetune.label_smoothing

    def step_fn(batch: dict, step: int, micro: int) -> StepOutput:
        x = batch["video"].to(device, non_blocking=True)
        if not cached:
            with torch.no_grad():
                x = backbone.forward_features(normalize(x))
        logits = train_probe(x)
        loss = F.cross_entropy(logits.float(), batch["label"].to(device), label_smoothing=smoothing)
        return StepOutput(loss, int(x.shape[0]))

    def validate() -> dict:
        probe.eval()
        try:
            fwd = probe if cached else ProbedClassifier(backbone, probe)
            m = evaluate(ctx, fwd, val_dataset, cfg.optim.batch_size, collate_fn=None if cached else collate,
                         desc="val")
        finally:
            probe.train()
        return {"top1": m["top1"], "top5": m["top5"], "loss": m["loss"]}

    def save_weights(_model, d: Path) -> None:
        save_file({k: v.detach().cpu().contiguous() for k, v in probe.state_dict().items()},
                  str(d / "probe.safetensors"))
        save_folded(backbone, probe, d / "model.safetensors", config_to_dict(cfg), {"linprobe": True})

    def load_weights(_model, d: Path) -> None:
        probe.load_state_dict(load_file(str(d / "probe.safetensors")))

    trainer = Trainer(ctx, probe, train_probe, dataset, step_fn,
                      params=list(probe.parameters()), collate_fn=None if cached else collate,
                      save_weights=save_weights, load_weights=load_weights,
                      evaluate=validate if val_dataset is not None else None, on_step=on_step,
                      desc="linprobe")
    result = trainer.fit()
    if ctx.dist.is_main:
        result["weights"] = str(save_folded(backbone, probe, ctx.out_dir / "linprobe.safetensors",
                                            config_to_dict(cfg), {"linprobe": True}))
    if "val" in result and ctx.dist.is_main:
        (ctx.out_dir / "val_metrics.json").write_text(json.dumps(result["val"], indent=1) + "\n")
    du.barrier()
    return result


def save_folded(backbone: nn.Module, probe: LinearProbe, path, config: dict, extra: dict | None = None):
    """Save the frozen classifier with the probe (BatchNorm folded in) as its head, so that
    ``load_checkpoint(path)`` gives a plain classifier (the backbone is restored afterwards)."""
    lin = copy.deepcopy(unwrap(probe)).float().cpu().eval().folded().to(next(backbone.parameters()).device)
    old_head, old_n = backbone.head, backbone.spec.num_classes
    backbone.head, backbone.spec.num_classes = lin, lin.out_features
    try:
        return save_checkpoint(backbone, path, config=config, extra=extra)
    finally:
        backbone.head, backbone.spec.num_classes = old_head, old_n
