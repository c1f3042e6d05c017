"""How much of a pretrained masked autoencoder's reconstruction comes from the clip, and how much
from the mask's shape alone (``mgm recon``).

A motion-guided mask is not independent of the clip: its rectangle is centred on the motion, so
the positions of the mask tokens tell the decoder where the moving thing is, whatever the encoder
saw. Comparing pretraining losses across mask strategies mixes that with what the encoder learnt.
This diagnostic separates them. On the same clips (centre crop, deterministic frames) and the same
mask draws, per strategy, the masked-patch loss of the checkpoint's own objective for:

* ``nothing``: the prediction of a model that has learnt nothing (:func:`trivial_prediction`:
  with per-patch normalised targets 0, which scores (m - 1) / m for m pixel values per patch and
  channel; with pixel targets the mean colour of the clip's visible patches);
* ``clip``:  the real clip (the training loss, without augmentation);
* ``blank``: the clip replaced by its mean colour, so the encoder sees no content while the
  decoder still gets every token's position; the mask is still the real clip's.

``nothing - blank`` is what the decoder predicts from the mask and the token positions alone (a prior
over positions it learnt, and for a guided mask where the motion is); ``blank - clip`` is what
the visible content adds.
"""
from __future__ import annotations

import torch

from mgm.config import Config
from mgm.data.dataset import build_dataset, collate
from mgm.data.transforms import normalize
from mgm.engine.pretrain import mask_options
from mgm.masking.options import GUIDED
from mgm.masking.strategies import make_masks
from mgm.models.vit import VideoMAEPretrainer, visible_and_masked_ids

CONDITIONS = ("nothing", "clip", "blank")


def load_batches(cfg: Config, clips: int, batch: int, guidance: bool) -> list[dict]:
    """The first ``clips`` clips of ``cfg.data.val`` (centre crop), collated in batches, the
    videos normalised (the models' input)."""
    ds = build_dataset(cfg, "val", task="pretrain", guidance=guidance)
    n = min(clips, len(ds))
    items = [ds[i] for i in range(n)]
    batches = [collate(items[i:i + batch]) for i in range(0, n, batch)]
    for b in batches:
        b["video"] = normalize(b["video"])
    return batches


def strategy_masks(strategy: str, batches: list[dict], grid, ratio: float, seed: int,
                   options: dict | None = None) -> list[torch.Tensor]:
    """(B, N) masks per batch; one generator per strategy, so every checkpoint gets the same.
    ``options``: the other mask settings (jitter, top-k, ...), as ``make_masks`` takes them."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for b in batches:
        guide = ({"magnitude": b["magnitude"], "magnitude_valid": b["magnitude_valid"]}
                 if strategy in GUIDED else {})
        m = make_masks(strategy, grid, ratio, batch_size=b["video"].shape[0], generator=g, **guide,
                       **(options or {}))
        out.append(m.reshape(m.shape[0], -1))
    return out


@torch.no_grad()
def trivial_prediction(model: VideoMAEPretrainer, video: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """What a model that has learnt nothing predicts for the masked tokens of ``mask`` (B, N bool),
    in the model's own target space (B, n_masked, t*p*p*C): with per-patch normalised targets 0
    (each hidden patch predicted as its own mean); with pixel targets every hidden pixel the mean
    colour of the clip's visible patches."""
    n = visible_and_masked_ids(mask)[2]
    if model.norm_pix_loss:
        return torch.zeros(video.shape[0], n, model.spec.patch_dim, device=video.device)
    patches = model.patchify(video.float() * model.pixel_std + model.pixel_mean)      # (B, N, t*p*p, C)
    colour = torch.stack([p[~m].mean(dim=(0, 1)) for p, m in zip(patches, mask.bool())])   # (B, C)
    return colour[:, None, None, :].expand(-1, n, patches.shape[2], -1).flatten(2)


@torch.no_grad()
def reconstruction_losses(model: VideoMAEPretrainer, batches: list[dict], masks: list[torch.Tensor]) -> dict:
    """Masked-patch loss per condition (see the module doc), averaged over clips, on the model's
    device."""
    model.eval()
    device = next(model.parameters()).device
    total = dict.fromkeys(CONDITIONS, 0.0)
    count = 0
    for b, m in zip(batches, masks):
        video, m = b["video"].to(device), m.to(device)
        _, ids_masked, _ = visible_and_masked_ids(m)
        target = model.targets(video, ids_masked)
        blank = video.mean(dim=(2, 3, 4), keepdim=True).expand_as(video).contiguous()
        preds = {"nothing": trivial_prediction(model, video, m), "clip": model(video, m)[1],
                 "blank": model(blank, m)[1]}
        n = video.shape[0]
        for c, p in preds.items():
            total[c] += float(((p.float() - target) ** 2).mean()) * n
        count += n
    return {c: v / max(count, 1) for c, v in total.items()}


def run_recon(model: VideoMAEPretrainer, cfg: Config, strategies: list[str], clips: int = 160,
              batch: int = 16, seed: int = 0) -> dict:
    """{strategy: {nothing, clip, blank}} for the clips of ``cfg.data.val``, masks at ``cfg.mask.ratio``
    with the other ``cfg.mask`` settings."""
    spec = model.spec
    grid = (spec.num_frames // spec.tubelet, spec.img_size // spec.patch, spec.img_size // spec.patch)
    batches = load_batches(cfg, clips, batch, guidance=any(s in GUIDED for s in strategies))
    options = mask_options(cfg.mask)
    return {s: reconstruction_losses(model, batches, strategy_masks(s, batches, grid, cfg.mask.ratio, seed, options))
            for s in strategies}


def format_recon(result: dict) -> str:
    lines = ["| masks | learnt nothing | clip | blank clip | without the clip (nothing - blank) | from the clip (blank - clip) |",
             "|---|---:|---:|---:|---:|---:|"]
    for s, r in result.items():
        lines.append(f"| {s} | {r['nothing']:.4f} | {r['clip']:.4f} | {r['blank']:.4f} | "
                     f"{r['nothing'] - r['blank']:+.4f} | {r['blank'] - r['clip']:+.4f} |")
    return "\n".join(lines)
