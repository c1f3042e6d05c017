"""The video dataset: annotations -> (clip, motion guidance, label) items.

    ds = build_dataset(cfg, split="train", task="pretrain", guidance=True)
    ds.set_epoch(epoch)
    item = ds[i]   # video (3,T,H,W) float32, label, index, view, bad; with guidance=True also
                   # magnitude + magnitude_valid (T', Hp, Wp): the patch-grid motion the masks follow

The dataset never builds masks: the training step does, for the whole batch at once
(``mgm.engine.pretrain``), from the magnitude grids returned here.

Randomness of item i in epoch e is drawn from ``default_rng([run.seed, e, i, attempt])``:
the same seed gives the same items whatever the number of workers or their order.

A video that cannot be read (missing, corrupt, unsupported, decoder error) is replaced by
the next index (``i+1``, ``i+2``, ...; each attempt with its own seeded generator) and
named in the item's ``bad`` list as ``"path: reason"``; ``collate`` concatenates those
and ``BadVideoLog`` counts them per epoch. Known-bad videos are remembered per worker so
they are not decoded again, and still reported every time they are skipped.
"""
from __future__ import annotations

import json
import logging
import os
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from mgm.data import sampling, transforms
from mgm.data.annotations import AnnotationError, Annotations, load_annotations
from mgm.masking.guidance import motion_to_patch_magnitude
from mgm.video import probe_video, read_clip

log = logging.getLogger("mgm.data")

SPLITS = ("train", "val", "test")
TASKS = ("pretrain", "finetune", "linprobe", "eval")
MAX_REPLACEMENTS = 64


def annotation_source(cfg, split: str) -> str:
    d = cfg.data
    src = {"train": d.train, "val": d.val, "test": d.test or d.val}[split]
    if not src:
        raise AnnotationError(f"data.{split} is not set" + (" (nor data.val)" if split == "test" else ""))
    return src


def build_dataset(cfg, split: str = "train", task: str | None = None, guidance: bool = False) -> "VideoDataset":
    """The dataset of one split for one task (default: ``cfg.task``); ``guidance``: decode the
    motion (``data.motion``) and return its patch-grid magnitude with every item."""
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
    return VideoDataset(ann, cfg, split=split, task=task, guidance=guidance)


class VideoDataset(torch.utils.data.Dataset):
    def __init__(self, annotations: Annotations, cfg, split: str = "train", task: str = "pretrain",
                 guidance: bool = False):
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
        self.cell = d.motion_cell
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
        self.guidance = guidance
        self.motion_mode = d.motion if guidance else "none"
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
            self._nframes[vid] = int(probe_video(self.samples[vid].path).num_frames or 0)
        return self._nframes[vid]

    def load(self, vid: int, view: int, rng: np.random.Generator) -> dict:
        """Decode, sample and transform one view of video ``vid``. Raises on a bad video."""
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
                             grid=self.cell, seed=seed, indices=idx)
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
        motion, valid = (clip.motion, clip.motion_valid) if clip.motion_source != "none" else (None, None)
        if motion is not None and motion.shape[0] != T:    # truncated: repeat the last frame's
            keep = np.minimum(np.arange(T), motion.shape[0] - 1)
            motion, valid = motion[keep], valid[keep]
        frames, motion, valid = transforms.apply_clip(frames, motion, valid, g, self.cell)
        out = {"video": transforms.to_tensor(frames)}
        if self.guidance:
            mag, mag_valid = motion_to_patch_magnitude(motion, valid, self.patch_grid, self.tubelet)
            out["magnitude"] = torch.from_numpy(mag)
            out["magnitude_valid"] = torch.from_numpy(mag_valid)
        out["label"] = int(sample.label)
        out["index"] = int(vid)
        out["view"] = int(view)
        return out


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
