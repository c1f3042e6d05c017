"""Every config field reaches what reads it. For each field of ModelConfig, DataConfig,
OptimConfig, FinetuneConfig and RunConfig a row names the task that reads it, a change, and what
the change must change in a real two-step run (losses, learning rates, the saved weights, the
files written) or in the object the run builds from the config; a new field without a row fails
here. MaskConfig's fields: tests/test_engine_masks.py. Fields a task never reads are refused
(``mgm.config_checks.INERT``), tested at the end."""
from __future__ import annotations

import dataclasses
import hashlib
import itertools
from pathlib import Path
from typing import Callable

import pytest
import torch
from safetensors.torch import load_file

import mgm.models.layers
from data_fixtures import tiny_synth
from mgm.config import ConfigError, DataConfig, FinetuneConfig, ModelConfig, OptimConfig, RunConfig, load_config
from mgm.config_checks import INERT, validate_config
from mgm.data.dataset import build_dataset
from mgm.engine.checkpoint import CheckpointManager
from mgm.engine.finetune import run_eval, run_finetune
from mgm.engine.linprobe import run_linprobe
from mgm.engine.logging import read_log
from mgm.engine.pretrain import run_pretrain
from mgm.engine.run_context import RunError, make_loader, setup_run, wrap_model

# 8 clips of 8 x 64 x 64, a 1-block encoder and decoder, batch 4: two optimiser steps per epoch
FAST = ["model.depth=1", "model.decoder_depth=1", "optim.batch_size=4", "run.max_steps=2", "run.threads=1",
        "data.num_workers=0", "run.tensorboard=false", "run.log_every=1", "run.seed=3", "run.eval_every=0",
        "data.val=", "data.test="]
PRESET = {"pretrain": "tiny", "finetune": "tiny_finetune", "linprobe": "tiny_linprobe", "eval": "tiny_finetune"}


@dataclasses.dataclass(frozen=True)
class Row:
    task: str
    change: tuple[str, ...]
    base: tuple[str, ...] = ()
    shows: str = "run"          # which part of the run must differ (see `shows`)


@dataclasses.dataclass(frozen=True)
class Built:
    """A field read when a run sets up: ``check(runs)`` gives what it shows without and with the change."""
    check: Callable


@dataclasses.dataclass(frozen=True)
class Elsewhere:
    """A field whose effect needs a setup of its own: the test that shows it."""
    test: str


def weights_digest(path) -> str:
    """The tensors only: a checkpoint's metadata holds the whole config, so any change shows there."""
    if not path:
        return ""
    h = hashlib.sha256()
    for name, t in sorted(load_file(str(path)).items()):
        h.update(name.encode() + t.float().numpy().tobytes())
    return h.hexdigest()[:16]


class Runs:
    """Real runs on a tiny generated set, each in its own directory; base runs cached."""

    def __init__(self, root: Path, data: Path):
        self.root, self.data = root, data
        self.count = itertools.count()
        self.cache: dict = {}

    def config(self, task: str, overrides) -> object:
        extra = []
        if task == "linprobe":
            extra = [f"model.init={self.pretrained}"]
        elif task == "eval":
            extra = [f"model.init={self.finetuned}", f"data.test={self.data / 'all.txt'}"]
        out = self.root / f"r{next(self.count)}"
        return load_config(PRESET[task], [f"data.train={self.data / 'all.txt'}", *FAST, *extra, f"run.out_dir={out}",
                                          *resolve(self, overrides)])

    def run(self, task: str, overrides) -> dict:
        key = (task, tuple(overrides))
        if key in self.cache:
            return self.cache[key]
        cfg = self.config(task, overrides)
        calls = []
        real = mgm.models.layers.checkpoint
        mgm.models.layers.checkpoint = lambda *a, **k: calls.append(1) or real(*a, **k)
        try:
            res = {"pretrain": run_pretrain, "finetune": run_finetune, "linprobe": run_linprobe,
                   "eval": run_eval}[task](cfg)
        finally:
            mgm.models.layers.checkpoint = real
        out = Path(cfg.run.out_dir)
        obs = {"result": res, "out": out, "checkpoint_calls": len(calls),
               "losses": [round(h["loss"], 6) for h in res.get("history", [])],
               "lrs": [h["lr"] for h in res.get("history", [])],
               "weights": weights_digest(res.get("weights"))}
        self.cache[key] = obs
        return obs

    @property
    def pretrained(self) -> str:
        return self.run("pretrain", ())["result"]["weights"]

    @property
    def finetuned(self) -> str:
        return self.run("finetune", ())["result"]["weights"]


