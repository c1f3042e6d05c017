"""Optimiser parameter groups and the per-step learning-rate schedule.

Parameter groups (VideoMAE / BEiT recipe):

- no weight decay on 1-D parameters (norm weights, biases) and on the names the model lists in
  ``no_weight_decay()`` (position table, class / mask tokens);
- layer-wise lr decay: a parameter of layer ``i`` (0 = patch embedding and position table,
  ``i + 1`` = ``blocks.i``, ``L + 1`` = everything after the last block: final norm, head) gets
  ``lr * layer_decay ** (L + 1 - i)``; the head keeps the full lr.

Every group carries ``lr_scale``; :class:`CosineSchedule` sets ``lr = lr_at(step) * lr_scale``.
"""
from __future__ import annotations

import math
import re

import torch

_BLOCK = re.compile(r"(?:^|\.)blocks\.(\d+)\.")


def num_layers_of(model) -> int:
    """Number of transformer blocks of the encoder (``blocks.i``).

    mgm.models exposes ``num_layers`` = depth + 2 (distinct layer ids, embedding and head
    included); otherwise the encoder's ``blocks.i`` are counted (decoder blocks excluded).
    """
    n = getattr(model, "num_layers", None)
    if isinstance(n, int):
        return n - 2
    fn = getattr(model, "get_num_layers", None)
    if callable(fn):
        return int(fn())
    ids = {int(m.group(1)) for n, _ in model.named_parameters()
           if "decoder" not in n and (m := _BLOCK.search(n))}
    return max(ids) + 1 if ids else 0


def layer_id(name: str, num_layers: int) -> int:
    """0 for the patch embedding / position table / tokens, i + 1 for ``blocks.i``, L + 1 for
    the rest. A ``module.`` (DDP) or ``encoder.`` / ``backbone.`` prefix is ignored."""
    m = _BLOCK.search(name)
    if m:
        return int(m.group(1)) + 1
    leaf = name.split(".")
    # strip wrapper prefixes
    while leaf and leaf[0] in ("module", "_orig_mod", "encoder", "backbone", "model"):
        leaf = leaf[1:]
    head = leaf[0] if leaf else ""
    if head in ("patch_embed", "pos_embed", "cls_token", "mask_token", "pos_drop", "embeddings"):
        return 0
    return num_layers + 1


_ALWAYS_SKIP = {"pos_embed", "cls_token", "mask_token", "decoder_pos_embed"}


def _no_decay(name: str, param: torch.Tensor, skip: set[str]) -> bool:
    if param.ndim <= 1 or name.endswith(".bias") or name.split(".")[-1] in _ALWAYS_SKIP:
        return True
    short = name
    for prefix in ("module.", "_orig_mod."):
        short = short.removeprefix(prefix)
    return short in skip or short.split(".")[-1] in skip


def param_groups(model: torch.nn.Module, weight_decay: float, layer_decay: float = 1.0,
                 num_layers: int | None = None, skip: set[str] | None = None) -> list[dict]:
    """Groups of trainable parameters with ``weight_decay`` and ``lr_scale`` set (see module doc).

    ``skip``: extra names without weight decay; ``model.no_weight_decay()`` is added if present.
    """
    skip = set(skip or ())
    fn = getattr(model, "no_weight_decay", None)
    if callable(fn):
        skip |= set(fn())
    L = num_layers_of(model) if num_layers is None else num_layers
    layer_fn = getattr(model, "layer_id", None)
    groups: dict[tuple[int, bool], dict] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        lid = int(layer_fn(name)) if callable(layer_fn) else layer_id(name, L)
        nd = _no_decay(name, p, skip)
        key = (lid, nd)
        if key not in groups:
            groups[key] = {
                "params": [], "names": [],
                "weight_decay": 0.0 if nd else weight_decay,
                "lr_scale": layer_decay ** (L + 1 - lid) if layer_decay != 1.0 else 1.0,
                "layer_id": lid,
            }
        groups[key]["params"].append(p)
        groups[key]["names"].append(name)
    return [groups[k] for k in sorted(groups)]


