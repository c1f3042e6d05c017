"""The video dataset: annotations -> (clip, motion-guided mask, label) items.

    ds = build_dataset(cfg, split="train", task="pretrain")
    ds.set_epoch(epoch)
    item = ds[i]   # video (3,T,H,W) float32, mask (N,) bool | magnitude + magnitude_valid,
                   # label, index, view, bad

Randomness of item i in epoch e is drawn from ``default_rng([run.seed, e, i, attempt])``:
the same seed gives the same items whatever the number of workers or their order.

A video that cannot be read (missing, corrupt, unsupported, decoder error) is replaced by
the next index (``i+1``, ``i+2``, ...; each attempt with its own seeded generator) and
named in the item's ``bad`` list as ``"path: reason"``; ``collate`` concatenates those
and ``BadVideoLog`` counts them per epoch. Known-bad videos are remembered per worker so
they are not decoded again, and still reported every time they are skipped.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from mgm.data import sampling, transforms
from mgm.data.annotations import AnnotationError, Annotations, load_annotations

log = logging.getLogger("mgm.data")

SPLITS = ("train", "val", "test")
TASKS = ("pretrain", "finetune", "linprobe", "eval")
MAX_REPLACEMENTS = 64
MOTION_STRATEGIES = ("mgm", "mgm-sparse")          # strategies that read the motion grid


def annotation_source(cfg, split: str) -> str:
    d = cfg.data
    src = {"train": d.train, "val": d.val, "test": d.test or d.val}[split]
    if not src:
        raise AnnotationError(f"data.{split} is not set" + (" (nor data.val)" if split == "test" else ""))
    return src


def build_dataset(cfg, split: str = "train", task: str | None = None) -> "VideoDataset":
    """The dataset of one split for one task (default: ``cfg.task``)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    task = task or cfg.task
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    d = cfg.data
    ann = load_annotations(
        annotation_source(cfg, split), root=d.root, format=d.format, split=split,
        splits=getattr(d, "splits", ""), split_id=getattr(d, "split_id", 1),
        num_classes=d.num_classes,
    )
    return VideoDataset(ann, cfg, split=split, task=task)