def shows(what: str, obs: dict):
    if what == "run":
        return obs["losses"], obs["lrs"], obs["weights"]
    if what == "test views":
        return obs["result"]["test"]["views_per_video"]
    if what == "eval views":
        return obs["result"]["views_per_video"]
    if what == "val":
        return "val" in obs["result"]
    if what == "test":
        return "test" in obs["result"]
    if what == "checkpoints":
        return [step for step, _ in CheckpointManager(obs["out"]).list()]
    if what == "log records":
        return len(read_log(obs["out"] / "log.jsonl", "train"))
    if what == "tensorboard":
        return (obs["out"] / "tb").is_dir()
    if what == "feature cache":
        return (obs["out"] / "features_train.pt").exists()
    if what == "checkpoint calls":
        return obs["checkpoint_calls"]
    if what == "steps":
        return len(obs["losses"])
    raise ValueError(what)


def ucf_tree(root: Path) -> tuple[Path, Path]:
    """Class folders, official split files (splits 1 and 2 train on other groups) and a list
    with paths relative to the tree (rel.txt)."""
    tree, sp = root / "ucf", root / "splits"
    sp.mkdir(parents=True, exist_ok=True)
    for c in ("Biking", "Surfing"):
        for g in (1, 2, 8):
            p = tree / c / f"v_{c}_g{g:02d}_c01.avi"
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(b"x")
    (sp / "classInd.txt").write_text("1 Biking\n2 Surfing\n")
    for sid, g in ((1, 8), (2, 2)):
        (sp / f"trainlist0{sid}.txt").write_text("".join(f"{c}/v_{c}_g{g:02d}_c01.avi {i + 1}\n"
                                                       for i, c in enumerate(("Biking", "Surfing"))))
        (sp / f"testlist0{sid}.txt").write_text("".join(f"{c}/v_{c}_g01_c01.avi\n" for c in ("Biking", "Surfing")))
    (root / "rel.txt").write_text("Biking/v_Biking_g01_c01.avi 0\nSurfing/v_Surfing_g01_c01.avi 1\n")
    return tree, sp


def built_dataset(over_base, over_change, look):
    def check(runs: Runs):
        ucf = runs.root / "ucf"
        tree, sp = ucf_tree(ucf)
        subs = {"TREE": tree, "SPLITS": sp, "UCF": ucf}

        def make(over):
            return look(build_dataset(load_config("tiny_finetune", [o.format(**subs) for o in over]), "train"))
        return make(over_base), make(over_change)
    return Built(check)


def built_context(change, look):
    def check(runs: Runs):
        def make(over):
            cfg = runs.config("finetune", over)
            before = torch.get_num_threads()
            try:
                return look(cfg, setup_run(cfg, "finetune"))
            except RunError as e:
                return f"refused: {e}"
            finally:
                torch.set_num_threads(before)
        return make(()), make(change)
    return Built(check)


