"""Checkpoints in, checkpoints out.

``load_checkpoint(path)`` reads, and returns the right model (in eval mode) for:

* the project's own checkpoints: ``X.safetensors`` whose header metadata (and the ``X.json``
  sidecar, or ``X.yaml``) carries the model spec;
* official VideoMAE ``.pth`` files (MCG-NJU/VideoMAE): weights at the top level or under
  ``model`` / ``module`` / ``state_dict``, ``module.`` prefixes stripped, pretraining
  (``encoder.* decoder.* encoder_to_decoder mask_token``) and fine-tuned
  (``patch_embed.* blocks.* fc_norm head``) variants; the ``args`` namespace saved with them
  (if any) supplies frame count, input size, tubelet and ``normlize_target``;
* Hugging Face VideoMAE directories: ``config.json`` + ``model.safetensors`` (also sharded) or
  ``pytorch_model.bin``, with transformers 5.x names (``attention.attention.query.bias``) or
  4.x names (``attention.attention.q_bias``).

Pickled files are read with ``torch.load(weights_only=True)`` (``argparse.Namespace`` allowed);
anything that needs other code is refused with a ``CheckpointError``. Position tables are fixed
sinusoids and never read from a file: they are rebuilt for the ``num_frames`` / ``img_size`` you
ask for.
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import re
from pathlib import Path

import torch
from torch import nn

from mgm.models.vit import (
    ARCHS,
    VideoMAEClassifier,
    VideoMAEPretrainer,
    VideoMAESpec,
)

FORMAT = "mgm.videomae"
FORMAT_VERSION = 1
# heads for a width when a file does not say (VideoMAE's choices; 96 is our vit_tiny decoder)
HEADS_FOR_DIM = {96: 3, 192: 3, 384: 6, 512: 8, 640: 8, 768: 12, 1024: 16, 1280: 16, 1408: 16}
HF_HEAD_NORM_EPS = 1e-5  # transformers builds decoder.norm and fc_norm with nn.LayerNorm's default eps


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit; the message says why."""


# ---------------------------------------------------------------- small helpers


def unwrap(model: nn.Module) -> nn.Module:
    """The model under torch.compile / DDP wrappers."""
    while True:
        inner = getattr(model, "_orig_mod", None) or getattr(model, "module", None)
        if not isinstance(inner, nn.Module):
            return model
        model = inner


def _kind_of(model: nn.Module) -> str:
    model = unwrap(model)
    if isinstance(model, VideoMAEPretrainer):
        return "pretrainer"
    if isinstance(model, VideoMAEClassifier):
        return "classifier"
    raise TypeError(f"expected a VideoMAEPretrainer or VideoMAEClassifier, got {type(model).__name__}")


def _torch_load(path: Path):
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"{path}: refusing to unpickle it: the file needs code beyond tensors and plain "
            f"containers, which weights_only=True does not run ({str(e).splitlines()[0]}). "
            "If you trust it, re-save its state_dict with torch.save({'model': sd}, ...) and load that."
        ) from None
    except (RuntimeError, OSError, EOFError) as e:
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({e})") from None


def _state_dict_from_obj(obj, path) -> tuple[dict, dict]:
    """(state_dict, args as dict) from a loaded pickle."""
    args = {}
    if isinstance(obj, dict) and isinstance(obj.get("args"), argparse.Namespace):
        args = vars(obj["args"])
    elif isinstance(obj, dict) and isinstance(obj.get("args"), dict):
        args = obj["args"]
    sd = obj
    for _ in range(3):
        if not isinstance(sd, dict):
            break
        if all(isinstance(v, torch.Tensor) for v in sd.values()) and sd:
            break
        for key in ("model", "module", "state_dict", "model_state"):
            if isinstance(sd.get(key), dict):
                sd = sd[key]
                break
        else:
            break
    if not isinstance(sd, dict) or not sd or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise CheckpointError(f"{path}: found no tensor state dict (looked at the top level, 'model', 'module', 'state_dict')")
    out = {}
    for k, v in sd.items():
        while k.startswith("module.") or k.startswith("_orig_mod."):
            k = k.split(".", 1)[1]
        out[k] = v
    return out, args


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
            continue  # a learnable table is checked in _check_pos_embed
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


