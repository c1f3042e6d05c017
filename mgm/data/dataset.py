"""The video dataset: annotations -> (clip, motion guidance, label) items.

    ds = build_dataset(cfg, split="train", task="pretrain", guidance=True)
    ds.set_epoch(epoch)
    item = ds[i]   # = ds.item(i, epoch); video (3,T,H,W) uint8 (transforms.normalize, on the
                   # device, makes the models' float32 input), label, index, view, bad, short,
                   # requested; with guidance=True also magnitude + magnitude_valid (T', Hp, Wp):
                   # the patch-grid motion the masks follow

The dataset never builds masks: the training step does, for the whole batch at once
(``mgm.engine.pretrain``), from the magnitude grids returned here.

Randomness of item i in epoch e is drawn from ``default_rng([run.seed, e, i, attempt])``:
the same seed gives the same items whatever the number of workers or their order. The trainer
reads ``ds.item(i, e)`` (its one DataLoader iterator spans epochs, so the epoch travels with the
index: ``mgm.engine.samplers``); ``ds[i]`` is ``ds.item(i, e)`` with the epoch of ``set_epoch``.

A video that cannot be used (missing, empty, not a video, no video stream, decoder error; on
the train split also fewer frames than ``data.num_frames``) is replaced by its own stand-in
(``mgm.data.replacement``: no good video stands in for two bad ones, different per epoch) and
named in the item's ``bad`` list as ``"path: reason (replaced by other_path)"``. A video shorter
than one clip but with at least ``data.num_frames`` frames is used (its last frame repeats)
and named in ``short``. ``collate`` concatenates both lists and ``BadVideoLog`` reports them per
epoch. Each process remembers what it learnt when opening a file (frame count or the reason it
is unusable), so a bad file is opened once per process.
"""
from __future__ import annotations

import numpy as np
import torch

from mgm.config import TASKS
from mgm.data import sampling, transforms
from mgm.data.annotations import AnnotationError, Annotations, load_annotations
from mgm.data.replacement import Replacements
from mgm.errors import UserError
from mgm.masking.guidance import motion_to_patch_magnitude
from mgm.video import probe_video, read_clip

SPLITS = ("train", "val", "test")


