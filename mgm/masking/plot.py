"""Draw masks over the sampled frames (the paper's Fig. 2 / Fig. 5): PNG grid, GIF or MP4.

Rows: the frames with the motion guidance (magnitude as a red overlay, its argmax marked),
then one row per strategy with the masked patches darkened and tinted. A PNG has one column
per temporal index (the tubelet's first frame); a GIF / MP4 shows every sampled frame with
the mask of its temporal index.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

MASK_TINT = np.array([40, 70, 160], np.float32)


def _resize(img: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    if img.shape[0] == size and img.shape[1] == size:
        return img
    return np.asarray(Image.fromarray(img).resize((size, size), Image.BILINEAR))


def upsample_nearest(grid2d: np.ndarray, size: int) -> np.ndarray:
    """Nearest upsampling of a (h, w) patch grid to (size, size) pixels."""
    h, w = grid2d.shape
    ys = np.minimum((np.arange(size) * h) // size, h - 1)
    xs = np.minimum((np.arange(size) * w) // size, w - 1)
    return grid2d[ys][:, xs]


def masked_tile(frame: np.ndarray, mask2d: np.ndarray, tile: int) -> np.ndarray:
    img = _resize(frame, tile).astype(np.float32)
    m = upsample_nearest(mask2d, tile)[..., None]
    out = np.where(m, img * 0.35 + MASK_TINT * 0.65, img)
    # faint patch grid on masked patches' edges
    h, w = mask2d.shape
    edge = np.zeros((tile, tile), bool)
    edge[np.minimum((np.arange(h) * tile) // h, tile - 1), :] = True
    edge[:, np.minimum((np.arange(w) * tile) // w, tile - 1)] = True
    out[edge & m[..., 0]] = out[edge & m[..., 0]] * 0.7
    return out.clip(0, 255).astype(np.uint8)


def guidance_tile(frame: np.ndarray, mag2d: np.ndarray | None, valid2d: np.ndarray | None, tile: int) -> np.ndarray:
    img = _resize(frame, tile).astype(np.float32)
    if mag2d is None:
        return img.astype(np.uint8)
    mx = float(mag2d.max())
    a = upsample_nearest(mag2d / mx if mx > 0 else mag2d * 0, tile)[..., None] * 0.6
    img = img * (1 - a) + np.array([255, 30, 30], np.float32) * a
    if valid2d is not None:
        inv = upsample_nearest(~valid2d, tile)
        img[inv] = img[inv] * 0.6 + 128 * 0.4
    if mx > 0:
        h, w = mag2d.shape
        iy, ix = np.unravel_index(int(np.argmax(mag2d)), mag2d.shape)
        cy, cx = int((iy + 0.5) * tile / h), int((ix + 0.5) * tile / w)
        r = max(2, tile // 40)
        img[max(cy - r, 0):cy + r + 1, max(cx - 4 * r, 0):cx + 4 * r + 1] = (255, 255, 0)
        img[max(cy - 4 * r, 0):cy + 4 * r + 1, max(cx - r, 0):cx + r + 1] = (255, 255, 0)
    return img.clip(0, 255).astype(np.uint8)


def _label(img: np.ndarray, text: str, xy=(4, 2)) -> np.ndarray:
    from PIL import Image, ImageDraw

    im = Image.fromarray(img)
    d = ImageDraw.Draw(im)
    x, y = xy
    for dx, dy in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        d.text((x + dx, y + dy), text, fill=(0, 0, 0))
    d.text((x, y), text, fill=(255, 255, 255))
    return np.asarray(im)


def compose(frames: np.ndarray, masks: dict, tubelet: int, magnitude=None, magnitude_valid=None,
            tile: int = 160, columns: str = "index", time_index: int | None = None) -> np.ndarray:
    """One image (H, W, 3) uint8. columns="index": one column per temporal index;
    with ``time_index`` set: a single column for that sampled frame (an animation frame)."""
    tp = next(iter(masks.values())).shape[0]
    if time_index is None:
        cols = [(t * tubelet, t) for t in range(tp)]
    else:
        cols = [(time_index, min(time_index // tubelet, tp - 1))]
    rows = []
    g_row = [guidance_tile(frames[f], None if magnitude is None else magnitude[t],
                           None if magnitude_valid is None else magnitude_valid[t], tile) for f, t in cols]
    rows.append(("motion" if magnitude is not None else "frames", g_row))
    for name, m in masks.items():
        rows.append((name, [masked_tile(frames[f], m[t], tile) for f, t in cols]))
    gap = 2
    out_rows = []
    for name, tiles in rows:
        tiles = [_label(tiles[0], name)] + tiles[1:]
        row = np.concatenate([np.pad(x, ((0, 0), (0, gap), (0, 0)), constant_values=255) for x in tiles], 1)
        out_rows.append(np.pad(row, ((0, gap), (0, 0), (0, 0)), constant_values=255))
    img = np.concatenate(out_rows, 0)
    if time_index is None:
        for i, (f, t) in enumerate(cols):
            img = _label(img, f"t'={t}", (i * (tile + gap) + tile - 40, 2))
    else:
        img = _label(img, f"frame {time_index}  t'={cols[0][1]}", (4, tile - 14))
    return img


def save_visual(path, frames: np.ndarray, masks: dict, tubelet: int, magnitude=None, magnitude_valid=None,
                tile: int = 160, fps: float = 4.0) -> Path:
    """PNG/JPG (grid), GIF or MP4 (animation over the sampled frames), by extension."""
    from PIL import Image

    path = Path(path)
    ext = path.suffix.lower()
    if ext in (".png", ".jpg", ".jpeg"):
        Image.fromarray(compose(frames, masks, tubelet, magnitude, magnitude_valid, tile)).save(path)
        return path
    n = min(frames.shape[0], next(iter(masks.values())).shape[0] * tubelet)
    anim = [compose(frames, masks, tubelet, magnitude, magnitude_valid, tile, time_index=i) for i in range(n)]
    if ext == ".gif":
        ims = [Image.fromarray(a) for a in anim]
        ims[0].save(path, save_all=True, append_images=ims[1:], duration=int(1000 / fps), loop=0)
        return path
    if ext == ".mp4":
        import av

        h, w = anim[0].shape[:2]
        h2, w2 = h + h % 2, w + w % 2
        with av.open(str(path), "w") as out:
            st = out.add_stream("libx264", rate=max(1, int(round(fps))))
            st.width, st.height, st.pix_fmt = w2, h2, "yuv420p"
            for a in anim:
                a = np.pad(a, ((0, h2 - h), (0, w2 - w), (0, 0)), constant_values=255)
                for pkt in st.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(a), format="rgb24")):
                    out.mux(pkt)
            for pkt in st.encode():
                out.mux(pkt)
        return path
    raise ValueError(f"--out must end in .png, .jpg, .gif or .mp4, got {path.name!r}")
