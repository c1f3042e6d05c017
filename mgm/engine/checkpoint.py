"""Training checkpoints: atomic, rotated, resumable.

Layout under ``OUT_DIR/checkpoints/``::

    step_00000120/            one checkpoint = one directory
        model.safetensors     the weights (+ model.yaml), readable by mgm.models.load_checkpoint
        trainer.pt            optimiser, grad scaler, schedule, sampler position, RNG states, ...
        meta.json             step, epoch, time

A checkpoint is written into ``.tmp-step_...`` (every file flushed and fsync'ed) and then renamed
to its final name, so a directory with a final name is always complete: a run killed at any
moment leaves at worst a ``.tmp-*`` directory, which is ignored and removed by the next save.
Old checkpoints beyond ``keep_last`` are renamed to ``.trash-*`` before being deleted, for the
same reason. Only rank 0 writes.

Reading back (``--resume auto``): ``resume_candidates`` lists the complete checkpoints newest
first and the trainer takes the first that loads. A checkpoint that does not (a truncated file,
or a ``trainer.pt`` that ``torch.load(weights_only=True)`` refuses because unpickling it would run
code) is skipped with a message saying why — refused files are never loaded another way.
"""
from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import time
from pathlib import Path
from typing import Callable

import torch

from mgm.models.checkpoint import CheckpointError

_NAME = re.compile(r"^step_(\d{8,})$")


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_tree(path: Path) -> None:
    for p in path.rglob("*"):
        if p.is_file():
            with open(p, "rb+") as f:
                os.fsync(f.fileno())
    _fsync_dir(path)


class CheckpointManager:
    def __init__(self, out_dir: str | os.PathLike, keep_last: int = 2):
        self.dir = Path(out_dir) / "checkpoints"
        self.keep_last = max(1, int(keep_last))

    def list(self) -> list[tuple[int, Path]]:
        """Complete checkpoints, oldest first."""
        if not self.dir.is_dir():
            return []
        found = []
        for p in self.dir.iterdir():
            m = _NAME.match(p.name)
            if m and p.is_dir() and (p / "meta.json").exists():
                found.append((int(m.group(1)), p))
        return sorted(found)

    def latest(self) -> Path | None:
        ckpts = self.list()
        return ckpts[-1][1] if ckpts else None

    def save(self, step: int, write: Callable[[Path], None], meta: dict | None = None) -> Path:
        """Call ``write(tmp_dir)`` to fill a fresh directory, then publish it atomically."""
        self.dir.mkdir(parents=True, exist_ok=True)
        for p in self.dir.glob(".tmp-*"):
            shutil.rmtree(p, ignore_errors=True)
        final = self.dir / f"step_{step:08d}"
        tmp = self.dir / f".tmp-{final.name}-{os.getpid()}"
        tmp.mkdir()
        write(tmp)
        info = {"step": step, "time": time.time(), **(meta or {})}
        (tmp / "meta.json").write_text(json.dumps(info, indent=1))
        _fsync_tree(tmp)
        if final.exists():  # the same step saved again (epoch end right after a step save)
            trash = self.dir / f".trash-{final.name}-{os.getpid()}"
            os.rename(final, trash)
            shutil.rmtree(trash, ignore_errors=True)
        os.rename(tmp, final)
        _fsync_dir(self.dir)
        self._rotate()
        return final

    def _rotate(self) -> None:
        ckpts = self.list()
        for _, p in ckpts[: max(0, len(ckpts) - self.keep_last)]:
            trash = p.with_name(f".trash-{p.name}")
            os.rename(p, trash)
            shutil.rmtree(trash, ignore_errors=True)
        for p in self.dir.glob(".trash-*"):
            shutil.rmtree(p, ignore_errors=True)


def resume_candidates(resume: str, out_dir: str | os.PathLike) -> tuple[list[Path], bool]:
    """(checkpoints to try in order, explicit). ``""`` → none; ``auto`` → every complete
    checkpoint in ``out_dir``, newest first (none: a fresh start); a checkpoint directory → that
    one only (explicit: no fallback); a run directory → its checkpoints, newest first."""
    if not resume:
        return [], False
    if resume == "auto":
        return [p for _, p in reversed(CheckpointManager(out_dir).list())], False
    p = Path(resume)
    if p.is_dir() and (p / "meta.json").exists() and (p / "trainer.pt").exists():
        return [p], True
    if p.is_dir() and (p / "checkpoints").is_dir():
        found = [c for _, c in reversed(CheckpointManager(p).list())]
        if found:
            return found, False
    raise FileNotFoundError(f"run.resume={resume!r}: not a complete checkpoint directory "
                            "(expected step_XXXXXXXX/ with meta.json and trainer.pt)")


def resolve_resume(resume: str, out_dir: str | os.PathLike) -> Path | None:
    """The newest of ``resume_candidates`` (None: a fresh start)."""
    found, _ = resume_candidates(resume, out_dir)
    return found[0] if found else None


def load_first(candidates: list[Path], explicit: bool, load: Callable[[Path], None]) -> tuple[Path | None, list[str]]:
    """Call ``load`` on each candidate until one does not raise CheckpointError. Returns (the
    checkpoint loaded or None when there were none, messages naming those skipped and why).
    An explicit checkpoint that fails, or no candidate loading, is a CheckpointError."""
    skipped: list[str] = []
    for path in candidates:
        try:
            load(path)
            return path, skipped
        except CheckpointError as e:
            if explicit:
                raise
            skipped.append(f"resume: skipped {path.name}: {e}")
    if candidates:
        raise CheckpointError(f"no checkpoint in {candidates[0].parent} can be resumed from ("
                              + "; ".join(skipped) + "); move them away to start afresh")
    return None, skipped


def load_trainer_state(path: Path) -> dict:
    """``path/trainer.pt`` read with ``weights_only=True``; CheckpointError (one line) when it is
    unreadable or would run code when unpickled."""
    f = Path(path) / "trainer.pt"
    try:
        return torch.load(f, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"{f}: refusing to unpickle it: the file needs code beyond tensors and plain "
            f"containers, which weights_only=True does not run ({first_line(e)})") from None
    except (RuntimeError, OSError, EOFError, ValueError) as e:
        raise CheckpointError(f"{f}: not a readable checkpoint ({first_line(e)})") from None


def first_line(e: BaseException) -> str:
    """The first line of an exception's message, or its type when it has none."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
