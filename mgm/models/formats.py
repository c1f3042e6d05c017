"""Weight names and model specs of the other VideoMAE layouts, converted to and from ours.

* official VideoMAE (MCG-NJU/VideoMAE) ``.pth`` names: pretraining names are ours already,
  fine-tuned ones lack the ``encoder.`` prefix; the architecture is read off the tensor shapes;
* Hugging Face transformers VideoMAE names, 4.x (``attention.attention.q_bias``) and 5.x
  (``attention.attention.query.bias``), with separate query/key/value weights (ours: one fused
  ``qkv``), and the ``config.json`` <-> ``VideoMAESpec`` mapping.

Pure dictionary work on tensors already in memory; reading and writing files is
``mgm.models.checkpoint``'s job.
"""
from __future__ import annotations

import re

import torch

from mgm.errors import UserError
from mgm.models.layers import sinusoid_table
from mgm.models.options import ARCHS
from mgm.models.spec import VideoMAESpec

# heads for a width when a file does not say (VideoMAE's choices; 96 is our vit_tiny decoder)
HEADS_FOR_DIM = {96: 3, 192: 3, 384: 6, 512: 8, 640: 8, 768: 12, 1024: 16, 1280: 16, 1408: 16}
HF_HEAD_NORM_EPS = 1e-5  # transformers builds decoder.norm and fc_norm with nn.LayerNorm's default eps


class CheckpointError(UserError, ValueError):
    """A checkpoint that cannot be read or does not fit; the message says why."""


# ---------------------------------------------------------------- HF names <-> ours

_HF_BLOCK = [
    ("layernorm_before.", "norm1."),
    ("layernorm_after.", "norm2."),
    ("attention.output.dense.", "attn.proj."),
    ("intermediate.dense.", "mlp.fc1."),
    ("output.dense.", "mlp.fc2."),
]
_HF_TOP = [
    ("videomae.embeddings.patch_embeddings.projection.", "encoder.patch_embed.proj."),
    ("videomae.layernorm.", "encoder.norm."),
    ("classifier.", "head."),
    ("fc_norm.", "fc_norm."),
    ("decoder.norm.", "decoder.norm."),
    ("decoder.head.", "decoder.head."),
    ("encoder_to_decoder.", "encoder_to_decoder."),
    ("mask_token", "mask_token"),
]


def is_hf_state_dict(sd: dict) -> bool:
    return any(k.startswith(("videomae.", "embeddings.patch_embeddings")) for k in sd)


def hf_to_ours(sd: dict) -> dict:
    """transformers VideoMAE names (4.x or 5.x) -> ours; q/k/v weights fused into ``qkv``."""
    if any(k.startswith("embeddings.") for k in sd):  # a bare VideoMAEModel
        sd = {("videomae." + k if k.startswith(("embeddings.", "encoder.", "layernorm.")) else k): v for k, v in sd.items()}
    out, qkv = {}, {}
    for k, v in sd.items():
        m = re.match(r"(videomae\.encoder\.layer|decoder\.decoder_layers)\.(\d+)\.(.+)$", k)
        if m:
            base = ("encoder.blocks." if m.group(1).startswith("videomae") else "decoder.blocks.") + m.group(2) + "."
            rest = m.group(3)
            a = re.match(r"attention\.attention\.(query|key|value|q_bias|v_bias)(?:\.(weight|bias))?$", rest)
            if a:
                name, wb = a.group(1), a.group(2)
                if wb == "weight":
                    qkv.setdefault(base, {})[name] = v
                elif name in ("query", "q_bias"):
                    out[base + "attn.q_bias"] = v
                elif name in ("value", "v_bias"):
                    out[base + "attn.v_bias"] = v
                else:
                    raise CheckpointError(f"unexpected key {k}: VideoMAE has no key bias")
                continue
            for hf, ours in _HF_BLOCK:
                if rest.startswith(hf):
                    out[base + ours + rest[len(hf):]] = v
                    break
            else:
                raise CheckpointError(f"unknown transformers VideoMAE key {k}")
            continue
        for hf, ours in _HF_TOP:
            if k.startswith(hf):
                out[ours + k[len(hf):]] = v
                break
        else:
            raise CheckpointError(f"unknown transformers VideoMAE key {k}")
    for base, parts in qkv.items():
        if set(parts) != {"query", "key", "value"}:
            raise CheckpointError(f"{base}: incomplete query/key/value weights")
        out[base + "attn.qkv.weight"] = torch.cat([parts["query"], parts["key"], parts["value"]], 0)
    return out


