"""VideoMAE models: pretrainer (masked autoencoder), classifier, checkpoints. See docs/models.md.

Names are imported lazily (PEP 562), so importing ``mgm.models.bench`` for ``mgm --help``
does not import torch.
"""
import importlib

_EXPORTS = {
    "ARCHS": "mgm.models.options",
    "VideoMAEClassifier": "mgm.models.vit",
    "VideoMAEPretrainer": "mgm.models.vit",
    "VideoMAESpec": "mgm.models.spec",
    "build_classifier": "mgm.models.vit",
    "build_model": "mgm.models.vit",
    "build_pretrainer": "mgm.models.vit",
    "sinusoid_table": "mgm.models.layers",
    "CheckpointError": "mgm.models.checkpoint",
    "init_from": "mgm.models.checkpoint",
    "load_checkpoint": "mgm.models.checkpoint",
    "load_state_dict_any": "mgm.models.checkpoint",
    "save_checkpoint": "mgm.models.checkpoint",
    "save_official": "mgm.models.checkpoint",
    "export_hf": "mgm.models.hf_export",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mgm.models' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