class VideoDataset(torch.utils.data.Dataset):
    def __init__(self, annotations: Annotations, cfg, split: str = "train", task: str = "pretrain"):
        self.ann = annotations
        self.samples = annotations.samples
        self.cfg = cfg
        self.split = split
        self.task = task
        d = cfg.data
        self.classes = list(annotations.classes)
        self.num_classes = d.num_classes or len(self.classes)
        self.num_frames = d.num_frames
        self.stride = d.stride
        self.size = d.size
        self.grid = d.motion_grid
        self.tubelet = cfg.model.tubelet
        self.patch = cfg.model.patch
        self.seed = cfg.run.seed
        self.views = d.test_clips * d.test_crops if split == "test" else 1
        if split == "train":
            self.mode = "train"
            if task == "linprobe" and cfg.finetune.cache_features:
                self.mode = "val"       # frozen features extracted once: no augmentation
        else:
            self.mode = "test" if split == "test" else "val"
        self.with_mask = task == "pretrain"
        strategy = cfg.mask.strategy
        self.needs_motion = self.with_mask and (strategy in MOTION_STRATEGIES or cfg.mask.on_device)
        self.motion_mode = d.motion if self.needs_motion else "none"
        self.patch_grid = (self.num_frames // self.tubelet, self.size // self.patch, self.size // self.patch)
        # shared so that persistent workers see set_epoch too
        self._epoch = torch.zeros(1, dtype=torch.int64).share_memory_()
        self._bad: dict[int, str] = {}       # per process: video index -> "path: reason"
        self._nframes: dict[int, int] = {}   # per process: video index -> frame count
        self._last_clip = None               # test split: the crops of one clip decode once

    # ------------------------------------------------------------ API

    def __len__(self) -> int:
        return len(self.samples) * self.views

    def set_epoch(self, epoch: int) -> None:
        self._epoch[0] = int(epoch)

    @property
    def epoch(self) -> int:
        return int(self._epoch[0])

    def rng(self, index: int, attempt: int = 0) -> np.random.Generator:
        return np.random.default_rng([self.seed & 0xFFFFFFFF, self.epoch, index, attempt])

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(index)
        vid, view = divmod(index, self.views)
        n = len(self.samples)
        bad: list[str] = []
        for attempt in range(min(n, MAX_REPLACEMENTS)):
            cand = (vid + attempt) % n
            if cand in self._bad:
                bad.append(self._bad[cand])
                continue
            try:
                item = self.load(cand, view, self.rng(index, attempt))
            except Exception as e:  # noqa: BLE001 - any failure of one video is reported, not fatal
                self._bad[cand] = f"{self.samples[cand].path}: {_reason(e, self.samples[cand].path)}"
                bad.append(self._bad[cand])
                continue
            item["bad"] = bad
            return item
        raise RuntimeError(
            f"{len(bad)} videos in a row could not be read, starting at index {vid}; "
            "run `mgm data check` on the list. Last: " + "; ".join(bad[-5:]))

    # ------------------------------------------------------------ one video

    def num_raw_frames(self, vid: int) -> int:
        if vid not in self._nframes:
            from mgm.video import probe_video

            self._nframes[vid] = int(probe_video(self.samples[vid].path).num_frames or 0)
        return self._nframes[vid]

    def load(self, vid: int, view: int, rng: np.random.Generator) -> dict:
        """Decode, sample, transform and mask one view of video ``vid``. Raises on a bad video."""
        from mgm.video import read_clip

        sample = self.samples[vid]
        T = self.num_frames
        clip_k, crop_k = divmod(view, self.cfg.data.test_crops) if self.mode == "test" else (0, 0)
        n = self.num_raw_frames(vid)
        if n <= 0:
            raise ValueError("no frames")
        idx = sampling.clip_indices(
            n, T, self.stride, self.cfg.data.sampling, self.mode, rng=rng,
            clip=clip_k, num_clips=self.cfg.data.test_clips,
        )
        seed = int(rng.integers(2**31))
        key = (vid, idx.tobytes(), self.motion_mode)
        if self.mode == "test" and self._last_clip is not None and self._last_clip[0] == key:
            clip = self._last_clip[1]             # the next spatial crop of the same clip
        else:
            clip = read_clip(sample.path, num_frames=T, stride=self.stride, motion=self.motion_mode,
                             grid=self.grid, seed=seed, indices=idx)
            if self.mode == "test":
                self._last_clip = (key, clip)
        frames = clip.frames
        if frames is None or frames.ndim != 4 or frames.shape[0] == 0:
            raise ValueError("decoded no frames")
        if frames.shape[0] != T:                  # a truncated file: repeat the last frame
            keep = np.minimum(np.arange(T), frames.shape[0] - 1)
            frames = frames[keep]
        H, W = frames.shape[1:3]
        if self.mode == "train":
            g = transforms.multiscale_crop(H, W, self.size, self.cfg.data.scales, rng,
                                           flip_prob=0.5 if self.cfg.data.flip else 0.0)
        elif self.mode == "val":
            g = transforms.center_crop(H, W, self.size)
        else:
            g = transforms.test_crops(H, W, self.size, self.cfg.data.test_crops)[crop_k]
        out = self.transform(frames, clip, g, rng)
        out["label"] = int(sample.label)
        out["index"] = int(vid)
        out["view"] = int(view)
        return out

    def transform(self, frames: np.ndarray, clip, g: transforms.Geometry, rng: np.random.Generator) -> dict:
        """Frames, motion grid and mask through one geometry. The mask is built on the
        grid before the flip and mirrored with the frames (flip is the last transform, so
        the mask of a flipped clip is exactly the mirror of the unflipped clip's mask for
        the same draws); the returned magnitude grid is the flipped one (dx negated)."""
        T = frames.shape[0]
        out = {"video": transforms.to_tensor(transforms.apply_frames(frames, g))}
        if not self.with_mask:
            return out
        if self.cfg.mask.on_device:
            motion, valid = self._motion(clip, g, T)
            out.update(self._mask(motion, valid, rng))
            return out
        unflipped = dataclasses.replace(g, flip=False)
        motion, valid = self._motion(clip, unflipped, T)
        mask = self._mask(motion, valid, rng)["mask"]
        if g.flip:
            mask = mask.view(self.patch_grid).flip(-1).reshape(-1)
        out["mask"] = mask
        return out

    def _motion(self, clip, g, T):
        oh, ow = max(self.size // self.grid, 1), max(self.size // self.grid, 1)
        motion = getattr(clip, "motion", None)
        if (not self.needs_motion or motion is None or getattr(clip, "motion_source", "none") == "none"
                or motion.ndim != 4 or motion.shape[1] == 0 or motion.shape[2] == 0):
            return np.zeros((T, oh, ow, 2), np.float32), np.zeros((T, oh, ow), bool)
        valid = clip.motion_valid
        if motion.shape[0] != T:
            keep = np.minimum(np.arange(T), motion.shape[0] - 1)
            motion, valid = motion[keep], valid[keep]
        return transforms.apply_motion(motion, valid, g, self.grid, self.grid)

    def _mask(self, motion, valid, rng) -> dict:
        m = self.cfg.mask
        if m.on_device:
            from mgm.masking import motion_to_patch_magnitude

            mag, mag_valid = motion_to_patch_magnitude(motion, valid, self.patch_grid, self.tubelet)
            return {"magnitude": torch.from_numpy(np.ascontiguousarray(mag, dtype=np.float32)),
                    "magnitude_valid": torch.from_numpy(np.ascontiguousarray(mag_valid, dtype=bool))}
        return {"mask": torch.from_numpy(np.ascontiguousarray(make_mask_for(m, self.patch_grid, motion, valid, self.tubelet, rng)).reshape(-1))}


def make_mask_for(mcfg, patch_grid, motion, valid, tubelet, rng) -> np.ndarray:
    """The configured mask for one transformed clip; bool (T', Hp, Wp)."""
    from mgm.masking import make_mask

    options = {"topk": mcfg.topk, "jitter": mcfg.jitter, "init": mcfg.init}
    mask = make_mask(mcfg.strategy, grid=patch_grid, ratio=mcfg.ratio, motion=motion,
                     motion_valid=valid, tubelet=tubelet, rng=rng, **options)
    return np.asarray(mask, dtype=bool)


def _reason(e: BaseException, path: str) -> str:
    if type(e).__name__ == "VideoError" and getattr(e, "reason", None):
        return str(e.reason).splitlines()[0]
    msg = str(e).strip() or type(e).__name__
    for prefix in (f"{path}: ", f"{path}:", path):
        if msg.startswith(prefix):
            msg = msg[len(prefix):].strip() or type(e).__name__
            break
    if type(e).__name__ != "VideoError":
        msg = f"{type(e).__name__}: {msg}" if not msg.startswith(type(e).__name__) else msg
    return msg.splitlines()[0]


# ---------------------------------------------------------------- batching


def collate(items: list[dict]) -> dict:
    """Stack tensors, make int fields long tensors, concatenate the ``bad`` lists."""
    out: dict = {}
    for key in items[0]:
        vals = [it[key] for it in items]
        if key == "bad":
            out[key] = [s for v in vals for s in v]
        elif isinstance(vals[0], torch.Tensor):
            out[key] = torch.stack(vals)
        elif isinstance(vals[0], np.ndarray):
            out[key] = torch.from_numpy(np.stack(vals))
        elif isinstance(vals[0], (int, np.integer)):
            out[key] = torch.tensor(vals, dtype=torch.int64)
        elif isinstance(vals[0], float):
            out[key] = torch.tensor(vals, dtype=torch.float32)
        else:
            out[key] = vals
    return out


# ---------------------------------------------------------------- bad-video report


class BadVideoLog:
    """Counts and names the videos replaced during an epoch.

    ``update(batch["bad"])`` after each batch; ``end_epoch(epoch)`` returns
    ``{"epoch", "count" (distinct videos), "replacements" (items that needed one),
    "videos": [{"path", "reason", "times"}]}``, logs it (a warning when count > 0) and,
    when a path was given, appends it as one JSON line to that file.
    """

    def __init__(self, path: str | os.PathLike | None = None, logger: logging.Logger | None = None):
        self.path = Path(path) if path else None
        self.log = logger or log
        self._times: Counter = Counter()
        self._reason: dict[str, str] = {}
        self.total: dict[str, str] = {}      # every bad video seen in this run

    def update(self, bad) -> None:
        for entry in bad or ():
            path, sep, reason = str(entry).partition(": ")
            if path not in self._reason and path not in self.total:
                self.log.warning("bad video replaced: %s", entry)
            self._times[path] += 1
            self._reason[path] = reason if sep else "unreadable"
            self.total[path] = self._reason[path]

    def end_epoch(self, epoch: int) -> dict:
        videos = [{"path": p, "reason": self._reason[p], "times": n} for p, n in sorted(self._times.items())]
        summary = {"epoch": int(epoch), "count": len(videos),
                   "replacements": int(sum(self._times.values())), "videos": videos}
        if videos:
            names = ", ".join(f"{v['path']} ({v['reason']})" for v in videos[:20])
            more = f" and {len(videos) - 20} more" if len(videos) > 20 else ""
            self.log.warning("epoch %d: %d bad videos replaced %d times: %s%s", epoch, len(videos),
                             summary["replacements"], names, more)
        else:
            self.log.info("epoch %d: no bad videos", epoch)
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a") as f:
                f.write(json.dumps(summary) + "\n")
        self._times.clear()
        self._reason.clear()
        return summary
