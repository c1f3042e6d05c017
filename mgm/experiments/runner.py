"""Runs a study's plan (:func:`mgm.experiments.study.plan`): what is missing, in spawned workers.

Every run is a spawned process (``jobs`` at a time, one torch thread each) with its own directory
and log (:func:`run_dir`); results are appended to ``OUT/results.jsonl`` as they finish, keyed by
what makes two runs the same (:func:`task_key`), and a second call only runs what is missing.
Every run continues from its newest checkpoint (``run.resume=auto``; the trainer's checkpoints
carry the loss history, so a resumed run's summary covers the whole run), so an interrupted study
loses at most an epoch of each run in progress. When the study's process is killed, its workers
notice within a second: a training checkpoints after its current step and stops, so no orphan goes
on writing into a run directory that the next call continues.
"""
from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import sys
import threading
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Callable

from mgm.experiments.study import (
    SCRATCH,
    Study,
    finetune_run,
    plan,
    prepare_data,
    pretrain_run,
    pretrain_seed_for,
    pretrain_seed_list,
    probe_run,
    run_dir,
    task_key,
)
from mgm.provenance import installation, reuse_notice


def run_task(kind: str, study: dict, data: dict, args: dict) -> dict:
    """Entry point of a spawned process: its output goes to the run's own log."""
    s = Study(**study)
    out = run_dir(s, kind, args)
    out.parent.mkdir(parents=True, exist_ok=True)
    log = open(out.with_name(out.name + ".log"), "a")      # a resumed run's log follows the first part's
    sys.stdout = sys.stderr = log
    fn = {"pretrain": pretrain_run, "finetune": finetune_run, "probe": probe_run}[kind]
    try:
        return fn(s, {k: Path(v) for k, v in data.items()}, **args)
    except BaseException:
        traceback.print_exc(file=log)           # why the run ended, in its own log
        raise
    finally:
        log.flush()


def watch_parent(parent: int) -> None:
    """Pool initializer: the worker's runs stop when the study's process is gone. Killed by a
    signal, that process runs no clean-up and leaves its workers behind, and an orphaned training
    would go on writing into the run directory that the restarted study starts again."""
    # imported here, in the worker's main thread before any run (a thread importing torch while
    # a run imports it sees a half-initialised module); the study's own process need not load torch
    from mgm.engine.preemption import EXIT_PREEMPTED, request_stop, training_active

    def watch():
        while os.getppid() == parent:
            time.sleep(1.0)
        request_stop("the study's process ended")      # a training checkpoints after its step and stops
        while training_active():
            time.sleep(1.0)
        os._exit(EXIT_PREEMPTED)                         # nobody is left to take this worker's results

    threading.Thread(target=watch, daemon=True, name="study-parent").start()


def read_results(path: Path, notice: Callable[[str], None] | None = None) -> dict[str, dict]:
    """OUT/results.jsonl as {key: record}. A line cut short (the study killed while appending it)
    is skipped and said: its run is done again."""
    done: dict[str, dict] = {}
    if not path.exists():
        return done
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            done[rec["key"]] = rec
        except (ValueError, KeyError, TypeError):
            if notice:
                notice(f"{path}:{n}: not a result record (cut short?); that run is done again")
    return done


def adopt_legacy_runs(s: Study, evals: list, done: dict[str, dict], path: Path) -> int:
    """Evaluations recorded under the keys of studies made before fine-tune and probe keys were
    split (``task_key(legacy=True)``) are taken over: record re-keyed, run directory (and log)
    renamed to the new key's, results.jsonl rewritten. Returns how many."""
    renamed: dict[str, str] = {}
    for kind, args in evals:
        new, old = task_key(s, kind, args), task_key(s, kind, args, legacy=True)
        if new in done or old not in done:
            continue
        src, dst = run_dir(s, kind, args, key=old), run_dir(s, kind, args)
        for a, b in ((src, dst), (src.with_name(src.name + ".log"), dst.with_name(dst.name + ".log"))):
            if a.exists() and not b.exists():
                a.rename(b)
        done[new] = {**done.pop(old), "key": new}
        renamed[old] = new
    if renamed:
        lines = []
        for line in path.read_text().splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                lines.append(line)
                continue
            if rec.get("key") in renamed:
                rec["key"] = renamed[rec["key"]]
            lines.append(json.dumps(rec))
        tmp = path.with_suffix(".jsonl.tmp")
        tmp.write_text("".join(f"{line}\n" for line in lines))
        os.replace(tmp, path)
    return len(renamed)


