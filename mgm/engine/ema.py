"""An exponential moving average of the weights (``optim.ema``): what a run hands on when set.

With ``optim.ema = d > 0`` the trainer keeps, beside the weights it trains, their average
``A ← d·A + (1 − d)·W`` after every optimiser step that updated them (the first copies ``W``;
skipped non-finite steps do not count). When the run ends the average replaces the trained
weights in the model, so everything that happens after the loop — ``pretrained.safetensors``, a
fine-tune's test, the final weights — uses it; checkpoints keep the trained weights (the run
continues from them exactly) and the average beside them (``ema.safetensors``).

The average spans about ``1 / (1 − d)`` steps, and what came before weighs ``d^steps``: choose
``d`` so that ``1 / (1 − d)`` is well below the run's steps (0.998 for 2000 steps: the last ~500
steps carry 63 % of it, the first half of the run 13.5 %).

Built on ``torch.optim.swa_utils.AveragedModel``; buffers (the fixed position tables) follow the
trained model.
"""
from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from mgm.models.checkpoint import unwrap

FILE = "ema.safetensors"


class WeightAverage:
    def __init__(self, model: torch.nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"optim.ema must be in (0, 1), got {decay}")
        self.decay = decay
        self.average = AveragedModel(unwrap(model), multi_avg_fn=get_ema_multi_avg_fn(decay))

    @property
    def updates(self) -> int:
        return int(self.average.n_averaged)

    def update(self, model: torch.nn.Module) -> None:
        self.average.update_parameters(unwrap(model))

    def copy_to(self, model: torch.nn.Module) -> None:
        """Put the average into ``model`` (its parameters; buffers are the model's own)."""
        unwrap(model).load_state_dict(self.average.module.state_dict(), strict=True)

    def save(self, d: Path) -> None:
        """Write the average into checkpoint ``d`` (its update count goes in the trainer state)."""
        sd = {k: v.detach().to("cpu").contiguous() for k, v in self.average.module.state_dict().items()}
        save_file(sd, str(d / FILE), metadata={"ema_decay": str(self.decay), "ema_updates": str(self.updates)})

    def load(self, d: Path, updates: int) -> None:
        """Read the average back from checkpoint ``d``; ``updates`` from its trainer state."""
        self.average.module.load_state_dict(load_file(str(d / FILE)), strict=True)
        self.average.n_averaged.fill_(updates)
