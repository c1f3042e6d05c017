"""The checkpoint side of :class:`mgm.engine.trainer.Trainer`: what a training checkpoint holds,
writing it, and continuing from the newest one that loads.

``trainer.pt`` holds the optimiser, GradScaler, schedule, epoch and position inside it, every
rank's RNG states and extra state (mixup, ...), the global batch, the loss history and timing so
far, and the epoch-in-progress counts of the bad-video report — plain types and tensors only, read
back with ``torch.load(weights_only=True)``. The weights go next to it through ``save_weights`` /
``load_weights`` (``model.safetensors`` by default), and with ``optim.ema`` their moving average
(``ema.safetensors``, ``mgm.engine.ema``).

A mixin: it uses the attributes ``Trainer.__init__`` sets (ctx, cfg, model, optimizer, schedule,
stateful, ckpt, guard, bad_log, step counters, ...).
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from mgm.config import config_to_dict
from mgm.engine import distributed as du
from mgm.engine.checkpoint import first_line, load_first, load_trainer_state, resume_candidates
from mgm.engine.run_context import RunError, rng_state, set_rng_state
from mgm.models.checkpoint import CheckpointError, save_checkpoint, unwrap
from mgm.provenance import differences, installation


class TrainerCheckpoints:
    def state_dict(self) -> dict:
        rng = du.all_gather_object(rng_state())
        self.tick_seconds()
        return {
            "step": self.step, "epoch": self.epoch, "step_in_epoch": self.step_in_epoch,
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.ctx.scaler.state_dict() if self.ctx.scaler else None,
            "schedule": self.schedule.state_dict(),
            "sampler": {"epoch": self.epoch, "start": self.step_in_epoch * self.ctx.accum_steps * self.loader_batch},
            "rng": rng, "world_size": self.ctx.dist.world_size,
            "bad_steps_total": self.bad_steps_total, "bad_in_a_row": self.bad_in_a_row,
            "stateful": du.all_gather_object({k: v.state_dict() for k, v in self.stateful.items()}),
            "global_batch": self.global_batch, "installation": installation(),
            "ema_updates": self.ema.updates if self.ema is not None else None,
            # the curve so far: a resumed run's result (fit's "history", "timing") covers the
            # whole run, which summaries of the run's loss (mgm study's table) rely on
            "history": self.history, "timing": dict(self.timing),
            "bad_videos": {"log": self.bad_log.state_dict() if self.bad_log else None,
                           "pending": du.all_gather_object(self._bad_other_ranks)},
        }

    def save(self) -> None:
        state = self.state_dict()      # collective: every rank takes part
        if self.ctx.dist.is_main:
            def write(d: Path):
                self.save_weights(self.model, d)
                if self.ema is not None:
                    self.ema.save(d)
                torch.save(state, d / "trainer.pt")

            self.last_ckpt = self.ckpt.save(self.step, write, {"epoch": self.epoch,
                                                               "step_in_epoch": self.step_in_epoch})
        self.last_ckpt = Path(du.broadcast_object(str(self.last_ckpt)))
        self.saved_step = self.step
        self.guard.reset_clock()
        du.barrier()

    def resume(self, path: Path) -> None:
        """Restore everything from checkpoint ``path``; CheckpointError (nothing restored but
        possibly the weights) when one of its files cannot be read."""
        st = load_trainer_state(path)
        if st.get("global_batch") != self.global_batch:
            raise RunError(f"{path}: saved with global batch {st.get('global_batch')}, this run "
                                  f"has {self.global_batch}; resume with the same batch settings")
        try:
            self.load_weights(self.model, path)
        except Exception as e:  # noqa: BLE001 - truncated / missing weights: try an older one
            raise CheckpointError(f"{path}: weights not readable ({type(e).__name__}: {first_line(e)})") from None
        if self.ema is not None:
            if st.get("ema_updates") is None:
                raise RunError(f"{path}: written without optim.ema, this run has optim.ema={self.cfg.optim.ema}; "
                               "resume with the same optim.ema or start a new run")
            try:
                self.ema.load(path, st["ema_updates"])
            except Exception as e:  # noqa: BLE001 - truncated / missing: try an older checkpoint
                raise CheckpointError(f"{path}: weight average not readable "
                                      f"({type(e).__name__}: {first_line(e)})") from None
        elif st.get("ema_updates") is not None and self.ctx.dist.is_main:
            # allowed (a user may want the trained weights after all), never silent
            print(f"warning: {path} carries a weight average (optim.ema) that this run, with optim.ema=0, "
                  "drops: it hands on its trained weights", file=sys.stderr)
        self.optimizer.load_state_dict(st["optimizer"])
        if self.ctx.scaler is not None and st.get("scaler"):
            self.ctx.scaler.load_state_dict(st["scaler"])
        self.schedule.load_state_dict(st["schedule"])
        self.step, self.epoch, self.step_in_epoch = st["step"], st["epoch"], st["step_in_epoch"]
        self.bad_steps_total = st.get("bad_steps_total", 0)
        self.bad_in_a_row = st.get("bad_in_a_row", 0)
        self.history = list(st.get("history", []))    # checkpoints before it was saved: from here on
        self.timing.update(st.get("timing", {}))
        r = self.ctx.dist.rank
        same_world = st.get("world_size") == self.ctx.dist.world_size
        made_with, here = st.get("installation"), installation()
        if made_with and made_with != here and self.ctx.dist.is_main:
            print(f"warning: {path} was written with another installation ({differences(made_with, here)}): "
                  "the run continues, but its numbers will match an uninterrupted run on neither", file=sys.stderr)
        if not same_world and self.ctx.dist.is_main:
            print(f"warning: {path} was written by {st.get('world_size')} processes, this run has "
                  f"{self.ctx.dist.world_size}: RNG streams restart (the curve will not match exactly)",
                  file=sys.stderr)
        states = st.get("stateful") or [{}]
        mine = states[r] if same_world and r < len(states) else states[0]
        for k, obj in self.stateful.items():
            if k in mine:
                obj.load_state_dict(mine[k])
        bv = st.get("bad_videos") or {}
        if self.bad_log is not None and bv.get("log"):
            self.bad_log.load_state_dict(bv["log"])
        pending = bv.get("pending") or []
        self._bad_other_ranks = list(pending[r]) if same_world and r < len(pending) else []
        if same_world:
            set_rng_state(st["rng"][r])
        self.last_ckpt, self.saved_step = path, self.step

    def resume_newest(self) -> tuple[Path | None, list[str]]:
        """Continue from ``run.resume``: with ``auto`` the newest checkpoint that loads (those
        that do not are skipped, and named with the reason in the returned messages)."""
        candidates, explicit = resume_candidates(self.cfg.run.resume, self.ctx.out_dir)
        resume, skipped = load_first(candidates, explicit, self.resume)
        # every rank must continue from the same checkpoint (a node-local file system would not)
        chosen = du.all_gather_object(str(resume))
        if len(set(chosen)) > 1:
            raise RunError(f"the processes resumed from different checkpoints ({', '.join(chosen)}); "
                           "run.out_dir must be on a file system every node sees")
        return resume, skipped

    def save_model_weights(self, model: torch.nn.Module, d: Path) -> None:
        save_checkpoint(model, d / "model.safetensors", config=config_to_dict(self.cfg),
                        extra={"step": self.step, "epoch": self.epoch})


def load_model_weights(model: torch.nn.Module, d: Path) -> None:
    sd = load_file(str(d / "model.safetensors"))
    unwrap(model).load_state_dict(sd, strict=True)