# a field read by two tasks through code of their own has a row for each
ROWS: dict[str, Row | tuple[Row, ...] | Built | Elsewhere] = {
    # ModelConfig
    "model.arch": Row("finetune", ("model.arch=vit_small",)),
    "model.depth": Row("finetune", ("model.depth=2",)),
    "model.num_frames": Row("finetune", ("model.num_frames=4", "data.num_frames=4")),
    "model.img_size": Row("finetune", ("model.img_size=32", "data.size=32")),
    "model.tubelet": Row("finetune", ("model.tubelet=4",)),
    "model.patch": Row("finetune", ("model.patch=16",)),
    "model.decoder_depth": Row("pretrain", ("model.decoder_depth=2",)),
    "model.decoder_dim": Row("pretrain", ("model.decoder_dim=192",)),
    "model.norm_pix_loss": Row("pretrain", ("model.norm_pix_loss=false",)),
    "model.attention": Row("finetune", ("model.attention=divided",)),
    # the preset's is 0.1; block i of L drops with rate drop_path * i / (L - 1), so one block never does
    "model.drop_path": Row("finetune", ("model.drop_path=0.0",), base=("model.depth=2",)),
    "model.pool": Row("finetune", ("model.pool=mean",)),                      # the preset's is time
    "model.grad_checkpointing": Row("finetune", ("model.grad_checkpointing=true",), shows="checkpoint calls"),
    "model.init": (Row("finetune", ("model.init=PRETRAINED",)),           # a classifier from a checkpoint
                   Row("pretrain", ("model.init=PRETRAINED",))),           # a pretraining continued
    # DataConfig
    "data.train": Row("finetune", ("data.train=TRAIN",)),
    "data.val": Row("finetune", ("data.val=ALL",), base=("run.eval_every=1",), shows="val"),
    "data.test": Row("finetune", ("data.test=ALL",), shows="test"),
    "data.root": built_dataset(["data.train={UCF}/rel.txt"], ["data.train={UCF}/rel.txt", "data.root={TREE}"],
                               lambda ds: [s.path for s in ds.samples]),
    "data.format": built_dataset(["data.train={TREE}"], ["data.train={TREE}", "data.format=unlabeled"],
                                 lambda ds: [s.label for s in ds.samples]),
    "data.splits": built_dataset(["data.train={TREE}"], ["data.train={TREE}", "data.splits={SPLITS}"],
                                 lambda ds: [s.path for s in ds.samples]),
    "data.split_id": built_dataset(["data.train={TREE}", "data.splits={SPLITS}"],
                                   ["data.train={TREE}", "data.splits={SPLITS}", "data.split_id=2"],
                                   lambda ds: [s.path for s in ds.samples]),
    "data.num_classes": Row("finetune", ("data.num_classes=12",)),
    "data.num_frames": Row("finetune", ("data.num_frames=4", "model.num_frames=4")),
    "data.stride": Row("finetune", ("data.stride=2",)),
    "data.sampling": Row("finetune", ("data.sampling=segment",)),
    "data.size": Row("finetune", ("data.size=32", "model.img_size=32")),
    "data.flip": Row("finetune", ("data.flip=true",)),                        # the preset's is false
    "data.scales": Row("finetune", ("data.scales=[1.0]",)),
    "data.motion": Row("pretrain", ("data.motion=flow",)),
    "data.motion_cell": Row("pretrain", ("data.motion_cell=16",)),
    "data.class_map": Elsewhere("test_transfer_classmap.py::test_class_map_reaches_the_test"),
    "data.test_clips": (Row("finetune", ("data.test_clips=1",), base=("data.test=ALL",), shows="test views"),
                        Row("eval", ("data.test_clips=1",), shows="eval views")),
    "data.test_crops": Row("finetune", ("data.test_crops=3",), base=("data.test=ALL",), shows="test views"),
    "data.num_workers": built_context(("data.num_workers=1",),
                                      lambda cfg, ctx: make_loader(ctx, range(4), None, 2, False).num_workers),
    # OptimConfig
    "optim.epochs": Row("finetune", ("optim.epochs=3",), base=("optim.warmup_epochs=0",)),
    "optim.warmup_epochs": Row("finetune", ("optim.warmup_epochs=0",)),
    "optim.batch_size": Row("finetune", ("optim.batch_size=2",)),
    "optim.accum_steps": Row("finetune", ("optim.accum_steps=2",)),
    "optim.base_lr": Row("finetune", ("optim.base_lr=1e-2",)),
    "optim.min_lr": Row("finetune", ("optim.min_lr=1e-4",), base=("optim.warmup_epochs=0", "optim.epochs=1")),
    "optim.weight_decay": Row("finetune", ("optim.weight_decay=0.5",)),
    "optim.betas": Row("finetune", ("optim.betas=[0.5,0.9]",)),
    "optim.layer_decay": Row("finetune", ("optim.layer_decay=0.3",)),
    "optim.clip_grad": Row("finetune", ("optim.clip_grad=1e-4",)),
    "optim.name": Row("finetune", ("optim.name=sgd",)),
    "optim.global_batch": Row("finetune", ("optim.global_batch=8",)),
    "optim.ema": Row("finetune", ("optim.ema=0.5",)),
    # FinetuneConfig
    "finetune.mixup": Row("finetune", ("finetune.mixup=0.8",)),
    "finetune.cutmix": Row("finetune", ("finetune.cutmix=1.0",)),
    "finetune.mixup_prob": Row("finetune", ("finetune.mixup_prob=0.0",), base=("finetune.mixup=0.8",)),
    "finetune.mixup_switch_prob": Row("finetune", ("finetune.mixup_switch_prob=1.0",),
                                      base=("finetune.mixup=0.8", "finetune.cutmix=1.0",
                                            "finetune.mixup_switch_prob=0.0")),
    "finetune.label_smoothing": (Row("finetune", ("finetune.label_smoothing=0.4",)),
                                 Row("linprobe", ("finetune.label_smoothing=0.4",))),
    "finetune.repeated_aug": Row("finetune", ("finetune.repeated_aug=2",)),
    "finetune.cache_features": Row("linprobe", ("finetune.cache_features=false",), shows="feature cache"),
    # RunConfig
    "run.out_dir": built_context(("run.out_dir=ELSEWHERE",), lambda cfg, ctx: ctx.out_dir.name),
    "run.seed": Row("finetune", ("run.seed=4",)),
    "run.device": built_context(("run.device=cuda",), lambda cfg, ctx: str(ctx.device)),
    "run.precision": Row("finetune", ("run.precision=bf16",)),
    "run.compile": built_context(("run.compile=true",),
                                 lambda cfg, ctx: type(wrap_model(ctx, torch.nn.Linear(2, 2))).__name__),
    "run.log_every": Row("finetune", ("run.log_every=2",), shows="log records"),
    "run.ckpt_every_steps": Row("finetune", ("run.ckpt_every_steps=1",), shows="checkpoints"),
    "run.ckpt_every_minutes": Row("finetune", ("run.ckpt_every_minutes=1e-9",), shows="checkpoints"),
    "run.keep_last": Row("finetune", ("run.keep_last=1",), base=("run.ckpt_every_steps=1",), shows="checkpoints"),
    "run.resume": Row("finetune", ("run.resume=FINETUNED_CHECKPOINT",), base=("run.max_steps=3",), shows="log records"),
    "run.max_bad_steps": Elsewhere("test_engine_train.py::test_nonfinite_loss_is_skipped_then_stops_with_checkpoint_intact"),
    "run.max_steps": Row("finetune", ("run.max_steps=1",), shows="steps"),
    "run.eval_every": Row("finetune", ("run.eval_every=1",), base=("data.val=ALL",), shows="val"),
    "run.threads": built_context(("run.threads=2",), lambda cfg, ctx: torch.get_num_threads()),
    "run.tensorboard": Row("finetune", ("run.tensorboard=true",), shows="tensorboard"),
}

