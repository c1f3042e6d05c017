"""The training loop shared by pretraining, fine-tuning and linear probing.

One optimiser step = ``accum_steps`` micro-batches of ``optim.batch_size`` clips per process
(times ``finetune.repeated_aug`` copies when repeated augmentation is on). Per step:

1. the lr of the step is set from the cosine schedule (per-group ``lr_scale`` = layer decay);
2. forward/backward per micro-batch under autocast (bf16/fp16 on GPU, fp32 on CPU), DDP
   gradient sync only on the last micro-batch;
3. the loss is averaged over ranks; a non-finite loss (or gradient norm) on any rank skips the
   step on every rank (gradients dropped, nothing updated), is counted and logged; more than
   ``run.max_bad_steps`` in a row stops the run with :class:`TrainingStopped`, leaving the last
   checkpoint as it was;
4. gradient clipping (``optim.clip_grad``), optimiser step (through GradScaler for fp16), and
   with ``optim.ema`` the weights' moving average, which replaces them when the run ends
   (``mgm.engine.ema``);
5. checkpoint every ``run.ckpt_every_steps`` steps, every ``run.ckpt_every_minutes`` and at
   each epoch end (rank 0, atomic);
6. every ``run.eval_every`` epochs, ``evaluate()`` (validation) and its metrics logged;
7. SIGTERM / SIGUSR1 (pre-emption): after the step, a checkpoint and :class:`TrainingInterrupted`
   on every rank (``mgm.engine.preemption``; the decision is all-reduced so all ranks agree).

``step_fn(batch, step, micro)`` gets the optimiser step it contributes to and the index of the
micro-batch within it, so that randomness drawn in the step (pretraining masks) is a function of
the position in the run and a resumed run draws the same. ``on_step(step)`` is called after every
optimiser step (and its checkpoint): progress displays, or a test stopping the process.

Resume (``run.resume=auto|PATH``) restores weights, optimiser, scaler, schedule, the epoch and
position inside it (the sampler skips what was consumed) and every rank's RNG states, so the
loss curve continues exactly as if the run had not stopped (CPU, same seed, same world size).
``auto`` takes the newest checkpoint that loads (``mgm.engine.trainer_checkpoints``); the log
drops the records of the steps that are redone (``mgm.engine.logging``).

Run setup (``setup_run``, ``RunContext``, ``make_loader``, ``wrap_model``, RNG state) is
``mgm.engine.run_context``.
"""
from __future__ import annotations

import math
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from mgm.data.bad_videos import BadVideoLog
from mgm.engine import distributed as du
from mgm.engine.checkpoint import CheckpointManager
from mgm.engine.ema import WeightAverage
from mgm.engine.logging import RunLogger, drop_records
from mgm.engine.optim import CosineSchedule, build_optimizer, scaled_lr
from mgm.engine.preemption import StopGuard, TrainingInterrupted
from mgm.engine.run_context import RunContext, RunError, make_loader
from mgm.engine.samplers import EpochItems, EpochStream, ResumableDistributedSampler
from mgm.engine.trainer_checkpoints import TrainerCheckpoints, load_model_weights


class TrainingStopped(RuntimeError):
    """The run stopped itself (e.g. repeated non-finite losses); the message says why."""


# ---------------------------------------------------------------- the loop


@dataclass
class StepOutput:
    loss: torch.Tensor
    clips: int
    stats: dict = field(default_factory=dict)   # extra scalars (already python floats or tensors)


def _ddp_no_sync(model, enabled: bool):
    fn = getattr(model, "no_sync", None)
    return fn() if enabled and callable(fn) else nullcontext()


def _grad_norm(params: list[torch.Tensor], max_norm: float | None) -> torch.Tensor:
    if max_norm is not None and max_norm > 0:
        return torch.nn.utils.clip_grad_norm_(params, max_norm)
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(())
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.float()) for g in grads]))