def run_study(s: Study, progress: Callable[[int, int, str, bool], None] | None = None,
              notice: Callable[[str], None] | None = None, data: dict[str, Path] | None = None) -> list[dict]:
    """Run what is missing; returns every result row (also in OUT/results.jsonl), each with the
    installation that made it. ``progress(i, n, label, reused)`` is called as each run finishes (or
    is found finished). ``notice`` gets a line before anything runs when finished runs made with
    another installation are reused. ``data``: the sets from :func:`prepare_data`, when the caller
    has prepared them already."""
    out = Path(s.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = data or prepare_data(s, progress=progress is not None)
    path = out / "results.jsonl"
    done = read_results(path, notice)
    if path.exists() and not path.read_bytes().endswith(b"\n") and path.stat().st_size:
        with open(path, "a") as f:      # the next record must not continue a line cut short
            f.write("\n")
    pseeds = pretrain_seed_list(s)
    pre, evals = plan(s)
    adopted = adopt_legacy_runs(s, evals, done, path)
    if adopted and notice:
        notice(f"{adopted} evaluations recorded under the keys of an earlier version (a fine-tune's key held the "
               "probe's settings, and a probe's the fine-tune's) are reused under today's keys; their "
               "directories were renamed to match")
    here = installation()
    line = reuse_notice([done[k] for k in (task_key(s, kind, args) for kind, args in pre + evals) if k in done], here)
    if line and notice:
        notice(line)
    total, count = len(pre) + len(evals), 0
    rows: list[dict] = []
    weights: dict[tuple, str | None] = {(SCRATCH, p): None for p in pseeds + list(s.seeds)}
    study = dataclasses.asdict(s)
    sdata = {k: str(v) for k, v in data.items()}

    def finish(kind, args, res):
        nonlocal count
        count += 1
        key = task_key(s, kind, args)
        rec = done.get(key)
        if rec is not None:
            rec = {**rec, "arm": args["arm"], "reused": True}
        else:
            rec = {"key": key, "kind": kind, **args, **res, "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
                   "installation": here}
            with open(path, "a") as f:
                f.write(json.dumps(rec) + "\n")
        rows.append(rec)
        if kind == "pretrain":
            weights[(args["arm"], args["seed"])] = rec["weights"]
        if progress:
            progress(count, total, f"{kind} {args['arm']}" + (f" K={args['k']}" if "k" in args else "")
                     + f" seed {args['seed']}" + (f" draw {args['draw']}" if args.get("draw") else ""),
                     bool(rec.get("reused")))

    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max(1, s.jobs), mp_context=ctx, initializer=watch_parent,
                             initargs=(os.getpid(),)) as ex:
        running = {}
        for kind, args in pre:
            if task_key(s, kind, args) in done:
                finish(kind, args, {})
            else:
                running[ex.submit(run_task, kind, study, sdata, args)] = (kind, args)
        queue = list(evals)
        while queue or running:
            ready = [(kind, args) for kind, args in queue
                     if (args["arm"], pretrain_seed_for(s, args["seed"])) in weights]
            for kind, args in ready:
                queue.remove((kind, args))
                if task_key(s, kind, args) in done:
                    finish(kind, args, {})
                    continue
                w = weights[(args["arm"], pretrain_seed_for(s, args["seed"]))]
                running[ex.submit(run_task, kind, study, sdata, {**args, "weights": w})] = (kind, args)
            if not running:
                if queue:
                    raise RuntimeError(f"study: {len(queue)} evaluations wait for a pretraining that never ran")
                break
            finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for fut in finished:
                kind, args = running.pop(fut)
                try:
                    res = fut.result()
                except Exception as e:
                    raise RuntimeError(f"study: {kind} {args} failed ({type(e).__name__}: {e}); its log is in "
                                       f"{out / 'runs' / args['arm']}") from None
                finish(kind, args, res)
    return rows
