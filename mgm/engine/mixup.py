"""Mixup / CutMix with label smoothing for video batches (B, C, T, H, W).

Batch mode, as timm's ``Mixup`` used by VideoMAE: one ``lam`` per batch, each clip is mixed with
the clip at the mirrored batch position (``x.flip(0)``). CutMix cuts one box in (H, W) that is the
same for every frame (the box is a spatial tube), and ``lam`` is corrected to the exact area kept.
Targets are smoothed one-hot vectors mixed with the same ``lam``:
``lam * smooth(y) + (1 - lam) * smooth(y.flip(0))``, ``smooth(y) = (1 - eps) * onehot + eps / C``.

The random draws come from the object's own generator; its state goes into checkpoints.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def smooth_one_hot(target: torch.Tensor, num_classes: int, smoothing: float) -> torch.Tensor:
    off = smoothing / num_classes
    out = torch.full((target.shape[0], num_classes), off, device=target.device, dtype=torch.float32)
    out.scatter_(1, target.long().view(-1, 1), 1.0 - smoothing + off)
    return out


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return torch.sum(-target * F.log_softmax(logits.float(), dim=-1), dim=-1).mean()


class VideoMixup:
    def __init__(self, num_classes: int, mixup_alpha: float = 0.8, cutmix_alpha: float = 1.0,
                 prob: float = 1.0, switch_prob: float = 0.5, label_smoothing: float = 0.1,
                 seed: int = 0):
        self.num_classes = num_classes
        self.mixup_alpha = mixup_alpha
        self.cutmix_alpha = cutmix_alpha
        self.prob = prob
        self.switch_prob = switch_prob
        self.label_smoothing = label_smoothing
        self.rng = np.random.default_rng(seed)
        self.last: dict = {}

    @property
    def active(self) -> bool:
        return self.prob > 0 and (self.mixup_alpha > 0 or self.cutmix_alpha > 0)

    def _draw(self) -> tuple[str, float]:
        if self.rng.random() >= self.prob:
            return "none", 1.0
        if self.mixup_alpha > 0 and self.cutmix_alpha > 0:
            use_cutmix = self.rng.random() < self.switch_prob
        else:
            use_cutmix = self.cutmix_alpha > 0
        alpha = self.cutmix_alpha if use_cutmix else self.mixup_alpha
        return ("cutmix" if use_cutmix else "mixup"), float(self.rng.beta(alpha, alpha))

    def _box(self, lam: float, h: int, w: int) -> tuple[int, int, int, int]:
        ratio = np.sqrt(1.0 - lam)
        ch, cw = int(h * ratio), int(w * ratio)
        cy, cx = int(self.rng.integers(0, h)), int(self.rng.integers(0, w))
        y0, y1 = np.clip(cy - ch // 2, 0, h), np.clip(cy + ch // 2, 0, h)
        x0, x1 = np.clip(cx - cw // 2, 0, w), np.clip(cx + cw // 2, 0, w)
        return int(y0), int(y1), int(x0), int(x1)

    def __call__(self, x: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mixed clips and soft targets; ``self.last`` records mode, lam and box."""
        mode, lam = self._draw()
        box = None
        if mode == "mixup":
            x = x * lam + x.flip(0) * (1.0 - lam)
        elif mode == "cutmix":
            h, w = x.shape[-2:]
            y0, y1, x0, x1 = box = self._box(lam, h, w)
            x = x.clone()
            x[..., y0:y1, x0:x1] = x.flip(0)[..., y0:y1, x0:x1]
            lam = 1.0 - (y1 - y0) * (x1 - x0) / float(h * w)
        y1h = smooth_one_hot(target, self.num_classes, self.label_smoothing)
        soft = y1h * lam + y1h.flip(0) * (1.0 - lam)
        self.last = {"mode": mode, "lam": lam, "box": box}
        return x, soft

    def state_dict(self) -> dict:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]