def ours_to_hf(sd: dict, names: str = "4") -> dict:
    """Our names -> transformers VideoMAE names; ``names="4"`` writes 4.x ``q_bias``/``v_bias``."""
    if names not in ("4", "5"):
        raise ValueError("names must be '4' or '5'")
    out = {}
    for k, v in sd.items():
        m = re.match(r"(encoder|decoder)\.blocks\.(\d+)\.(.+)$", k)
        if m:
            base = ("videomae.encoder.layer." if m.group(1) == "encoder" else "decoder.decoder_layers.") + m.group(2) + "."
            rest = m.group(3)
            if rest == "attn.qkv.weight":
                q, kk, vv = v.chunk(3, 0)
                out[base + "attention.attention.query.weight"] = q
                out[base + "attention.attention.key.weight"] = kk
                out[base + "attention.attention.value.weight"] = vv
                continue
            if rest in ("attn.q_bias", "attn.v_bias"):
                which = rest[5]
                out[base + ("attention.attention.%s_bias" % which if names == "4"
                            else "attention.attention.%s.bias" % ("query" if which == "q" else "value"))] = v
                continue
            if rest.startswith(("temporal_", )):
                raise CheckpointError("divided space-time attention has no transformers VideoMAE equivalent")
            for hf, ours in _HF_BLOCK:
                if rest.startswith(ours):
                    out[base + hf + rest[len(ours):]] = v
                    break
            else:
                raise CheckpointError(f"cannot name {k} for transformers")
            continue
        for hf, ours in _HF_TOP:
            if k.startswith(ours):
                out[hf + k[len(ours):]] = v
                break
        else:
            raise CheckpointError(f"cannot name {k} for transformers")
    return out


def spec_from_hf_config(cfg: dict) -> tuple[VideoMAESpec, str]:
    """(spec, kind) from a transformers VideoMAEConfig dict."""
    if cfg.get("model_type") not in (None, "videomae"):
        raise CheckpointError(f"config.json is for model_type {cfg.get('model_type')!r}, not videomae")
    if cfg.get("hidden_act", "gelu") != "gelu":
        raise CheckpointError(f"hidden_act {cfg['hidden_act']!r} is not VideoMAE's exact GELU")

    def square(v, what):
        if isinstance(v, (list, tuple)):
            if len(set(v)) != 1:
                raise CheckpointError(f"non-square {what} {v} is not supported")
            v = v[0]
        return int(v)

    hidden = cfg.get("hidden_size", 768)
    inter = cfg.get("intermediate_size", 3072)
    dhidden = cfg.get("decoder_hidden_size", 384)
    dinter = cfg.get("decoder_intermediate_size", 1536)
    if inter * dhidden != dinter * hidden:
        raise CheckpointError(f"encoder and decoder MLP ratios differ ({inter}/{hidden} vs {dinter}/{dhidden})")
    archs = cfg.get("architectures") or []
    kind = "classifier" if any("Classification" in a for a in archs) else (
        "pretrainer" if any("PreTraining" in a for a in archs) else "encoder")
    use_mean_pooling = cfg.get("use_mean_pooling", True)
    if kind == "classifier" and not use_mean_pooling:
        raise CheckpointError("a VideoMAE classifier without mean pooling (first-token head) is not supported")
    num_classes = len(cfg["id2label"]) if cfg.get("id2label") else cfg.get("num_labels", 0)
    depth, heads = cfg.get("num_hidden_layers", 12), cfg.get("num_attention_heads", 12)
    arch = next((a for a, v in ARCHS.items() if v[:3] == (hidden, depth, heads)), "custom")
    spec = VideoMAESpec(
        arch=arch,
        num_frames=cfg.get("num_frames", 16),
        img_size=square(cfg.get("image_size", 224), "image_size"),
        tubelet=cfg.get("tubelet_size", 2),
        patch=square(cfg.get("patch_size", 16), "patch_size"),
        decoder_depth=cfg.get("decoder_num_hidden_layers", 4),
        decoder_dim=dhidden,
        decoder_heads=cfg.get("decoder_num_attention_heads", 6),
        norm_pix_loss=cfg.get("norm_pix_loss", True),
        embed_dim=hidden,
        depth=depth,
        num_heads=heads,
        mlp_ratio=inter / hidden,
        in_chans=cfg.get("num_channels", 3),
        qv_bias=cfg.get("qv_bias", cfg.get("qkv_bias", True)),
        norm_eps=cfg.get("layer_norm_eps", 1e-12),
        head_norm_eps=cfg.get("mgm_head_norm_eps", HF_HEAD_NORM_EPS),
        encoder_norm=not use_mean_pooling,
        num_classes=num_classes if kind == "classifier" else 0,
    )
    return spec, kind


