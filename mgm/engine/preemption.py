"""Stopping cleanly before pre-emption, and checkpoints by the clock.

SLURM and Kubernetes send SIGTERM some time before they kill a job (SLURM can be asked for
SIGUSR1 earlier: ``#SBATCH --signal=USR1@120``). During training, either signal only sets a flag:
the current optimiser step finishes, then every rank learns whether *any* rank got a signal
(one all-reduce per step, so no rank is left waiting in a collective while the others leave),
rank 0 writes a checkpoint (atomic, ``mgm.engine.checkpoint``) and every rank raises
:class:`TrainingInterrupted`; ``mgm`` exits with :data:`EXIT_PREEMPTED` and ``--resume auto``
continues exactly. A second signal kills the process at once (the default action).

:func:`request_stop` does the same from another thread (``mgm study``'s runs stop that way
when the study's process is gone).

``run.ckpt_every_minutes`` rides on the same all-reduce: a checkpoint is written when that much
time has passed since the last one on any rank, so every rank takes part in it.

DataLoader workers ignore both signals while a guard is active in the training process (SLURM
signals every process of the job step, and a worker killed by SIGTERM would end the run with a
DataLoader error before the checkpoint). Outside a guard they die of them as usual: that is how
Python's exit terminates daemon workers a failed run left behind.
"""
from __future__ import annotations

import signal
import threading
import time

import torch

from mgm.engine import distributed as du

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)
# EX_TEMPFAIL (sysexits.h): "temporary failure, the user is invited to retry" — run the same
# command with --resume auto. Distinct from 2 (bad input) and 3 (the run stopped itself).
EXIT_PREEMPTED = 75


class TrainingInterrupted(RuntimeError):
    """A stop signal ended the run after a complete optimiser step; the message names the
    checkpoint to resume from."""

    def __init__(self, message: str, step: int, checkpoint: str | None):
        super().__init__(message)
        self.step, self.checkpoint = step, checkpoint


_gate: torch.Tensor | None = None
_active: "StopGuard | None" = None      # the guard of the training running in this process


def request_stop(reason: str) -> bool:
    """Stop this process's running training as a stop signal would (after the current step, with
    a checkpoint; ``reason`` heads the message), from any thread. False when none is running."""
    guard = _active
    if guard is None:
        return False
    if guard.received is None:
        guard.received = reason
    return True


def training_active() -> bool:
    """Whether a :class:`StopGuard` is active in this process (a training is running)."""
    return _active is not None


def stop_signal_gate() -> torch.Tensor:
    """A flag in shared memory, 1 while a :class:`StopGuard` is active in this process; made
    once, before any worker is started, and handed to the workers (``worker_stop_signals``)."""
    global _gate
    if _gate is None:
        _gate = torch.zeros(1, dtype=torch.int8).share_memory_()
    return _gate


def worker_stop_signals(gate: torch.Tensor, worker_id: int = 0) -> None:
    """``worker_init_fn`` (with ``functools.partial(worker_stop_signals, stop_signal_gate())``):
    a stop signal is ignored while the training process is guarded, else it kills the worker."""
    def handle(signum, frame):
        if int(gate[0]):
            return
        signal.signal(signum, signal.SIG_DFL)
        signal.raise_signal(signum)

    for sig in STOP_SIGNALS:
        signal.signal(sig, handle)


class StopGuard:
    """``with StopGuard(minutes, device) as guard:`` installs the handlers (main thread only;
    elsewhere signals keep their default action) and restores the previous ones on exit.
    ``guard.poll()`` after every optimiser step, on every rank, returns (stop, checkpoint_due)
    as agreed by all ranks; ``guard.reset_clock()`` after every checkpoint."""

    def __init__(self, ckpt_every_minutes: float = 0.0, device: torch.device | None = None):
        self.every_s = max(0.0, float(ckpt_every_minutes)) * 60.0
        self.device = device or torch.device("cpu")
        self.received: str | None = None
        self._previous: dict = {}
        self._last = time.monotonic()

    def __enter__(self) -> "StopGuard":
        global _active
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
            stop_signal_gate()[0] = 1
        _active = self
        return self

    def __exit__(self, *exc) -> None:
        global _active
        if _active is self:
            _active = None
        for sig, old in self._previous.items():
            signal.signal(sig, old)
        if self._previous:
            stop_signal_gate()[0] = 0
        self._previous.clear()

    def _handle(self, signum, frame) -> None:
        if self.received is not None:          # the second signal: stop now
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)
            return
        self.received = signal.Signals(signum).name

    def reset_clock(self) -> None:
        self._last = time.monotonic()

    def poll(self) -> tuple[bool, bool]:
        """(stop, checkpoint due) on any rank; a collective when distributed."""
        due = self.every_s > 0 and time.monotonic() - self._last >= self.every_s
        flags = torch.tensor([float(self.received is not None), float(due)], device=self.device)
        flags = du.all_reduce_sum(flags)
        return bool(flags[0].item() > 0), bool(flags[1].item() > 0)

    def signal_name(self) -> str:
        return self.received or "a stop signal on another process"
