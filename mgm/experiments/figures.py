"""The demo report's figures (PNG files of fixed, known sizes).

* :func:`loss_curves`           pretraining loss per logged step, one curve per run
* :func:`masks_figure`          every strategy on one clip (paper Fig. 5), via mgm.masking.plot
* :func:`motion_figure`         motion vectors over the frames (paper Fig. 6c), via mgm.video.plot
* :func:`reconstruction_figure` masked clip -> reconstruction (paper Fig. 8)
* :func:`attention_figure`      last-block attention of the centre patch of the centre frame (Fig. 7)

Each returns ``(path, (width, height))``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from mgm.engine.logging import read_log
from mgm.experiments.recon import trivial_prediction
from mgm.masking import STRATEGIES, make_mask
from mgm.masking.plot import save_visual, upsample_nearest
from mgm.models.vit import patch_statistics, visible_and_masked_ids
from mgm.video.plot import plot_clip

LOSS_SIZE = (6.4, 3.2)        # inches at DPI -> 640 x 320 px
DPI = 100


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def png_size(path) -> tuple[int, int]:
    """(width, height) from a PNG header; ValueError if the file is not a PNG."""
    with open(path, "rb") as f:
        head = f.read(24)
    if head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        raise ValueError(f"{path} is not a PNG file")
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def loss_curves(logs: dict[str, Path], path, title: str = "pretraining loss (train, per logged step)",
                ylabel: str = "MSE on masked patches", reference: tuple[str, float] | None = None
                ) -> tuple[Path, tuple[int, int], list[str]]:
    """One curve per run from its ``log.jsonl`` (``{name: path}``); ``reference``: (label, value)
    drawn as a dashed horizontal line (e.g. the loss of the predictor that learnt nothing). Returns
    the figure's path and size and the names whose curves it drew (a run without a log has none)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=LOSS_SIZE)
    drawn = []
    for name, log in logs.items():
        recs = read_log(log, "train") if Path(log).exists() else []
        if recs:
            ax.plot([r["step"] for r in recs], [r["loss"] for r in recs], lw=1.2, label=name)
            drawn.append(name)
    if reference:
        ax.axhline(reference[1], color="k", ls="--", lw=0.8, label=reference[0])
    ax.legend(fontsize=8)
    ax.set_xlabel("optimiser step")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path, png_size(path), drawn


def masks_figure(frames, magnitude, magnitude_valid, path, grid, tubelet: int, ratio: float = 0.75,
                 seed: int = 0, tile: int = 96, options: dict | None = None):
    """Masks of every strategy on one clip, drawn by ``mgm.masking.plot.save_visual``."""
    masks = {}
    for name in STRATEGIES:
        masks[name] = make_mask(name, grid=grid, ratio=ratio, magnitude=magnitude,
                                magnitude_valid=magnitude_valid, seed=seed,
                                **(options or {}))
    path = save_visual(Path(path), frames, masks, tubelet, magnitude, magnitude_valid, tile=tile)
    return path, png_size(path), masks


def motion_figure(clip, path, title: str = "", max_frames: int = 8):
    path = Path(path)
    plot_clip(clip, path, title=title, max_frames=max_frames, cols=4)
    return path, png_size(path)


def _tile(img01: np.ndarray, tile: int) -> np.ndarray:
    a = (np.clip(img01, 0, 1) * 255).astype(np.uint8)
    return np.asarray(Image.fromarray(a).resize((tile, tile), Image.NEAREST))


def _grid_image(rows: list[tuple[str, list[np.ndarray]]], tile: int, label_w: int = 150) -> np.ndarray:
    """Rows of equally sized tiles with a text label column on the left; uint8 RGB."""
    gap = 2
    ncol = max(len(r[1]) for r in rows)
    W = label_w + ncol * (tile + gap)
    H = len(rows) * (tile + gap)
    im = Image.new("RGB", (W, H), (255, 255, 255))
    d = ImageDraw.Draw(im)
    for i, (label, tiles) in enumerate(rows):
        y = i * (tile + gap)
        for j, line in enumerate(_wrap(label, 22)):
            d.text((4, y + 4 + 12 * j), line, fill=(0, 0, 0))
        for j, t in enumerate(tiles):
            im.paste(Image.fromarray(t), (label_w + j * (tile + gap), y))
    return np.asarray(im)


def _wrap(text: str, width: int) -> list[str]:
    out, line = [], ""
    for w in text.split():
        if line and len(line) + 1 + len(w) > width:
            out.append(line)
            line = w
        else:
            line = f"{line} {w}".strip()
    return out + ([line] if line else [])


