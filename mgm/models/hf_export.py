"""Export to a Hugging Face transformers VideoMAE directory.

    export_hf(model_or_checkpoint_path, "out_dir")
    transformers.VideoMAEForPreTraining.from_pretrained("out_dir")        # pretrainer
    transformers.VideoMAEForVideoClassification.from_pretrained("out_dir") # classifier

transformers takes ``pixel_values`` as (B, T, C, H, W); mgm takes (B, C, T, H, W).
Known difference: transformers builds ``decoder.norm`` and ``fc_norm`` with eps 1e-5, VideoMAE
(and mgm) with 1e-6; the exported config records mgm's value as ``mgm_head_norm_eps`` so mgm
reloads the directory exactly, while transformers' outputs differ by that eps alone.
Divided space-time attention and ``pool="time"`` classifiers have no transformers equivalent
and are refused.
"""
from __future__ import annotations

import json
from pathlib import Path

from torch import nn

from mgm.models.checkpoint import load_checkpoint, model_kind, unwrap
from mgm.models.formats import CheckpointError, hf_config_from_spec, ours_to_hf


def export_hf(source, out_dir, names: str = "4", id2label: dict | None = None) -> Path:
    """Write ``config.json`` + ``model.safetensors`` into ``out_dir``; returns it.

    source: a model or any checkpoint ``load_checkpoint`` reads. names: "4" (``q_bias``/``v_bias``:
    what transformers 4.x writes, and what 5.x still writes on disk, renaming on load; default) or
    "5" (5.x in-memory names ``query.bias``/``value.bias``, which 4.x cannot read).
    """
    from safetensors.torch import save_file

    model = unwrap(source) if isinstance(source, nn.Module) else load_checkpoint(source)
    kind = model_kind(model)
    spec = model.spec
    if spec.attention != "joint":
        raise CheckpointError("divided space-time attention has no transformers VideoMAE equivalent")
    if kind == "classifier" and spec.pool != "mean":
        raise CheckpointError(f"a classifier with pool={spec.pool!r} has no transformers VideoMAE equivalent "
                              "(it mean-pools all tokens); export the pretrained encoder instead")
    if kind == "classifier" and spec.num_classes == 0:
        raise CheckpointError("a classifier without a head (num_classes=0) cannot be exported as VideoMAEForVideoClassification")
    sd = ours_to_hf({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, names)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg = hf_config_from_spec(spec, kind, id2label)
    (out / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    save_file(sd, str(out / "model.safetensors"), metadata={"format": "pt"})
    return out
