"""Which raw frames make a clip (all functions return int64 index arrays of length T).

- ``dense_indices``: T frames at a fixed stride from a start (VideoMAE pretraining:
  16 × 4 for K400, 16 × 2 for SSv2). Training draws the start uniformly in
  ``[0, n - T·stride]``; a video shorter than ``T·stride`` starts at 0 and its indices
  are clamped to the last frame (VideoMAE's policy: the last frame repeats).
- ``segment_indices``: TSN sampling — the video is cut into T equal segments and one
  frame is taken per segment (random in training, at a fixed offset for evaluation).
  Short videos (n < T) repeat frames.
- ``dense_test_starts`` / ``segment_test_offsets``: the K temporal views of multi-view
  testing (evenly spread clip starts; shifted in-segment offsets).
"""
from __future__ import annotations

import numpy as np

from mgm.data.options import SAMPLINGS


def dense_indices(num_raw: int, num_frames: int, stride: int, start: int) -> np.ndarray:
    idx = start + stride * np.arange(num_frames, dtype=np.int64)
    return np.clip(idx, 0, max(num_raw - 1, 0))


def dense_random_start(num_raw: int, num_frames: int, stride: int, rng: np.random.Generator) -> int:
    span = (num_frames - 1) * stride + 1
    return int(rng.integers(0, num_raw - span + 1)) if num_raw > span else 0


def dense_test_starts(num_raw: int, num_frames: int, stride: int, num_clips: int) -> list[int]:
    """K starts spread evenly over the video (one clip: centred)."""
    span = (num_frames - 1) * stride + 1
    room = max(num_raw - span, 0)
    if num_clips == 1:
        return [room // 2]
    return [int(round(room * k / (num_clips - 1))) for k in range(num_clips)]


def segment_indices(
    num_raw: int, num_frames: int, rng: np.random.Generator | None = None, offset: float = 0.5
) -> np.ndarray:
    """One frame per segment; ``rng`` given: uniform inside each segment, else at
    ``offset`` (0..1) of each segment."""
    n = max(num_raw, 1)
    seg = n / num_frames
    base = seg * np.arange(num_frames)
    if rng is not None:
        pos = base + rng.random(num_frames) * seg
    else:
        pos = base + offset * seg
    return np.clip(np.floor(pos).astype(np.int64), 0, n - 1)


def segment_test_offsets(num_clips: int) -> list[float]:
    """In-segment offsets of the K temporal views (1 view: the segment middle)."""
    return [(k + 0.5) / num_clips for k in range(num_clips)]


def clip_indices(
    num_raw: int, num_frames: int, stride: int, sampling: str,
    mode: str, rng: np.random.Generator | None = None, clip: int = 0, num_clips: int = 1,
) -> np.ndarray:
    """``mode``: "train" (random), "val" (one centred clip) or "test" (view ``clip`` of
    ``num_clips``)."""
    if sampling == "segment":
        if mode == "train":
            return segment_indices(num_raw, num_frames, rng=rng)
        if mode == "val":
            return segment_indices(num_raw, num_frames, offset=0.5)
        return segment_indices(num_raw, num_frames, offset=segment_test_offsets(num_clips)[clip])
    if sampling != "dense":
        raise ValueError(f"unknown sampling {sampling!r} ({' | '.join(SAMPLINGS)})")
    if mode == "train":
        start = dense_random_start(num_raw, num_frames, stride, rng)
    elif mode == "val":
        start = dense_test_starts(num_raw, num_frames, stride, 1)[0]
    else:
        start = dense_test_starts(num_raw, num_frames, stride, num_clips)[clip]
    return dense_indices(num_raw, num_frames, stride, start)
