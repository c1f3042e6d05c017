"""A distributed sampler with repeated augmentation that can resume in the middle of an epoch.

Order of epoch ``e``: a permutation of ``range(n)`` drawn from ``seed + e`` (or the identity
without shuffling); with ``repeats = r`` sample ``i`` becomes the ``r`` adjacent item indices
``i*r, i*r + 1, ..., i*r + r - 1`` of ``RepeatedAugDataset`` (copy ``c`` of sample ``i`` is item
``i*r + c`` and gets its own random augmentation: the repeated augmentation of Hoffer et al. /
VideoMAE's ``num_sample``; until 2026-12-04 the sampler gave ``i`` itself ``r`` times, so the
wrapper read identical copies of sample ``i // r`` and the upper half of the set was never
trained on with ``repeats = 2``); the list is padded by wrapping
around to a multiple of the world size (or truncated with ``drop_last``) and rank ``k`` takes
positions ``k, k + W, k + 2W, ...``.

Consequence used by the tests: with per-process batch ``b``, global step ``s`` sees positions
``[s*b*W, (s+1)*b*W)`` of the epoch order whatever ``W`` is — one process with batch ``2b`` and
two with ``b`` train on the same clips.

``set_start(k)`` skips the first ``k`` samples of this rank's share (mid-epoch resume).
"""
from __future__ import annotations

import math

import torch
from torch.utils.data import Sampler


class ResumableDistributedSampler(Sampler[int]):
    def __init__(self, n: int, num_replicas: int = 1, rank: int = 0, shuffle: bool = True,
                 seed: int = 0, repeats: int = 1, drop_last: bool = False):
        if n <= 0:
            raise ValueError("the dataset is empty")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} outside world of {num_replicas}")
        self.n = n
        self.num_replicas = num_replicas
        self.rank = rank
        self.shuffle = shuffle
        self.seed = seed
        self.repeats = max(1, int(repeats))
        self.drop_last = drop_last
        self.epoch = 0
        self.start = 0
        total = n * self.repeats
        if drop_last:
            self.num_samples = total // num_replicas
        else:
            self.num_samples = math.ceil(total / num_replicas)
        self.total_size = self.num_samples * num_replicas

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        self.start = 0

    def set_start(self, start: int) -> None:
        """Skip the first ``start`` samples of this rank's share of the current epoch."""
        self.start = max(0, int(start))

    def epoch_order(self) -> list[int]:
        """The global (all ranks) order of the current epoch, padded/truncated."""
        if self.shuffle:
            g = torch.Generator()
            g.manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        if self.repeats > 1:
            order = [i * self.repeats + c for i in order for c in range(self.repeats)]
        if len(order) < self.total_size:
            pad = self.total_size - len(order)
            order = order + (order * math.ceil(pad / len(order)))[:pad]
        return order[: self.total_size]

    def indices(self) -> list[int]:
        return self.epoch_order()[self.rank: self.total_size: self.num_replicas]

    def __iter__(self):
        return iter(self.indices()[self.start:])

    def __len__(self) -> int:
        return max(0, self.num_samples - self.start)

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "start": self.start, "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        self.epoch = int(state["epoch"])
        self.start = int(state["start"])
