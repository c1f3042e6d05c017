"""Subsets of an annotation list: a few labelled clips per class (data-efficiency studies,
few-shot splits) or a subset of the classes (Mini-Kinetics-200 from Kinetics-400).

    from mgm.data.annotations import load_annotations
    from mgm.data.subset import per_class, write_list
    ann = load_annotations("train.txt")
    write_list(per_class(ann.samples, k=4, seed=0), "train_4shot.txt")

Deterministic in the seed; the first ``k`` of a class for seed s are the first ``k`` of a
longer draw with the same seed, so a 4-shot split is contained in the 16-shot split of the
same seed.
"""
from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

import numpy as np

from mgm.data.annotations import Sample
from mgm.errors import UserError


def per_class(samples: list[Sample], k: int, seed: int = 0, classes: list[int] | None = None) -> list[Sample]:
    """``k`` samples of every class (or of ``classes``), drawn with ``seed``, in list order."""
    by_label: dict[int, list[int]] = defaultdict(list)
    for i, s in enumerate(samples):
        by_label[int(s.label)].append(i)
    labels = sorted(by_label) if classes is None else list(classes)
    keep = []
    for label in labels:
        idx = by_label.get(label, [])
        if len(idx) < k:
            raise UserError(f"class {label} has {len(idx)} samples, fewer than the {k} asked for")
        order = np.random.default_rng([seed, label]).permutation(len(idx))
        keep += [idx[j] for j in order[:k]]
    return [samples[i] for i in sorted(keep)]


def write_list(samples: list[Sample], path: str | os.PathLike) -> Path:
    """A VideoMAE list (``path label`` per line, absolute paths) of ``samples``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{Path(s.path).resolve()} {s.label}\n" for s in samples))
    return path
