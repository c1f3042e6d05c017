"""What the Trainer's DataLoader reads, in which order: a distributed sampler with repeated
augmentation that can resume in the middle of an epoch, the stream of its epochs, and the
dataset view that decodes the stream's items.

Order of epoch ``e``: a permutation of ``range(n)`` drawn from ``seed + e`` (or the identity
without shuffling); with ``repeats = r`` sample ``i`` becomes the ``r`` adjacent item indices
``i*r, i*r + 1, ..., i*r + r - 1`` of ``EpochItems`` (copy ``c`` of sample ``i`` is item
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

``EpochStream`` chains the epochs into one iterable of ``(epoch, item)`` pairs, each epoch cut to
the samples its optimiser steps use, and ``EpochItems`` reads a pair as copy ``item % r`` of
sample ``item // r`` drawn in ``epoch``. One DataLoader iterator then serves a whole run: while the
last steps of an epoch train, the workers already decode the first batches of the next one. With
an iterator per epoch, every epoch began by waiting for one worker to decode a whole batch alone
(10-14 s at batch 128 on a 16-core H200 host, against 0.23 s for a step; benchmarks/README.md).
"""
from __future__ import annotations

import math

import torch
from torch.utils.data import Sampler

from mgm.errors import UserError


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

    def epoch_order(self, epoch: int | None = None) -> list[int]:
        """The global (all ranks) order of epoch ``epoch`` (default: the current), padded/truncated."""
        if self.shuffle:
            g = torch.Generator()
            g.manual_seed(self.seed + (self.epoch if epoch is None else epoch))
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        if self.repeats > 1:
            order = [i * self.repeats + c for i in order for c in range(self.repeats)]
        if len(order) < self.total_size:
            pad = self.total_size - len(order)
            order = order + (order * math.ceil(pad / len(order)))[:pad]
        return order[: self.total_size]

    def indices(self, epoch: int | None = None) -> list[int]:
        """This rank's share of epoch ``epoch`` (default: the current)."""
        return self.epoch_order(epoch)[self.rank: self.total_size: self.num_replicas]

    def __iter__(self):
        return iter(self.indices()[self.start:])

    def __len__(self) -> int:
        return max(0, self.num_samples - self.start)

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "start": self.start, "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        self.epoch = int(state["epoch"])
        self.start = int(state["start"])


class EpochStream(Sampler[tuple[int, int]]):
    """``(epoch, item)`` for epochs ``sampler.epoch .. epochs - 1``: of each epoch the first
    ``per_epoch`` of this rank's items (whole optimiser steps: no batch spans two epochs), from
    ``sampler.start`` in the first. Read when iterated, so set the sampler's position first."""

    def __init__(self, sampler: ResumableDistributedSampler, per_epoch: int, epochs: int):
        self.sampler, self.per_epoch, self.epochs = sampler, per_epoch, epochs

    def __iter__(self):
        first, start = self.sampler.epoch, self.sampler.start
        for epoch in range(first, self.epochs):
            for item in self.sampler.indices(epoch)[start if epoch == first else 0: self.per_epoch]:
                yield epoch, item

    def __len__(self) -> int:
        epochs = self.epochs - self.sampler.epoch
        if epochs <= 0:
            return 0
        return epochs * self.per_epoch - min(self.sampler.start, self.per_epoch)


class EpochItems(torch.utils.data.Dataset):
    """Item ``(epoch, j)``: copy ``c = j % r`` of sample ``j // r`` as drawn in ``epoch``
    (repeated augmentation: each copy its own draw). A dataset that draws per epoch is read with
    ``dataset.item(index, epoch, copy)``; one with only ``set_epoch`` gets it before each item (in
    the worker's own copy of the dataset: per item is right there, unless ``set_epoch`` writes to
    memory the workers share); one with neither (cached features) with ``dataset[index]``. Only
    the first kind can give different copies, so only it takes ``repeats`` > 1."""

    def __init__(self, dataset, repeats: int = 1):
        self.dataset = dataset
        self.repeats = max(1, int(repeats))
        if self.repeats > 1 and not hasattr(dataset, "item"):
            raise UserError(f"repeated augmentation ({self.repeats} copies) needs a dataset that draws "
                           f"each copy apart, with item(index, epoch, copy); {type(dataset).__name__} has none")

    def __len__(self) -> int:
        return len(self.dataset) * self.repeats

    def __getitem__(self, pair: tuple[int, int]):
        epoch, j = pair
        i, c = divmod(j, self.repeats)
        if hasattr(self.dataset, "item"):
            return self.dataset.item(i, epoch, c)
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)
        return self.dataset[i]
