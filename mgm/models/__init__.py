"""VideoMAE models: pretrainer (masked autoencoder), classifier, checkpoints. See docs/models.md."""
from mgm.models.vit import (
    ARCHS,
    VideoMAEClassifier,
    VideoMAEPretrainer,
    VideoMAESpec,
    build_classifier,
    build_model,
    build_pretrainer,
    sinusoid_table,
)
from mgm.models.checkpoint import (
    CheckpointError,
    init_from,
    load_checkpoint,
    load_state_dict_any,
    save_checkpoint,
)

__all__ = [
    "ARCHS",
    "CheckpointError",
    "VideoMAEClassifier",
    "VideoMAEPretrainer",
    "VideoMAESpec",
    "build_classifier",
    "build_model",
    "build_pretrainer",
    "init_from",
    "load_checkpoint",
    "load_state_dict_any",
    "save_checkpoint",
    "sinusoid_table",
]