def _check_pos_embed(sd: dict) -> None:
    from mgm.models.vit import sinusoid_table

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


# ---------------------------------------------------------------- reading any format


def _kind_from_keys(sd: dict) -> str:
    if any(k.startswith("decoder.") for k in sd):
        return "pretrainer"
    if "head.weight" in sd or "fc_norm.weight" in sd:
        return "classifier"
    return "encoder"


def _read_safetensors(path: Path) -> tuple[dict, dict]:
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    return load_file(str(path)), meta


def _read_sidecar(path: Path) -> dict | None:
    for suffix in (".json", ".yaml", ".yml"):
        side = path.with_suffix(suffix)
        if side.exists():
            text = side.read_text()
            if suffix == ".json":
                return json.loads(text)
            import yaml

            return yaml.safe_load(text)
    return None


def _read_hf_dir(d: Path) -> tuple[dict, dict]:
    cfg = json.loads((d / "config.json").read_text())
    if (d / "model.safetensors").exists():
        sd, _ = _read_safetensors(d / "model.safetensors")
    elif (d / "model.safetensors.index.json").exists():
        from safetensors.torch import load_file

        index = json.loads((d / "model.safetensors.index.json").read_text())
        sd = {}
        for shard in sorted(set(index["weight_map"].values())):
            sd.update(load_file(str(d / shard)))
    elif (d / "pytorch_model.bin").exists():
        sd, _ = _state_dict_from_obj(_torch_load(d / "pytorch_model.bin"), d / "pytorch_model.bin")
    else:
        raise CheckpointError(f"{d}: has config.json but no model.safetensors or pytorch_model.bin")
    return sd, cfg


