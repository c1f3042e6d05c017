"""Sampled frames with the motion magnitude overlaid and arrows (the paper's Fig. 6c)."""
from __future__ import annotations

import numpy as np


def plot_clip(clip, path, title: str | None = None, max_frames: int = 16, cols: int = 4) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    T = min(len(clip.frames), max_frames)
    cols = min(cols, T)
    rows = (T + cols - 1) // cols
    H, W = clip.frames.shape[1:3]
    g = clip.cell
    gh, gw = clip.motion.shape[1:3]
    mag = np.linalg.norm(clip.motion, axis=-1) * clip.motion_valid
    vmax = float(mag.max()) or 1.0
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 3 * rows * H / W + 0.4), squeeze=False)
    ys, xs = np.mgrid[0:gh, 0:gw]
    xs = (xs + 0.5) * g
    ys = (ys + 0.5) * g
    heat = None
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k >= T:
            continue
        ax.imshow(clip.frames[k])
        heat = ax.imshow(np.ma.masked_where(~clip.motion_valid[k], mag[k]), cmap="inferno", alpha=0.45,
                  vmin=0, vmax=vmax, extent=(0, gw * g, gh * g, 0), interpolation="nearest")
        v = clip.motion_valid[k]
        if v.any():
            ax.quiver(xs[v], ys[v], clip.motion[k][..., 0][v], clip.motion[k][..., 1][v], color="cyan",
                      angles="xy", scale_units="xy", scale=0.5, width=0.006)
        ax.set_xlim(0, W)
        ax.set_ylim(H, 0)
        ft = clip.frame_types[int(clip.indices[k]) - clip.raw_start] if clip.frame_types else "?"
        ax.set_title(f"#{int(clip.indices[k])} {ft}", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    if heat is not None:    # after tight_layout, which cannot place a colour bar spanning the axes
        fig.colorbar(heat, ax=axes.ravel().tolist(), shrink=0.8, pad=0.01,
                     label="motion (px per sampled frame)")
    fig.savefig(path, dpi=80)
    plt.close(fig)