def hf_config_from_spec(spec: VideoMAESpec, kind: str, id2label: dict | None = None) -> dict:
    cfg = {
        "architectures": ["VideoMAEForPreTraining" if kind == "pretrainer" else "VideoMAEForVideoClassification"],
        "model_type": "videomae",
        "image_size": spec.img_size,
        "patch_size": spec.patch,
        "num_channels": spec.in_chans,
        "num_frames": spec.num_frames,
        "tubelet_size": spec.tubelet,
        "hidden_size": spec.embed_dim,
        "num_hidden_layers": spec.depth,
        "num_attention_heads": spec.num_heads,
        "intermediate_size": int(spec.embed_dim * spec.mlp_ratio),
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
        "initializer_range": 0.02,
        "layer_norm_eps": spec.norm_eps,
        "qv_bias": spec.qv_bias,
        "qkv_bias": spec.qv_bias,  # transformers 4.x's name for the same switch
        "use_mean_pooling": (not spec.encoder_norm) if kind == "pretrainer" else True,
        "decoder_num_attention_heads": spec.decoder_heads,
        "decoder_hidden_size": spec.decoder_dim,
        "decoder_num_hidden_layers": spec.decoder_depth,
        "decoder_intermediate_size": int(spec.decoder_dim * spec.mlp_ratio),
        "norm_pix_loss": spec.norm_pix_loss,
        # transformers ignores this (its decoder.norm / fc_norm use eps 1e-5); mgm reads it back
        "mgm_head_norm_eps": spec.head_norm_eps,
    }
    if kind == "classifier":
        n = spec.num_classes
        id2label = id2label or {i: f"LABEL_{i}" for i in range(n)}
        cfg["id2label"] = {str(k): v for k, v in id2label.items()}
        cfg["label2id"] = {v: int(k) for k, v in id2label.items()}
    return cfg


# ---------------------------------------------------------------- official names <-> ours


def official_to_ours(sd: dict) -> dict:
    """VideoMAE names -> ours. Pretraining names are ours already; fine-tuned ones gain ``encoder.``."""
    out = {}
    for k, v in sd.items():
        if k in ("pos_embed", "encoder.pos_embed", "decoder.pos_embed", "cls_token"):
            if k == "cls_token":
                raise CheckpointError("checkpoint has a cls_token; VideoMAE (mean pooling) has none")
            continue  # a learnable table is checked in check_pos_embed
        if re.search(r"\.gamma_[12]$", k):
            raise CheckpointError(f"{k}: layer scale (init_values > 0) is not supported")
        if k.startswith(("patch_embed.", "blocks.")):
            out["encoder." + k] = v
        elif k.startswith("norm."):
            raise CheckpointError("fine-tuned checkpoint without mean pooling (final 'norm', first-token head) is not supported")
        else:
            out[k] = v
    return out


def ours_to_official(sd: dict, kind: str) -> dict:
    if kind == "pretrainer":
        return dict(sd)
    return {(k[len("encoder."):] if k.startswith("encoder.") else k): v for k, v in sd.items()}


def check_pos_embed(sd: dict) -> None:
    for k in ("pos_embed", "encoder.pos_embed"):
        t = sd.get(k)
        if t is None:
            continue
        t = t.reshape(-1, t.shape[-1]).float()
        ref = sinusoid_table(t.shape[0], t.shape[1])
        if t.shape != ref.shape or (t - ref).abs().max() > 1e-4:
            raise CheckpointError(f"{k} is a learned position table; only VideoMAE's fixed sinusoid table is supported")


def spec_from_official(sd: dict, args: dict, kind: str, num_heads: int | None = None,
                       decoder_heads: int | None = None) -> VideoMAESpec:
    """Architecture from VideoMAE-named weights; head counts are not in the file: VideoMAE's
    for its widths, else pass ``num_heads`` / ``decoder_heads``."""
    pe = sd.get("encoder.patch_embed.proj.weight")
    if pe is None:
        raise CheckpointError("no patch embedding (encoder.patch_embed.proj.weight / patch_embed.proj.weight) found")
    dim, in_chans, tubelet, patch, _ = pe.shape
    depth = 1 + max(int(k.split(".")[2]) for k in sd if k.startswith("encoder.blocks."))
    mlp_ratio = sd["encoder.blocks.0.mlp.fc1.weight"].shape[0] / dim
    num_heads = num_heads or HEADS_FOR_DIM.get(dim)
    if num_heads is None:
        raise CheckpointError(f"cannot tell the head count for width {dim}: pass num_heads=")
    kw = dict(
        embed_dim=dim, depth=depth, num_heads=num_heads, mlp_ratio=mlp_ratio,
        in_chans=in_chans, tubelet=tubelet, patch=patch,
        qv_bias="encoder.blocks.0.attn.q_bias" in sd,
        num_frames=int(args.get("num_frames", 16)),
        img_size=int(args.get("input_size", 224)),
        norm_pix_loss=bool(args.get("normlize_target", True)),
    )
    if any(k.startswith("encoder.blocks.0.temporal_") for k in sd):
        kw["attention"] = "divided"
    if kind == "pretrainer":
        ddim = sd["decoder.norm.weight"].shape[0]
        decoder_heads = decoder_heads or HEADS_FOR_DIM.get(ddim)
        if decoder_heads is None:
            raise CheckpointError(f"cannot tell the decoder head count for width {ddim}: pass decoder_heads=")
        kw.update(
            decoder_dim=ddim, decoder_heads=decoder_heads,
            decoder_depth=1 + max(int(k.split(".")[2]) for k in sd if k.startswith("decoder.blocks.")),
            encoder_norm="encoder.norm.weight" in sd,
        )
    else:
        kw["num_classes"] = sd["head.weight"].shape[0] if "head.weight" in sd else 0
    arch = next((a for a, v in ARCHS.items() if v[:3] == (dim, depth, kw["num_heads"])), "custom")
    return VideoMAESpec(arch=arch, **kw)