def load_state_dict_any(path: str | os.PathLike, num_frames: int | None = None,
                        img_size: int | None = None, num_heads: int | None = None,
                        decoder_heads: int | None = None) -> tuple[dict, VideoMAESpec, str, dict]:
    """Read any supported checkpoint: (state_dict in our names, spec, kind, info).

    kind is "pretrainer", "classifier" or "encoder" (encoder weights only). info has "format"
    ("mgm", "official", "hf"), and for our checkpoints "config" and "extra".
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file or directory")
    info: dict = {"path": str(path)}
    if path.is_dir():
        if (path / "config.json").exists():
            sd, cfg = _read_hf_dir(path)
            spec, kind = spec_from_hf_config(cfg)
            sd = hf_to_ours(sd)
            info.update(format="hf", hf_config=cfg)
            if kind == "encoder":
                kind = _kind_from_keys(sd)
        else:
            cands = sorted(path.glob("*.safetensors"))
            if len(cands) != 1:
                raise CheckpointError(f"{path}: a directory needs config.json (Hugging Face) or one .safetensors file")
            return load_state_dict_any(cands[0], num_frames, img_size, num_heads, decoder_heads)
    elif path.suffix == ".safetensors":
        sd, meta = _read_safetensors(path)
        side = _read_sidecar(path)
        model_meta = None
        if meta.get("format") == FORMAT:
            model_meta = {"kind": meta["kind"], "model": json.loads(meta["spec"])}
        if side and side.get("format") == FORMAT:
            info.update(config=side.get("config"), extra=side.get("extra"))
            model_meta = model_meta or side
        if model_meta is not None:
            spec = VideoMAESpec.from_dict(model_meta["model"])
            kind = model_meta["kind"]
            info["format"] = "mgm"
        elif is_hf_state_dict(sd) and (path.parent / "config.json").exists():
            return load_state_dict_any(path.parent, num_frames, img_size, num_heads, decoder_heads)
        else:
            _check_pos_embed(sd)
            sd = official_to_ours(sd)
            kind = _kind_from_keys(sd)
            spec = spec_from_official(sd, {}, kind, num_heads, decoder_heads)
            info["format"] = "official"
    else:
        sd, args = _state_dict_from_obj(_torch_load(path), path)
        if is_hf_state_dict(sd):
            if not (path.parent / "config.json").exists():
                raise CheckpointError(f"{path}: transformers VideoMAE weights need their config.json alongside")
            return load_state_dict_any(path.parent, num_frames, img_size, num_heads, decoder_heads)
        _check_pos_embed(sd)
        sd = official_to_ours(sd)
        kind = _kind_from_keys(sd)
        spec = spec_from_official(sd, args, kind, num_heads, decoder_heads)
        info.update(format="official", args={k: v for k, v in args.items() if isinstance(v, (int, float, str, bool))})
    if num_frames is not None:
        spec.num_frames = int(num_frames)
    if img_size is not None:
        spec.img_size = int(img_size)
    spec.__post_init__()  # re-validate the changed grid
    return sd, spec, kind, info


# ---------------------------------------------------------------- public API


def _fill(model: nn.Module, sd: dict, strict_prefixes: tuple[str, ...] | None, what: str) -> dict:
    """Load ``sd`` into ``model``; every model key under ``strict_prefixes`` (all if None) must be present."""
    own = model.state_dict()
    missing = [k for k in own if k not in sd and (strict_prefixes is None or k.startswith(strict_prefixes))]
    if missing:
        raise CheckpointError(f"{what}: missing {len(missing)} weights, e.g. {', '.join(missing[:5])}")
    bad = [f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in sd.items() if k in own and v.shape != own[k].shape]
    if bad:
        raise CheckpointError(f"{what}: shape mismatch: {'; '.join(bad[:5])}")
    unused = sorted(k for k in sd if k not in own)
    model.load_state_dict({k: v for k, v in sd.items() if k in own}, strict=False)
    return {"unused": unused, "initialised": sorted(k for k in own if k not in sd)}


def load_checkpoint(path, num_frames: int | None = None, img_size: int | None = None,
                    num_classes: int | None = None, kind: str | None = None, **spec_overrides) -> nn.Module:
    """Load any supported checkpoint as the right model, in eval mode.

    kind: None (what the file holds), "pretrainer", or "classifier". A pretraining checkpoint
    (or encoder-only weights) loaded with ``kind="classifier"`` gives a classifier whose encoder
    comes from the file and whose ``fc_norm`` / ``head`` (``num_classes`` outputs, default 0 =
    features only) are freshly initialised, as VideoMAE fine-tuning does (the pretraining
    ``encoder.norm`` is dropped). A classifier loaded with another ``num_classes`` keeps its
    encoder and ``fc_norm`` and gets a fresh head. ``spec_overrides`` are other
    ``VideoMAESpec`` fields for the new model (e.g. ``drop_path=0.1``, ``grad_checkpointing=True``,
    ``fc_drop=0.5``). ``model.checkpoint_info`` says what was read and what was initialised.
    """
    sd, spec, file_kind, info = load_state_dict_any(
        path, num_frames, img_size, spec_overrides.get("num_heads"), spec_overrides.get("decoder_heads"))
    kind = kind or ("classifier" if file_kind == "encoder" else file_kind)
    if kind not in ("pretrainer", "classifier"):
        raise ValueError(f"kind must be 'pretrainer' or 'classifier', got {kind!r}")
    for k, v in spec_overrides.items():
        if not hasattr(spec, k):
            raise TypeError(f"load_checkpoint got an unknown model option {k!r}")
        setattr(spec, k, v)
    spec.__post_init__()
    if kind == "pretrainer":
        if file_kind != "pretrainer":
            raise CheckpointError(f"{path}: holds a {file_kind}, not a pretrainer (no decoder weights)")
        model = VideoMAEPretrainer(spec)
        report = _fill(model, sd, None, str(path))
    else:
        if file_kind == "classifier":
            if num_classes is not None and num_classes != spec.num_classes:
                sd = {k: v for k, v in sd.items() if not k.startswith("head.")}
                spec.num_classes = num_classes
            model = VideoMAEClassifier(spec)
            report = _fill(model, sd, None if "head.weight" in sd or spec.num_classes == 0 else ("encoder.", "fc_norm."), str(path))
        else:
            spec.num_classes = num_classes or 0
            sd = {k: v for k, v in sd.items() if k.startswith("encoder.") and not k.startswith("encoder.norm.")}
            model = VideoMAEClassifier(spec)
            report = _fill(model, sd, ("encoder.",), str(path))
    info.update(kind=kind, file_kind=file_kind, **report)
    model.checkpoint_info = info
    return model.eval()


def init_from(model: nn.Module, source) -> dict:
    """Initialise ``model`` from ``source`` (a path in any format ``load_checkpoint`` reads, or a model).

    A classifier gets the encoder (patch embedding + blocks; not the pretraining
    ``encoder.norm``, as VideoMAE fine-tuning). A pretrainer gets every weight the source has
    for it (encoder, and decoder / ``encoder_to_decoder`` / ``mask_token`` when the source is a
    pretrainer too). Patch embedding and blocks must be present and shapes must match.
    Returns {"initialised": [...]}: the model's weights that were not copied.
    """
    target = unwrap(model)
    if isinstance(source, nn.Module):
        sd = dict(unwrap(source).state_dict())
    else:
        sd, _, _, _ = load_state_dict_any(source)
    if isinstance(target, VideoMAEClassifier):
        sd = {k: v for k, v in sd.items() if k.startswith("encoder.") and not k.startswith("encoder.norm.")}
    else:
        sd = {k: v for k, v in sd.items() if not k.startswith(("head.", "fc_norm."))}
    report = _fill(target, sd, ("encoder.patch_embed.", "encoder.blocks."), "init_from")
    return {"initialised": report["initialised"]}


def _atomic_write(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def save_checkpoint(model: nn.Module, path, config: dict | None = None, extra: dict | None = None) -> Path:
    """Save weights as safetensors (spec in the header) plus a JSON sidecar.

    ``path`` gets a ``.safetensors`` suffix if it has none; the sidecar is the same name with
    ``.json``: {"format", "format_version", "kind", "model": spec, "config": config,
    "extra": extra}. ``config`` / ``extra`` must be JSON-serialisable (other values are
    written with ``str``). Returns the weights path. Files are replaced atomically.
    """
    from safetensors.torch import save_file

    inner = unwrap(model)
    kind = _kind_of(inner)
    path = Path(path)
    if path.suffix != ".safetensors":
        path = path.with_name(path.name + ".safetensors")
    path.parent.mkdir(parents=True, exist_ok=True)
    spec = inner.spec.to_dict()
    sd = {k: v.detach().to("cpu").contiguous() for k, v in inner.state_dict().items()}
    meta = {"format": FORMAT, "format_version": str(FORMAT_VERSION), "kind": kind, "spec": json.dumps(spec)}
    _atomic_write(path, lambda p: save_file(sd, str(p), metadata=meta))
    side = {"format": FORMAT, "format_version": FORMAT_VERSION, "kind": kind, "model": spec,
            "config": config, "extra": extra}
    _atomic_write(path.with_suffix(".json"), lambda p: p.write_text(json.dumps(side, indent=2, default=str) + "\n"))
    return path


def save_official(model: nn.Module, path) -> Path:
    """Write a VideoMAE-format ``.pth`` ({"model": state_dict} with VideoMAE's names)."""
    inner = unwrap(model)
    kind = _kind_of(inner)
    sd = ours_to_official({k: v.detach().cpu() for k, v in inner.state_dict().items()}, kind)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(path, lambda p: torch.save({"model": sd}, p))
    return path
