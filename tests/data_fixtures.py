"""Helpers for the data tests: a tiny motion-classes set and broken files of every kind."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def tiny_synth(out: Path, videos: int = 8, size: int = 64, frames: int = 20) -> Path:
    from mgm.data.synth import make_synth_dataset

    make_synth_dataset(out, videos=videos, size=size, frames=frames, seed=0, workers=1, progress=False)
    lines = (out / "train.txt").read_text().splitlines() + (out / "val.txt").read_text().splitlines()
    (out / "all.txt").write_text("\n".join(sorted(lines)) + "\n")     # every video, label = index % 8
    return out


def write_audio_only(path: Path) -> Path:
    import av

    with av.open(str(path), "w") as c:
        st = c.add_stream("aac", rate=16000)
        st.layout = "mono"
        for i in range(10):
            fr = av.AudioFrame.from_ndarray(
                (np.sin(np.arange(1024) / 10.0)[None] * 0.3).astype(np.float32), format="fltp", layout="mono")
            fr.sample_rate = 16000
            fr.pts = i * 1024
            for p in st.encode(fr):
                c.mux(p)
        for p in st.encode():
            c.mux(p)
    return path


def broken_files(d: Path, good_video: Path) -> dict[str, Path]:
    """name -> path of: truncated, empty, random bytes, text, audio-only, missing."""
    d.mkdir(parents=True, exist_ok=True)
    data = Path(good_video).read_bytes()
    out = {
        "truncated": d / "truncated.mp4",
        "empty": d / "empty.mp4",
        "random": d / "random.mp4",
        "text": d / "text.mp4",
        "audio": d / "audio_only.m4a",
        "missing": d / "missing.mp4",
    }
    out["truncated"].write_bytes(data[: len(data) // 2])
    out["empty"].write_bytes(b"")
    out["random"].write_bytes(np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8).tobytes())
    out["text"].write_text("this is not a video\n" * 50)
    write_audio_only(out["audio"])
    return out


def odd_videos(d: Path) -> dict[str, Path]:
    """name -> path of readable videos that are unusual: a 3-frame H.264 clip, VP9 WebM and
    MJPEG AVI (no codec motion vectors: the loader falls back to optical flow)."""
    from mgm.video.synthetic import make_synthetic_video

    d.mkdir(parents=True, exist_ok=True)
    out = {"three_frames": d / "three_frames.mp4", "vp9": d / "vp9.webm", "mjpeg": d / "mjpeg.avi"}
    make_synthetic_video(out["three_frames"], width=64, height=64, num_frames=3)
    make_synthetic_video(out["vp9"], width=64, height=64, num_frames=20, codec="libvpx-vp9",
                         options={"deadline": "realtime", "cpu-used": "8"})
    make_synthetic_video(out["mjpeg"], width=64, height=64, num_frames=20, codec="mjpeg", bframes=0)
    return out


def tiny_cfg(train: str, **over):
    from mgm.config import load_config

    base = {
        "data.train": train, "data.val": train, "data.size": 64, "model.img_size": 64,
        "data.num_frames": 8, "model.num_frames": 8, "data.stride": 2, "data.flip": True,
        "data.test_clips": 2, "data.test_crops": 3, "mask.strategy": "mgm", "run.seed": 0,
    }
    base.update(over)
    return load_config(None, [f"{k}={v}" for k, v in base.items()])