def reconstruct(model, video, mask):
    """Run a pretrainer on one clip. Returns dict of (T, H, W, 3) float arrays in [0, 1]-ish:
    ``original``, ``masked`` (masked patches grey), ``recon_target_stats`` (visible patches
    from the input, masked ones = prediction un-normalised with each target patch's own mean
    and std: uses ground-truth statistics when ``norm_pix_loss``), ``pred_normalised`` (the
    raw prediction of masked patches shown as 0.5 + 0.2 * value, no target statistics), and
    the loss."""
    model.eval()
    with torch.no_grad():
        video = video[None].float()
        mask_t = torch.as_tensor(np.asarray(mask).reshape(1, -1), dtype=torch.bool)
        loss, pred = model(video, mask_t)
        frames01 = video * model.pixel_std + model.pixel_mean
        patches = model.patchify(frames01)                         # (1, N, t*p*p, C)
        ids = torch.nonzero(mask_t[0]).flatten()                    # increasing: pred order
        P = pred.reshape(1, len(ids), patches.shape[2], patches.shape[3]).float()
        tgt = patches[:, ids]
        if model.norm_pix_loss:
            mean, scale = patch_statistics(tgt)
            un = P * scale + mean
        else:
            un = P
        rec = patches.clone()
        rec[:, ids] = un
        grey = patches.clone()
        grey[:, ids] = 0.5
        raw = torch.full_like(patches, 1.0)
        raw[:, ids] = 0.5 + 0.2 * P if model.norm_pix_loss else P
        to_np = lambda p: model.unpatchify(p.flatten(2))[0].permute(1, 2, 3, 0).clamp(0, 1).numpy()  # noqa: E731
        return {"original": to_np(patches), "masked": to_np(grey), "recon_target_stats": to_np(rec),
                "pred_normalised": to_np(raw), "loss": float(loss)}


def reconstruction_figure(runs: dict, video, path, tubelet: int, tile: int = 80):
    """``runs``: {name: (pretrainer, mask)}. Per run: the input with its masked patches grey and
    the reconstruction (pixel targets: the predicted pixels; per-patch normalised targets: the
    prediction un-normalised with the TRUE patch's mean and std, labelled so); one column per
    temporal index. Returns (path, size, {name: loss})."""
    rows, losses = [], {}
    for name, (model, mask) in runs.items():
        r = reconstruct(model, video, mask)
        losses[name] = r["loss"]
        cols = list(range(0, r["original"].shape[0], tubelet))
        if not rows:
            rows.append(("original", [_tile(r["original"][f], tile) for f in cols]))
        rows.append((f"{name} mask: input (masked = grey)", [_tile(r["masked"][f], tile) for f in cols]))
        how = ("predicted pixels" if not model.norm_pix_loss else
               "prediction un-normalised with the TARGET's own patch mean/std")
        rows.append((f"{name}-pretrained: reconstruction, {how} (loss {r['loss']:.4f})",
                     [_tile(r["recon_target_stats"][f], tile) for f in cols]))
    img = _grid_image(rows, tile, label_w=170)
    path = Path(path)
    Image.fromarray(img).save(path)
    return path, png_size(path), losses


def trivial_loss(model, video, mask) -> float:
    """The loss, on the masked tubelets of one clip, of the predictor that has learnt nothing, in
    the model's own target space (``mgm.experiments.recon.trivial_prediction``: with per-patch
    normalised targets each hidden patch predicted as its own mean, (n-1)/n for n pixels per patch
    and channel; with pixel targets the mean colour of the clip's visible patches)."""
    with torch.no_grad():
        m = torch.as_tensor(np.asarray(mask).reshape(1, -1), dtype=torch.bool)
        target = model.targets(video[None], visible_and_masked_ids(m)[1])
        return float(((trivial_prediction(model, video[None], m) - target) ** 2).mean())


def centre_attention(encoder, video, grid) -> tuple[np.ndarray, int]:
    """Head-averaged last-block attention (T', Hp, Wp) of the centre token of the centre
    temporal index, and that token's index."""
    T, Hp, Wp = grid
    q = (T // 2) * Hp * Wp + (Hp // 2) * Wp + (Wp // 2)
    with torch.no_grad():
        w = encoder.last_attention(video[None].float())          # (1, heads, N, N)
    return w[0, :, q].mean(0).reshape(T, Hp, Wp).numpy(), q


def attention_figure(encoders: dict, video, frames: np.ndarray, grid, tubelet: int, path, tile: int = 80):
    """One row per encoder: the attention map of the centre query over every temporal index,
    over the first frame of each tubelet; the query patch is outlined in green."""
    T, Hp, Wp = grid
    rows = [("frames", [np.asarray(Image.fromarray(frames[t * tubelet]).resize((tile, tile), Image.BILINEAR))
                        for t in range(T)])]
    maps = {}
    for name, enc in encoders.items():
        a, q = centre_attention(enc, video, grid)
        maps[name] = a
        lo, hi = float(a.min()), float(a.max())
        norm = (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)
        tiles = []
        for t in range(T):
            base = np.asarray(Image.fromarray(frames[t * tubelet]).resize((tile, tile), Image.BILINEAR)).astype(np.float32)
            heat = upsample_nearest(norm[t], tile)[..., None] * 0.8
            img = base * (1 - heat) + np.array([255, 220, 40], np.float32) * heat
            img = img.clip(0, 255).astype(np.uint8)
            if t == T // 2:
                y0, x0 = (Hp // 2) * tile // Hp, (Wp // 2) * tile // Wp
                y1, x1 = (Hp // 2 + 1) * tile // Hp - 1, (Wp // 2 + 1) * tile // Wp - 1
                img[y0:y1 + 1, [x0, x1]] = (0, 255, 0)
                img[[y0, y1], x0:x1 + 1] = (0, 255, 0)
            tiles.append(img)
        rows.append((f"{name}: attention of the centre patch (green) of t'={T // 2}", tiles))
    img = _grid_image(rows, tile, label_w=170)
    path = Path(path)
    Image.fromarray(img).save(path)
    return path, png_size(path), maps
