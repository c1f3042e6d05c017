"""Helpers for the engine tests: a small generated video set, tiny overrides, running the CLI
or a training script (optionally under torchrun) in a subprocess, reading the loss curve."""
from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from mgm.engine.logging import read_log

# clips 8 x 64 x 64 and vit_tiny with a 1-block decoder: every run takes seconds
SMALL = ["model.num_frames=8", "data.num_frames=8", "model.img_size=64", "data.size=64",
         "model.decoder_depth=1", "data.num_workers=0", "run.threads=1", "run.log_every=1",
         "run.tensorboard=false"]


def make_synth(tmp_path_factory, videos: int = 40):
    out = tmp_path_factory.mktemp("synth")
    r = subprocess.run([sys.executable, "-m", "mgm", "data", "synth", str(out), "--videos", str(videos),
                        "--size", "64", "--frames", "24", "--workers", "1"],
                       capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        pytest.skip(f"mgm data synth unavailable: {r.stderr[-500:]}")
    assert (out / "train.txt").exists() and (out / "val.txt").exists()
    return out


def data_args(synth, val=False):
    a = [f"data.train={synth / 'train.txt'}", f"data.root={synth}"]
    if val:
        a.append(f"data.val={synth / 'val.txt'}")
    return a


def _env(extra=None):
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **(extra or {})}


def _launcher(nproc: int) -> list[str]:
    if nproc > 1:
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    return [sys.executable]


def run_cli(args, env_extra=None, nproc=1, timeout=240):
    return subprocess.run([*_launcher(nproc), "-m", "mgm", *args], capture_output=True, text=True,
                          timeout=timeout, env=_env(env_extra))


def run_script(script: Path, args, nproc=1, timeout=240):
    return subprocess.run([*_launcher(nproc), str(script), *args], capture_output=True, text=True,
                          timeout=timeout, env=_env())


# a training run whose process `rank` sends itself signal SIG right after optimiser step N
# (Trainer's on_step) — or, with rank -1, sends it to its whole process group (DataLoader workers
# included) as SLURM does; a clean stop exits as `mgm` does (mgm.engine.preemption.EXIT_PREEMPTED)
SIGNAL_AFTER = """
import os, signal, sys
from mgm.config import load_config
from mgm.engine.preemption import EXIT_PREEMPTED, TrainingInterrupted
task, sig, stop, rank = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
if task == "finetune":
    from mgm.engine.finetune import run_finetune as run
else:
    from mgm.engine.pretrain import run_pretrain as run
def on_step(step):
    if step == stop and rank == -1:
        os.killpg(os.getpgid(0), getattr(signal, sig))
    elif step == stop and int(os.environ.get("RANK", "0")) == rank:
        os.kill(os.getpid(), getattr(signal, sig))
try:
    run(load_config("tiny_finetune" if task == "finetune" else "tiny", sys.argv[5:]), on_step=on_step)
except TrainingInterrupted as e:
    print(f"interrupted by {e}", file=sys.stderr)
    sys.exit(EXIT_PREEMPTED)
"""


def run_signalled_after(task: str, sig: str, step: int, overrides, script_dir: Path, rank: int = 0,
                        nproc: int = 1, timeout=240):
    script = Path(script_dir) / "signal_after.py"
    script.write_text(SIGNAL_AFTER)
    return subprocess.run([*_launcher(nproc), str(script), task, sig, str(step), str(rank), *overrides],
                          capture_output=True, text=True, timeout=timeout, env=_env(),
                          start_new_session=rank == -1)


def losses(out_dir) -> dict[int, float]:
    """step -> loss of the train records of OUT/log.jsonl; each step must be there once."""
    recs = read_log(Path(out_dir) / "log.jsonl", "train")
    twice = [s for s, n in Counter(r["step"] for r in recs).items() if n > 1]
    assert not twice, f"steps logged more than once: {twice}"
    return {r["step"]: r["loss"] for r in recs}

# fine-tuning machinery the tiny recipe turns off (few-shot runs): resume tests turn it on, so
# that its state (mixup RNG, repeated-augmentation sampling) must be restored too
TABLE6_MACHINERY = ["finetune.mixup=0.8", "finetune.cutmix=1.0", "finetune.repeated_aug=2"]
