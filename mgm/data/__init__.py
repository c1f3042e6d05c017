"""Datasets: annotation formats, clip sampling, motion-consistent transforms, motion guidance.

    from mgm.data import build_dataset, collate, BadVideoLog
    ds = build_dataset(cfg, split="train", task="pretrain")

Names are imported lazily so that light modules (``mgm.data.annotations``, the CLI's
argument definitions) do not pull in torch.
"""
from __future__ import annotations

import importlib

_LAZY = {
    "build_dataset": "mgm.data.dataset",
    "VideoDataset": "mgm.data.dataset",
    "collate": "mgm.data.dataset",
    "BadVideoLog": "mgm.data.bad_videos",
    "load_annotations": "mgm.data.annotations",
    "Annotations": "mgm.data.annotations",
    "Sample": "mgm.data.annotations",
    "AnnotationError": "mgm.data.annotations",
}

__all__ = list(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mgm.data' has no attribute {name!r}")
