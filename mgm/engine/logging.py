"""Run logging on rank 0: a tqdm bar (ETA, clips/s), TensorBoard scalars, a JSON-lines file.

Every record goes to ``OUT_DIR/log.jsonl`` as one strict JSON object per line (``{"step": ..,
"kind": "train", "loss": .., "lr": .., ...}``; a non-finite number is written as ``null``); scalars also go to TensorBoard under ``KIND/NAME``
(``train/loss``, ``train/lr``, ``train/clips_per_s``, ``train/masked_ratio``, ``val/top1`` ...).
Other ranks get a logger that does nothing.

After a resume from step ``s`` (``restart_at=s``), the records of steps after ``s`` that the
stopped run had logged are dropped from ``log.jsonl`` (they are redone, identically) and a
``{"kind": "resume", "step": s, "dropped": n}`` record marks the point, so the file holds each
step once and a plot of it is the curve of the run; TensorBoard purges the same steps.
"""
from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path


class RunLogger:
    def __init__(self, out_dir: str | Path, enabled: bool = True, tensorboard: bool = True,
                 total_steps: int = 0, initial_step: int = 0, desc: str = "train",
                 progress: bool = True, restart_at: int | None = None):
        self.enabled = enabled
        self.out_dir = Path(out_dir)
        self._tb = None
        self._bar = None
        self._file = None
        if not enabled:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        path = self.out_dir / "log.jsonl"
        dropped = 0
        if restart_at is not None:
            dropped = drop_records(path, lambda r: r.get("step") is None or r["step"] <= restart_at)
        self._file = open(path, "a", buffering=1)
        if restart_at is not None:
            self._file.write(json.dumps({"kind": "resume", "step": restart_at, "time": round(time.time(), 3),
                                         "dropped": dropped}) + "\n")
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                purge = {"purge_step": restart_at + 1} if restart_at is not None else {}
                self._tb = SummaryWriter(str(self.out_dir / "tb"), **purge)
            except Exception as e:  # tensorboard missing or broken: keep training
                print(f"warning: TensorBoard disabled ({e})", file=sys.stderr)
        if progress and total_steps:
            from tqdm import tqdm

            self._bar = tqdm(total=total_steps, initial=initial_step, desc=desc, unit="step",
                             dynamic_ncols=True, file=sys.stderr, smoothing=0.1)

    def log(self, kind: str, step: int, **values) -> None:
        if not self.enabled:
            return
        clean = {k: (float(v) if hasattr(v, "__float__") and not isinstance(v, (int, bool)) else v)
                 for k, v in values.items()}
        # strict JSON: a non-finite number is written as null
        rec = {"kind": kind, "step": step, "time": round(time.time(), 3),
               **{k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in clean.items()}}
        self._file.write(json.dumps(rec, allow_nan=False) + "\n")
        if self._tb is not None:
            for k, v in clean.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                    self._tb.add_scalar(f"{kind}/{k}", v, step)

    def progress(self, n: int = 1, **postfix) -> None:
        if self._bar is not None:
            self._bar.update(n)
            if postfix:
                self._bar.set_postfix({k: (f"{v:.4g}" if isinstance(v, float) else v)
                                       for k, v in postfix.items()}, refresh=False)

    def message(self, text: str) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr, flush=True)
        self._file.write(json.dumps({"kind": "message", "time": round(time.time(), 3),
                                     "text": text}) + "\n")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self._tb is not None:
            self._tb.flush()
            self._tb.close()
            self._tb = None
        if self._file is not None:
            self._file.close()
            self._file = None


def drop_records(path: str | Path, keep) -> int:
    """Rewrite a JSON-lines file keeping the records for which ``keep(record)`` is true
    (atomically: a crash leaves the old file or the new one). Returns how many were dropped."""
    path = Path(path)
    if not path.exists():
        return 0
    kept, dropped = [], 0
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError:           # a line cut short by a kill: drop it
            dropped += 1
            continue
        if keep(rec):
            kept.append(line)
        else:
            dropped += 1
    if dropped:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text("".join(k + "\n" for k in kept))
        tmp.replace(path)
    return dropped


def read_log(path: str | Path, kind: str | None = None) -> list[dict]:
    """Records of a ``log.jsonl`` (optionally of one kind), in file order."""
    out = []
    for line in Path(path).read_text().splitlines():
        if line.strip():
            rec = json.loads(line)
            if kind is None or rec.get("kind") == kind:
                out.append(rec)
    return out
