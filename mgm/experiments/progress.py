"""One progress bar over a study (``mgm demo``, ``mgm study``, ``mgm ablate``), in estimated
seconds of wall time, so that its ETA means minutes of the whole command rather than runs left.

A run's weight is its estimated seconds of work (:data:`SECONDS`, measured for the tiny preset on
one of 2 busy cores; only their ratios matter to the ETA, which tqdm scales by the pace it sees).
A thread reads the step of every pretraining and fine-tune from its ``log.jsonl``, so the bar moves
during long runs; a probe writes no step log and counts when it finishes. ``jobs`` runs share the
wall clock. Runs finished by an earlier call are left out: the bar and its ETA are this call's work.
"""
from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

from tqdm import tqdm

from mgm.experiments.runner import read_results
from mgm.experiments.study import Study, clips_to_generate, plan, run_dir, task_key

# measured seconds on one of 2 busy cores: per pretraining / fine-tuning step, per test clip of a
# fine-tune's 2-view test, per probe run, per process start; per generated clip
SECONDS = {"pretrain": 0.26, "finetune": 0.75, "test_clip": 0.065, "probe": 12.0, "start": 4.0, "clip": 0.05}


def run_logs(s: Study, runs: list[tuple[str, dict]] | None = None) -> dict[Path, tuple[int, float]]:
    """The runs the bar follows (of ``runs``, default the whole plan: the pretrainings and
    fine-tunes): each one's ``log.jsonl`` -> (steps, estimated seconds of work)."""
    if runs is None:
        pre, evals = plan(s)
        runs = pre + evals
    work = {"pretrain": (s.pretrain_steps, s.pretrain_steps * SECONDS["pretrain"]),
            "finetune": (s.finetune_steps, s.finetune_steps * SECONDS["finetune"] + s.test * SECONDS["test_clip"])}
    return {run_dir(s, kind, args) / "log.jsonl": work[kind] for kind, args in runs if kind in work}


def runs_to_do(s: Study) -> list[tuple[str, dict]]:
    """The runs of ``s``'s plan that no earlier call finished (none of them in OUT/results.jsonl)."""
    finished = read_results(Path(s.out_dir) / "results.jsonl")
    pre, evals = plan(s)
    return [(kind, args) for kind, args in pre + evals if task_key(s, kind, args) not in finished]


def last_step(log: Path) -> int:
    """The last logged step of a run (0 before its first record)."""
    try:
        with open(log, "rb") as f:
            f.seek(max(0, f.seek(0, 2) - 600))
            for line in reversed(f.read().decode(errors="ignore").splitlines()):
                if '"step"' in line:
                    return int(json.loads(line).get("step", 0))
    except (OSError, ValueError):
        pass
    return 0


class Progress:
    """The bar: ``total`` estimated wall seconds, ``runs`` the logs to follow (:func:`run_logs`)."""

    def __init__(self, total: float, runs: dict[Path, tuple[int, float]], enabled: bool, jobs: int = 1,
                 name: str = "demo", data_seconds: float = 0.0, per_run: float = 0.0):
        """``data_seconds``: the data stage's share of ``total``; ``per_run``: what each run adds
        that its log does not show (process start, a probe), credited as it finishes."""
        self.runs, self.fixed, self.jobs = runs, 0.0, max(1, jobs)
        self.data_seconds, self.per_run = data_seconds, per_run
        # in a log file (a cluster job) a refresh a minute, not one a second
        interactive = sys.stderr.isatty()
        self.bar = tqdm(total=round(total), disable=not enabled, file=sys.stderr, smoothing=0.0,
                        mininterval=0.5 if interactive else 60.0,
                        bar_format=name + " [{desc}] {percentage:3.0f}%|{bar}| {elapsed} elapsed, ETA {remaining}")
        self.t0 = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, daemon=True)
        self._thread.start()

    @classmethod
    def for_study(cls, s: Study, name: str, enabled: bool, extra_seconds: float = 0.0,
                  todo: list[tuple[str, dict]] | None = None) -> Progress:
        """A bar over ``s``: its data (generated or reused), then the runs of its plan that are not
        finished yet (reused runs are no work of this call, and would make the pace look fast).
        ``todo``: :func:`runs_to_do`, when the caller has it already."""
        todo = runs_to_do(s) if todo is None else todo
        runs = run_logs(s, todo)
        jobs = max(1, s.jobs)
        data_seconds = SECONDS["clip"] * clips_to_generate(s) / jobs    # sets already there: no work
        per_run = (SECONDS["start"] + SECONDS["probe"] / 2) / jobs
        total = data_seconds + sum(w for _, w in runs.values()) / jobs + len(todo) * per_run + extra_seconds
        return cls(total, runs, enabled, jobs, name, data_seconds, per_run)

    def stage(self, name: str, done_seconds: float = 0.0) -> None:
        self.fixed += done_seconds
        self.bar.set_description_str(name)

    def run_done(self, i: int, n: int, label: str, reused: bool = False) -> None:
        """``run_study``'s progress callback."""
        self.stage(f"runs done {i}/{n}, last: {label}", 0.0 if reused else self.per_run)

    def eta(self) -> str:
        """'M:SS elapsed, about M:SS left' from the work done so far (for log lines)."""
        elapsed, done = time.monotonic() - self.t0, self.work()
        left = elapsed * max(0.0, self.bar.total - done) / done if done > 0 else float("nan")
        return f"{clock(elapsed)} elapsed, about {clock(left)} left"

    def write(self, line: str) -> None:
        """A line above the bar (or on stderr when it is disabled)."""
        self.bar.write(line, file=sys.stderr)

    def work(self) -> float:
        """Estimated wall seconds done: the finished stages plus each run's share of its steps."""
        runs = sum(weight * min(1.0, last_step(log) / max(1, steps)) for log, (steps, weight) in self.runs.items())
        return self.fixed + runs / self.jobs

    def _follow(self) -> None:
        while not self._stop.wait(1.0):
            work = self.work()
            if work > self.bar.n:
                self.bar.update(min(work, self.bar.total) - self.bar.n)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.bar.update(self.bar.total - self.bar.n)
        self.bar.close()


def clock(seconds: float) -> str:
    """H:MM:SS or M:SS; '?' for an unknown time."""
    if seconds != seconds:
        return "?"
    m, sec = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"