class DataError(UserError):
    """The data cannot give an item at all (every candidate video unusable).

    Raised in a DataLoader worker, torch raises it again in the main process with the worker's
    traceback folded into the message; only our own last line is kept, for a one-line error."""

    def __init__(self, message: str):
        if message.startswith("Caught ") and "Traceback" in message:
            last = message.rstrip().splitlines()[-1]
            message = last.split(f"{type(self).__name__}: ", 1)[-1]
        super().__init__(message)


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
        splits=d.splits, split_id=d.split_id,
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
        # frames one clip spans: a shorter video repeats its last frame
        self.span = self.num_frames if d.sampling == "segment" else (self.num_frames - 1) * self.stride + 1
        # stand-ins follow the run's seed, not the per-copy seed of repeated augmentation: the
        # copies of one bad entry show the same stand-in video
        self.replace_seed = cfg.run.seed
        # shared so that persistent workers see set_epoch too
        self._epoch = torch.zeros(1, dtype=torch.int64).share_memory_()
        self._unusable: dict[int, str] = {}  # per process: video index -> reason ("" = usable)
        self._nframes: dict[int, int] = {}   # per process: video index -> frame count
        self._replacements: Replacements | None = None
        self._last_clip = None               # test split: the crops of one clip decode once

    # ------------------------------------------------------------ API

    def __len__(self) -> int:
        return len(self.samples) * self.views

    def set_epoch(self, epoch: int) -> None:
        self._epoch[0] = int(epoch)

    @property
    def epoch(self) -> int:
        return int(self._epoch[0])

    def rng(self, index: int, epoch: int, attempt: int = 0, copy: int = 0) -> np.random.Generator:
        # copy c > 0 (repeated augmentation) draws from a shifted seed: its own crops and flips
        seed = (self.seed + 0x9E3779B1 * copy) & 0xFFFFFFFF
        return np.random.default_rng([seed, epoch, index, attempt])

    def replacements(self, epoch: int) -> Replacements:
        """Epoch ``epoch``'s stand-ins for unusable videos (``mgm.data.replacement``)."""
        r = self._replacements
        if r is None or r.epoch != epoch:
            r = Replacements(len(self.samples), self.replace_seed, epoch, self.is_unusable)
            self._replacements = r
        return r

    def __getitem__(self, index: int) -> dict:
        return self.item(index, self.epoch)

    def item(self, index: int, epoch: int, copy: int = 0) -> dict:
        """Item ``index`` as drawn in epoch ``epoch`` (augmentation, clip position, stand-ins);
        ``copy`` > 0: another draw of it (repeated augmentation, ``mgm.engine.samplers.EpochItems``)."""
        if not 0 <= index < len(self):
            raise IndexError(index)
        vid, view = divmod(index, self.views)
        failed: list[tuple[int, str]] = []
        for attempt, cand in enumerate(self._candidates(vid, epoch)):
            reason = self.unusable(cand)
            if not reason:
                try:
                    out = self.load(cand, view, self.rng(index, epoch, attempt, copy))
                except Exception as e:  # noqa: BLE001 - any failure of one video is reported, not fatal
                    reason = _reason(e, self.samples[cand].path)
            if reason:
                # a stand-in that is unusable when opened is reported when its own entry is drawn
                if cand == vid or not self.unusable(cand):
                    failed.append((cand, reason))
                continue
            used = self.samples[cand].path
            out["bad"] = [f"{self.samples[v].path}: {r} (replaced by {used})" for v, r in failed]
            n = self._nframes.get(cand, 0)
            out["short"] = ([f"{used}: {n} frames, clip needs {self.span} (the last frame repeats)"]
                            if n < self.span else [])
            out["requested"] = int(vid)
            return out
        raise DataError(
            f"no readable video stands in for index {vid} of {self.ann.source} (every candidate is "
            f"unusable; {self.samples[vid].path}: {self.unusable(vid) or failed[0][1]}); run "
            "`mgm data check` on the list")

    def _candidates(self, vid: int, epoch: int):
        yield vid
        yield from self.replacements(epoch).candidates(vid)    # only reached when vid fails

    # ------------------------------------------------------------ one video

    def unusable(self, vid: int) -> str:
        """Why video ``vid`` cannot be used, from opening it ("" when it can); once per process.
        On the train split a video with fewer frames than one clip has (``data.num_frames``) is
        skipped: its clip would be mostly one repeated frame with no motion."""
        if vid not in self._unusable:
            path = self.samples[vid].path
            try:
                info = probe_video(path)
            except Exception as e:  # noqa: BLE001 - reported with the reason
                self._unusable[vid] = _reason(e, path)
                return self._unusable[vid]
            n = self._nframes[vid] = int(info.num_frames or 0)
            reason = ""
            if n <= 0:
                reason = "no frames"
            elif self.split == "train" and n < self.num_frames:
                reason = (f"too short: {n} frames, clip needs {self.span} (fewer than "
                          f"data.num_frames={self.num_frames}: skipped)")
            elif self.motion_mode == "codec" and not info.has_motion_vectors:
                reason = (f"codec {info.codec} exports no motion vectors (data.motion=codec); "
                          "use data.motion=auto or transcode to H.264")
            self._unusable[vid] = reason
        return self._unusable[vid]

    def is_unusable(self, vid: int) -> bool:
        return bool(self.unusable(vid))

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
                             cell=self.cell, seed=seed, indices=idx)
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
        out = {"video": transforms.channels_first(frames)}
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
    """Stack tensors, make int fields long tensors, concatenate the ``bad`` and ``short`` lists."""
    out: dict = {}
    for key in items[0]:
        vals = [it[key] for it in items]
        if key in ("bad", "short"):
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
