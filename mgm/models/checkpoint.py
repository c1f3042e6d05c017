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

Name and spec conversion for the official and Hugging Face layouts lives in
``mgm.models.formats``.
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
from pathlib import Path

import torch
import yaml
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from mgm.errors import parse_problem
from mgm.models.formats import (
    CheckpointError,
    check_pos_embed,
    hf_to_ours,
    is_hf_state_dict,
    official_to_ours,
    ours_to_official,
    spec_from_hf_config,
    spec_from_official,
)
from mgm.models.spec import VideoMAESpec
from mgm.models.vit import VideoMAEClassifier, VideoMAEPretrainer
from mgm.provenance import installation

FORMAT = "mgm.videomae"
FORMAT_VERSION = 1

# ---------------------------------------------------------------- small helpers


def unwrap(model: nn.Module) -> nn.Module:
    """The model under torch.compile / DDP wrappers."""
    while True:
        inner = getattr(model, "_orig_mod", None) or getattr(model, "module", None)
        if not isinstance(inner, nn.Module):
            return model
        model = inner


def model_kind(model: nn.Module) -> str:
    model = unwrap(model)
    if isinstance(model, VideoMAEPretrainer):
        return "pretrainer"
    if isinstance(model, VideoMAEClassifier):
        return "classifier"
    raise TypeError(f"expected a VideoMAEPretrainer or VideoMAEClassifier, got {type(model).__name__}")


def _torch_load(path: Path):
    # torch.save writes a zip archive (PK...); files from torch < 1.6 are a bare pickle (protocol >= 2
    # starts with 0x80). Anything else is not a checkpoint, and the unpickler's error on it would
    # wrongly say the file "needs code".
    with open(path, "rb") as f:
        head = f.read(4)
    if not (head.startswith(b"PK\x03\x04") or head.startswith(b"\x80")):
        raise CheckpointError(f"{path}: not a PyTorch checkpoint (neither a zip archive nor a pickle)")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"{path}: refusing to unpickle it: the file needs code beyond tensors and plain "
            f"containers, which weights_only=True does not run ({str(e).splitlines()[0]}). "
            "If you trust it, re-save its state_dict with torch.save({'model': sd}, ...) and load that."
        ) from None
    except Exception as e:  # noqa: BLE001 -- on arbitrary bytes the unpickler raises anything (IndexError, KeyError, ...)
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({reason})") from None


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


# ---------------------------------------------------------------- reading any format


def _kind_from_keys(sd: dict) -> str:
    if any(k.startswith("decoder.") for k in sd):
        return "pretrainer"
    if "head.weight" in sd or "fc_norm.weight" in sd:
        return "classifier"
    return "encoder"


def _read_safetensors(path: Path) -> tuple[dict, dict]:
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        return load_file(str(path)), meta
    except SafetensorError as e:          # truncated / not a safetensors file: one line, no traceback
        raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from None


def _read_sidecar(path: Path) -> dict | None:
    for suffix in (".json", ".yaml", ".yml"):
        side = path.with_suffix(suffix)
        if side.exists():
            try:
                return json.loads(side.read_text()) if suffix == ".json" else yaml.safe_load(side.read_text())
            except (ValueError, yaml.YAMLError) as e:
                raise CheckpointError(f"{side}: the checkpoint's sidecar is not valid {suffix[1:].upper()} "
                                      f"({parse_problem(e)})") from None
    return None


def _read_hf_dir(d: Path) -> tuple[dict, dict]:
    try:
        cfg = json.loads((d / "config.json").read_text())
    except ValueError as e:
        raise CheckpointError(f"{d / 'config.json'}: not valid JSON ({parse_problem(e)})") from None
    if (d / "model.safetensors").exists():
        sd, _ = _read_safetensors(d / "model.safetensors")
    elif (d / "model.safetensors.index.json").exists():
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
            check_pos_embed(sd)
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
        check_pos_embed(sd)
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
    "extra": extra, "installation": what made the weights (``mgm.provenance.installation``)}. ``config`` / ``extra`` must be JSON-serialisable (other values are
    written with ``str``). Returns the weights path. Files are replaced atomically.
    """
    inner = unwrap(model)
    kind = model_kind(inner)
    path = Path(path)
    if path.suffix != ".safetensors":
        path = path.with_name(path.name + ".safetensors")
    path.parent.mkdir(parents=True, exist_ok=True)
    spec = inner.spec.to_dict()
    sd = {k: v.detach().to("cpu").contiguous() for k, v in inner.state_dict().items()}
    meta = {"format": FORMAT, "format_version": str(FORMAT_VERSION), "kind": kind, "spec": json.dumps(spec)}
    _atomic_write(path, lambda p: save_file(sd, str(p), metadata=meta))
    side = {"format": FORMAT, "format_version": FORMAT_VERSION, "kind": kind, "model": spec,
            "config": config, "extra": extra, "installation": installation()}
    _atomic_write(path.with_suffix(".json"), lambda p: p.write_text(json.dumps(side, indent=2, default=str) + "\n"))
    return path


def save_official(model: nn.Module, path) -> Path:
    """Write a VideoMAE-format ``.pth`` ({"model": state_dict} with VideoMAE's names)."""
    inner = unwrap(model)
    kind = model_kind(inner)
    if kind == "classifier" and inner.spec.pool != "mean":
        raise CheckpointError(f"a classifier with pool={inner.spec.pool!r} has no VideoMAE equivalent "
                              "(it mean-pools all tokens); save it in mgm's format")
    sd = ours_to_official({k: v.detach().cpu() for k, v in inner.state_dict().items()}, kind)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(path, lambda p: torch.save({"model": sd}, p))
    return path