class LARS(torch.optim.Optimizer):
    """SGD with momentum 0.9 and layer-wise adaptive rate scaling (You et al., 2017), the optimiser
    of MAE's linear probe: a matrix's step ``g + wd * w`` is rescaled by
    ``trust_coefficient * ||w|| / ||g + wd * w||`` (1 when either norm is 0), so each layer moves by
    a fixed fraction of its own norm whatever its gradient scale; 1-D parameters (biases, norm
    weights) take a plain momentum step without weight decay. Meant for large learning rates
    (MAE: 0.1 x batch / 256 at batch 16384)."""

    def __init__(self, params, lr: float, momentum: float = 0.9, weight_decay: float = 0.0,
                 trust_coefficient: float = 0.001):
        super().__init__(params, {"lr": lr, "momentum": momentum, "weight_decay": weight_decay,
                                  "trust_coefficient": trust_coefficient})

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                step = p.grad
                if p.ndim > 1:
                    step = step.add(p, alpha=group["weight_decay"])
                    w_norm, s_norm = torch.linalg.vector_norm(p), torch.linalg.vector_norm(step)
                    trust = torch.where((w_norm > 0) & (s_norm > 0),
                                        group["trust_coefficient"] * w_norm / s_norm, torch.ones_like(w_norm))
                    step = step * trust
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p)
                buf = state["momentum_buffer"].mul_(group["momentum"]).add_(step)
                p.add_(buf, alpha=-group["lr"])
        return loss


def build_optimizer(cfg, model: torch.nn.Module, lr: float) -> torch.optim.Optimizer:
    """AdamW, SGD with momentum 0.9, or :class:`LARS`, over :func:`param_groups`."""
    o = cfg.optim
    groups = param_groups(model, o.weight_decay, o.layer_decay)
    # "names" is not an optimiser option; keep it out of the state dict
    for g in groups:
        g.pop("names")
    if o.name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=tuple(o.betas), weight_decay=o.weight_decay)
    if o.name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=0.9, weight_decay=o.weight_decay)
    if o.name == "lars":
        return LARS(groups, lr=lr, weight_decay=o.weight_decay)
    raise ValueError(f"unknown optimiser {o.name!r}")


def scaled_lr(base_lr: float, global_batch: int) -> float:
    """The linear scaling rule of the paper's Table 5: lr = base_lr * global_batch / 256."""
    return base_lr * global_batch / 256


class CosineSchedule:
    """Linear warmup then half-cosine decay to ``min_lr``, evaluated per optimiser step.

    Step ``s`` (0-based) during warmup gets ``peak * (s + 1) / warmup_steps``; afterwards
    ``min_lr + (peak - min_lr) * (1 + cos(pi * progress)) / 2`` with progress going 0 -> 1 over
    the remaining steps. Stateless apart from the step counter, so resuming is exact.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, peak_lr: float, total_steps: int,
                 warmup_steps: int = 0, min_lr: float = 0.0):
        self.optimizer = optimizer
        self.peak_lr = peak_lr
        self.total_steps = max(1, int(total_steps))
        self.warmup_steps = max(0, min(int(warmup_steps), self.total_steps))
        self.min_lr = min_lr
        self.step_num = 0

    def lr_at(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.peak_lr * (step + 1) / self.warmup_steps
        decay = self.total_steps - self.warmup_steps
        progress = min(1.0, (step - self.warmup_steps) / max(1, decay))
        return self.min_lr + (self.peak_lr - self.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))

    def apply(self, step: int | None = None) -> float:
        """Set every group's lr for ``step`` (default: the current step); return the base lr."""
        lr = self.lr_at(self.step_num if step is None else step)
        for g in self.optimizer.param_groups:
            g["lr"] = lr * g.get("lr_scale", 1.0)
        return lr

    def step(self) -> None:
        self.step_num += 1

    def state_dict(self) -> dict:
        return {"step": self.step_num, "peak_lr": self.peak_lr, "total_steps": self.total_steps,
                "warmup_steps": self.warmup_steps, "min_lr": self.min_lr}

    def load_state_dict(self, state: dict) -> None:
        self.step_num = int(state["step"])