class Trainer(TrainerCheckpoints):
    """Runs ``epochs`` of ``step_fn(batch, step, micro) -> StepOutput`` with everything in the
    module doc.

    ``dataset``: read as ``dataset.item(index, epoch)`` when it has that method (its draws then
    follow the epoch: ``mgm.data.VideoDataset``), else ``dataset[index]`` (``mgm.engine.samplers``);
    ``model``: the raw module (checkpointed); ``train_model``: what ``step_fn`` calls (DDP /
    compiled wrapper); ``stateful``: extra objects with state_dict/load_state_dict to checkpoint
    (mixup, probe head...); ``save_weights(model, dir)`` writes the weights of a checkpoint;
    ``load_weights(model, dir)`` reads them back; ``evaluate() -> dict`` validates (every
    ``run.eval_every`` epochs); ``on_step(step)`` runs after every optimiser step.
    """

    def __init__(self, ctx: RunContext, model: torch.nn.Module, train_model, dataset,
                 step_fn: Callable[[dict, int, int], StepOutput], params: list[torch.Tensor] | None = None,
                 optimizer: torch.optim.Optimizer | None = None, collate_fn=None,
                 stateful: dict | None = None,
                 save_weights: Callable[[torch.nn.Module, Path], None] | None = None,
                 load_weights: Callable[[torch.nn.Module, Path], None] | None = None,
                 evaluate: Callable[[], dict] | None = None,
                 on_step: Callable[[int], None] | None = None, desc: str = "train",
                 shuffle: bool = True, repeats: int = 1):
        cfg = ctx.cfg
        self.ctx, self.cfg = ctx, cfg
        self.model, self.train_model, self.step_fn = model, train_model, step_fn
        self.repeats = max(1, repeats)
        self.dataset = dataset
        d = ctx.dist
        self.sampler = ResumableDistributedSampler(
            len(dataset), num_replicas=d.world_size, rank=d.rank, shuffle=shuffle,
            seed=cfg.run.seed, repeats=self.repeats, drop_last=False)
        self.loader_batch = cfg.optim.batch_size * self.repeats
        self.steps_per_epoch = len(self.sampler) // self.loader_batch // ctx.accum_steps
        if self.steps_per_epoch < 1:
            raise RunError(
                f"the training set ({len(dataset)} videos) gives no full optimiser step with "
                f"batch {cfg.optim.batch_size} x {ctx.accum_steps} accumulation x "
                f"{d.world_size} processes; lower optim.batch_size")
        # one DataLoader iterator for the whole run (mgm.engine.samplers), each epoch cut to the
        # clips of its optimiser steps: the workers decode across epoch boundaries
        stream = EpochStream(self.sampler, self.steps_per_epoch * ctx.accum_steps * self.loader_batch,
                             cfg.optim.epochs)
        self.loader = make_loader(ctx, EpochItems(dataset, self.repeats), stream, self.loader_batch, True,
                                  collate_fn)
        self.batches = None                # its iterator, made by fit
        self.global_batch = cfg.optim.batch_size * ctx.accum_steps * d.world_size
        self.lr = scaled_lr(cfg.optim.base_lr, self.global_batch)
        self.params = params if params is not None else [p for p in model.parameters() if p.requires_grad]
        self.optimizer = optimizer or build_optimizer(cfg, model, self.lr)
        self.total_steps = cfg.optim.epochs * self.steps_per_epoch
        self.schedule = CosineSchedule(self.optimizer, self.lr, self.total_steps,
                                       round(cfg.optim.warmup_epochs * self.steps_per_epoch),
                                       cfg.optim.min_lr)
        self.stateful = stateful or {}
        self.ema = WeightAverage(model, cfg.optim.ema) if cfg.optim.ema > 0 else None
        self.save_weights = save_weights or self.save_model_weights
        self.load_weights = load_weights or load_model_weights
        self.evaluate = evaluate
        self.on_step = on_step
        self.desc = desc
        self.ckpt = CheckpointManager(ctx.out_dir, cfg.run.keep_last)
        self.step = 0
        self.epoch = 0
        self.step_in_epoch = 0
        self.bad_steps_total = 0
        self.bad_in_a_row = 0
        self.last_ckpt: Path | None = None
        self.saved_step: int | None = None       # the step of the newest checkpoint
        self.history: list[dict] = []      # per step: step, loss, lr (every rank)
        self.last_val: dict = {}           # the newest evaluation: epoch and metrics
        # step time split into data wait and compute, and "seconds": the wall time of fit (the
        # evaluations and checkpoints included) summed over the processes of a resumed run
        self.timing = {"data": 0.0, "compute": 0.0, "steps": 0, "clips": 0, "seconds": 0.0}
        self._wall_from: tuple[float, float] | None = None   # (timing["seconds"], perf_counter) at fit start
        # rank 0 reports the epoch's unusable / short videos; the other ranks keep theirs until
        # the epoch ends (both travel in checkpoints, so a resumed epoch's report is whole)
        self.bad_log = BadVideoLog(ctx.out_dir / "bad_videos.jsonl") if d.is_main else None
        self._bad_other_ranks: list[tuple[list, list]] = []
        self.guard = StopGuard(cfg.run.ckpt_every_minutes, ctx.device)

    # ------------------------------------------------------------ run

    def fit(self) -> dict:
        ctx, cfg = self.ctx, self.cfg
        resume, skipped = self.resume_newest()
        self._wall_from = (self.timing.get("seconds", 0.0), time.perf_counter())
        max_steps = cfg.run.max_steps or self.total_steps
        max_steps = min(max_steps, self.total_steps)
        ctx.logger = logger = RunLogger(ctx.out_dir, enabled=ctx.dist.is_main,
                                        tensorboard=cfg.run.tensorboard, total_steps=max_steps,
                                        initial_step=self.step, desc=self.desc,
                                        restart_at=self.step if cfg.run.resume else None)
        if cfg.run.resume and self.bad_log is not None:   # this epoch's report is written again
            drop_records(self.bad_log.path, lambda r: r.get("epoch", 0) < self.epoch)
        for text in skipped:
            logger.message(text)
        if resume is not None:
            logger.message(f"resumed from {resume} at step {self.step} (epoch {self.epoch}, "
                           f"step {self.step_in_epoch} of {self.steps_per_epoch})")
        logger.message(
            f"{self.desc}: {len(self.dataset)} videos, {ctx.dist.world_size} process(es) on "
            f"{ctx.device}, global batch {self.global_batch} (per process {cfg.optim.batch_size} x "
            f"{ctx.accum_steps} accumulation{f' x {self.repeats} repeated aug' if self.repeats > 1 else ''}), "
            f"lr {self.lr:.3g}, {self.steps_per_epoch} steps/epoch, {self.total_steps} steps")
        done = self.step >= max_steps
        if done and resume is not None and self.step_in_epoch == 0 and self.epoch:
            # resumed after its last epoch had ended: that epoch's evaluation again, so the
            # caller's result (a linear probe's val accuracy) is the same as the first run's
            self._validate(self.epoch)
        try:
            with self.guard:      # made inside: the workers inherit the guard's signal handling
                if not done:
                    self.sampler.set_epoch(self.epoch)
                    self.sampler.set_start(self.step_in_epoch * ctx.accum_steps * self.loader_batch)
                    self.batches = iter(self.loader)
                while not done and self.epoch < cfg.optim.epochs:
                    done = self._epoch(max_steps)
            if self.ema is not None and done:
                self.ema.copy_to(self.model)
                logger.message(f"the run's weights are now the average of its weights (optim.ema={cfg.optim.ema}, "
                               f"{self.ema.updates} steps); its checkpoints keep the trained ones")
        finally:
            logger.close()
            # loader workers would otherwise outlive the run (the Trainer sits in reference
            # cycles) until interpreter exit, where they are killed with a traceback
            self.batches = self.loader = None
            self.tick_seconds()
        return {"step": self.step, "epoch": self.epoch, "bad_steps": self.bad_steps_total,
                "history": self.history, "timing": dict(self.timing),
                **({"val": dict(self.last_val)} if self.last_val else {}),
                "checkpoint": str(self.last_ckpt) if self.last_ckpt else None}

    def tick_seconds(self) -> None:
        """Bring timing["seconds"] up to now (a checkpoint carries the wall time until it)."""
        if self._wall_from is not None:
            before, start = self._wall_from
            self.timing["seconds"] = before + time.perf_counter() - start

    def _epoch(self, max_steps: int) -> bool:
        ctx, cfg, logger = self.ctx, self.cfg, self.ctx.logger
        accum = ctx.accum_steps
        self.train_model.train()
        while self.step_in_epoch < self.steps_per_epoch and self.step < max_steps:
            t0 = time.perf_counter()
            lr = self.schedule.apply(self.step)
            loss_sum, clips, bad, stats_acc, t_data = 0.0, 0, False, {}, 0.0
            self.optimizer.zero_grad(set_to_none=True)
            for micro in range(accum):
                td = time.perf_counter()
                batch = next(self.batches)
                t_data += time.perf_counter() - td
                if isinstance(batch, dict) and (batch.get("bad") or batch.get("short")):
                    if self.bad_log is not None:
                        self.bad_log.update(batch["bad"], batch.get("short"))  # rank 0: at once
                    else:
                        self._bad_other_ranks.append((batch["bad"], batch.get("short", [])))
                last = micro == accum - 1
                with _ddp_no_sync(self.train_model, not last):
                    with ctx.autocast():
                        out = self.step_fn(batch, self.step, micro)
                    loss = out.loss
                    scaled = loss / accum
                    if ctx.scaler is not None:
                        scaled = ctx.scaler.scale(scaled)
                    scaled.backward()
                red = du.all_reduce_mean(loss.detach().float().reshape(1).to(ctx.device))
                lv = float(red.item())
                if not math.isfinite(lv):
                    bad = True
                loss_sum += lv
                clips += out.clips
                for k, v in out.stats.items():
                    stats_acc[k] = stats_acc.get(k, 0.0) + float(v) / accum
            loss_val = loss_sum / accum
            gnorm = float("nan")
            if not bad:
                if ctx.scaler is not None:
                    ctx.scaler.unscale_(self.optimizer)
                gn = _grad_norm(self.params, cfg.optim.clip_grad)
                gnorm = float(gn)
                if not math.isfinite(gnorm) and ctx.scaler is None:
                    bad = True
            if bad:
                self.optimizer.zero_grad(set_to_none=True)
                self.bad_steps_total += 1
                self.bad_in_a_row += 1
                logger.log("train", self.step + 1, nonfinite=1, loss=loss_val, lr=lr,
                           bad_steps_total=self.bad_steps_total)
                logger.message(f"step {self.step + 1}: non-finite loss/gradient ({loss_val}); step "
                               f"skipped ({self.bad_in_a_row} in a row, {self.bad_steps_total} in total)")
                if self.bad_in_a_row > cfg.run.max_bad_steps:
                    where = self.last_ckpt or "none written yet"
                    raise TrainingStopped(
                        f"{self.bad_in_a_row} optimiser steps in a row had a non-finite loss or "
                        f"gradient (run.max_bad_steps={cfg.run.max_bad_steps}); stopping. The last "
                        f"checkpoint is intact: {where}. Lower the lr, check the data, or use "
                        "run.precision=fp32/bf16.")
            else:
                self.bad_in_a_row = 0
                if ctx.scaler is not None:
                    ctx.scaler.step(self.optimizer)
                    ctx.scaler.update()
                else:
                    self.optimizer.step()
                if self.ema is not None:
                    self.ema.update(self.model)
            self.schedule.step_num = self.step + 1
            self.step += 1
            self.step_in_epoch += 1
            dt = time.perf_counter() - t0
            global_clips = clips * ctx.dist.world_size
            self.timing["data"] += t_data
            self.timing["compute"] += dt - t_data
            self.timing["steps"] += 1
            self.timing["clips"] += global_clips
            self.history.append({"step": self.step, "loss": loss_val, "lr": lr, "skipped": bad})
            rec = {"loss": loss_val, "lr": lr, "clips_per_s": global_clips / max(dt, 1e-9),
                   "steps_per_s": 1.0 / max(dt, 1e-9), "data_time": t_data, "step_time": dt,
                   "grad_norm": gnorm, "epoch": self.epoch + self.step_in_epoch / self.steps_per_epoch,
                   **stats_acc}
            if self.step % max(1, cfg.run.log_every) == 0 or self.step == max_steps:
                logger.log("train", self.step, **rec)
            logger.progress(1, loss=loss_val, lr=lr, clips_s=rec["clips_per_s"])
            end_of_epoch = self.step_in_epoch >= self.steps_per_epoch
            # no checkpoint while non-finite steps are in a row: the last good one stays newest
            if (cfg.run.ckpt_every_steps and self.step % cfg.run.ckpt_every_steps == 0
                    and not end_of_epoch and self.bad_in_a_row == 0):
                self.save()
            if not end_of_epoch:
                if self.on_step is not None:
                    self.on_step(self.step)
                self._poll_stop()
        finished = self.step_in_epoch >= self.steps_per_epoch
        if finished:
            self._report_videos()
            self._validate(self.epoch + 1)
            self.epoch += 1
            self.step_in_epoch = 0
            if self.bad_in_a_row == 0:
                self.save()
        elif (self.step >= max_steps and self.bad_in_a_row == 0
              and (cfg.run.ckpt_every_steps == 0 or self.step % cfg.run.ckpt_every_steps)):
            self.save()   # stopped by run.max_steps mid-epoch: keep the position
        if finished:
            if self.on_step is not None:
                self.on_step(self.step)      # after the end-of-epoch checkpoint
            self._poll_stop()
        return self.step >= max_steps

    def _validate(self, epoch: int) -> None:
        """After epoch ``epoch`` (counted from 1): ``evaluate`` when ``run.eval_every`` asks for it,
        its metrics in the log and, the newest, in :meth:`fit`'s result (``val``)."""
        every = self.cfg.run.eval_every
        if self.evaluate is None or every <= 0 or epoch % every:
            return
        metrics = self.evaluate()
        if metrics:
            self.last_val = {"epoch": epoch, **metrics}
            self.ctx.logger.log("val", self.step, epoch=epoch, **metrics)
            self.ctx.logger.message(f"epoch {epoch}: " + ", ".join(
                f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items()))

    def _poll_stop(self) -> None:
        """After every optimiser step, on every rank: the checkpoint ``run.ckpt_every_minutes``
        asks for, and the clean stop on SIGTERM/SIGUSR1 (``mgm.engine.preemption``); both are
        decided by all ranks together."""
        stop, due = self.guard.poll()
        if (stop or due) and self.saved_step != self.step and self.bad_in_a_row == 0:
            self.save()
        if stop:
            where = (f"checkpoint {self.last_ckpt}" if self.saved_step == self.step else
                     f"no checkpoint during non-finite steps, the last is {self.last_ckpt or 'none'}")
            raise TrainingInterrupted(f"{self.guard.signal_name()}: stopped after step {self.step} "
                                      f"({where}); continue with --resume auto", self.step,
                                      str(self.last_ckpt) if self.last_ckpt else None)

    def _report_videos(self) -> None:
        """End of epoch: the unusable and short videos of every rank in rank 0's report."""
        others = du.all_gather_object(self._bad_other_ranks) if self.ctx.dist.distributed else []
        self._bad_other_ranks = []
        if self.bad_log is None:
            return
        for pending in others:
            for bad, short in pending:
                self.bad_log.update(bad, short)
        rep = self.bad_log.end_epoch(self.epoch)
        # the first 50 of each list; bad_videos.jsonl has them all
        self.ctx.logger.log(
            "data", self.step, epoch=self.epoch + 1, bad_videos=rep["count"], replacements=rep["replacements"],
            videos=[f"{v['path']}: {v['reason']} (replaced by {', '.join(v['replaced_by'])})"
                    for v in rep["videos"][:50]],
            short_videos=rep["short_count"], short=[f"{v['path']}: {v['note']}" for v in rep["short"][:50]])