SECTIONS = {"model": ModelConfig, "data": DataConfig, "optim": OptimConfig, "finetune": FinetuneConfig,
            "run": RunConfig}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    data = tiny_synth(tmp_path_factory.mktemp("reach_data"), videos=8, size=64, frames=32)
    return Runs(tmp_path_factory.mktemp("reach_runs"), data)


def test_every_field_has_a_row():
    fields = {f"{s}.{f.name}" for s, cls in SECTIONS.items() for f in dataclasses.fields(cls)}
    assert fields - set(ROWS) == set(), "a new config field needs a row here"
    assert set(ROWS) - fields == set()


def resolve(runs: Runs, over) -> tuple[str, ...]:
    """Fill the placeholders that name another run's output."""
    values = {"PRETRAINED": lambda: runs.pretrained,
              "FINETUNED_CHECKPOINT": lambda: str(CheckpointManager(runs.run("finetune", ())["out"]).latest()),
              "ELSEWHERE": lambda: str(runs.root / "elsewhere"),
              "ALL": lambda: str(runs.data / "all.txt"), "TRAIN": lambda: str(runs.data / "train.txt")}
    out = []
    for o in over:
        key, _, value = o.partition("=")
        out.append(f"{key}={values[value]()}" if value in values else o)
    return tuple(out)


@pytest.mark.parametrize("key", sorted(ROWS))
def test_the_field_changes_what_the_run_does(runs, key):
    row = ROWS[key]
    if isinstance(row, Elsewhere):
        path, name = row.test.split("::")
        source = (Path(__file__).parent / path).read_text()
        body = source.split(f"def {name}(", 1)
        assert len(body) == 2 and key in body[1].split("\ndef ", 1)[0], f"{row.test} does not set {key}"
        return
    if isinstance(row, Built):
        before, after = row.check(runs)
        assert before != after, f"{key}: {before!r} both times"
        return
    for r in row if isinstance(row, tuple) else (row,):
        base = runs.run(r.task, r.base)
        changed = runs.run(r.task, (*r.base, *r.change))
        assert shows(r.shows, base) != shows(r.shows, changed), f"{key}: {r.change} changed nothing on {r.task} ({r.shows})"


@pytest.mark.parametrize("task,key", [(t, k) for t, keys in INERT.items() for k in keys])
def test_a_field_the_task_never_reads_is_refused(task, key):
    inert, _ = INERT[task][key]
    other = {bool: "true", int: "2", float: "0.5", str: "some/list.txt"}[type(inert)]
    cfg = load_config(PRESET[task], [f"{key}={other}"])
    cfg.task = task
    with pytest.raises(ConfigError, match=f"{key}=.* has no effect on {task}"):
        validate_config(cfg)
    cfg = load_config(PRESET[task], [f"{key}={inert}"])
    cfg.task = task
    validate_config(cfg)


def test_a_run_records_the_task_it_runs(runs, tmp_path):
    """The run function sets ``task``: a fine-tuning started from the pretraining preset is checked
    as one and its config.yaml says so."""
    cfg = load_config("tiny", [f"data.train={runs.data / 'all.txt'}", f"run.out_dir={tmp_path}"])
    setup_run(cfg, "finetune")
    assert "task: finetune" in (tmp_path / "config.yaml").read_text()
    cfg = load_config("tiny", [f"data.train={runs.data / 'all.txt'}", "finetune.cache_features=true"])
    with pytest.raises(ConfigError, match="finetune.cache_features=True has no effect on finetune"):
        setup_run(cfg, "finetune")
