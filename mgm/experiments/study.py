"""The data-efficiency protocol (``mgm study``, ``mgm ablate``, ``mgm demo``): does pretraining
with a given mask make a better encoder than training from scratch, when labels are few?

1. data: three generated sets of the ``actions`` style (``mgm.data.synth``) with their own seeds:
   an unlabeled pretraining set, a labelled pool, and a test set (>= 400 clips by default, so one
   clip is < 0.25 points);
2. pretrain: every arm (a mask strategy, a ratio, a motion source...) pretrains with the same
   data, steps, schedule and initial weights (``tiny`` preset); ``scratch`` does not pretrain;
3. evaluate, for K labelled clips per class drawn from the pool (``mgm.data.subset.per_class``):
   fine-tuning (``tiny_finetune``, the protocol's headline: the paper's main protocol), a linear
   probe and k-NN on the frozen, time-pooled features (``tiny_linprobe``), all on the test set.

Seeds: with ``pretrain_seeds=None`` every seed drives its own pretraining (initial weights, clip
order, masks), its labelled subset and its fine-tuning (the full protocol); with
``pretrain_seeds=[0]`` one pretraining per arm is shared and the seeds vary the labelled subset,
the head's initialisation and the order of the fine-tuning (what the demo can afford). With
``draws=D`` each seed is evaluated on D labelled draws (each its own K-shot subset, head
initialisation and order, over the seed's one pretraining) and its number is their mean: few-shot
accuracy moves several points with the draw, and averaging draws narrows that part of the spread
without another pretraining. Draw 0 is the seed's own draw, so ``draws=1`` is the plain protocol
and a study with more draws reuses its runs.

:func:`mgm.experiments.runner.run_study` runs the plan. The run functions below import torch and
the engine when called (they run in spawned workers), so that the planner, the tables and the
progress bar, which import this module, do not load them.
"""
from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

from mgm.data.synth import ensure_synth_dataset, synth_dataset_matches
from mgm.errors import UserError
from mgm.masking.options import RATIO_SWEEP, STRATEGIES

SCRATCH = "scratch"


@dataclass
class Study:
    out_dir: str
    arms: dict = field(default_factory=lambda: {SCRATCH: [], "random": ["mask.strategy=random"],
                                                "tube": ["mask.strategy=tube"], "mgm": ["mask.strategy=mgm"]})
    seeds: tuple = (0, 1, 2)
    draws: int = 1                      # labelled draws per seed, each its own fine-tune (see the module doc)
    labels: tuple = (4, 16)             # labelled clips per class
    pretrain_seeds: tuple | None = None  # None: one pretraining per seed (see the module doc)
    unlabeled: int = 1200               # videos of the pretraining set
    pool: int = 16                      # labelled videos per class generated (subsets are drawn from it)
    test: int = 480
    size: int = 64
    frames: int = 40                    # raw frames per generated video
    pretrain_steps: int = 2000
    pretrain_ema: float = 0.0           # > 0: pretrainings hand on their weights' moving average (optim.ema)
    finetune_steps: int = 300
    probe_epochs: int = 40
    knn_k: int = 5
    jobs: int = 2                       # runs in parallel, one torch thread each
    data_dir: str = ""                  # default OUT/data
    overrides: list = field(default_factory=list)  # key=value for every run (model, data, ...)

    def __post_init__(self):
        # refused before any data is generated or run started, one line naming the option
        counts = dict(draws=self.draws, unlabeled=self.unlabeled, pool=self.pool, test=self.test,
                      pretrain_steps=self.pretrain_steps, finetune_steps=self.finetune_steps,
                      probe_epochs=self.probe_epochs, knn_k=self.knn_k, jobs=self.jobs)
        for name, value in counts.items():
            if value < 1:
                raise UserError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
        if not self.seeds:
            raise UserError("--seeds needs at least one seed")
        if not self.labels or min(self.labels) < 1:
            raise UserError(f"--labels must be at least 1 clip per class, got {' '.join(map(str, self.labels))}")
        if max(self.labels) > self.pool:
            raise UserError(f"--labels {max(self.labels)} is more than the {self.pool} labelled videos per "
                            "class (--pool)")

    def data_path(self) -> Path:
        return Path(self.data_dir) if self.data_dir else Path(self.out_dir) / "data"


# ---------------------------------------------------------------- data


SETS = ("unlabeled", "labelled", "test")


def data_sets(s: Study) -> dict[str, tuple[int, int]]:
    """The three generated sets: name -> (videos, generator seed)."""
    return dict(zip(SETS, ((s.unlabeled, 101), (8 * s.pool, 102), (s.test, 103))))


def prepare_data(s: Study, progress: bool = True) -> dict[str, Path]:
    """The three sets (generated, or reused when they match); returns their directories."""
    base = s.data_path()
    for name, (n, seed) in data_sets(s).items():
        ensure_synth_dataset(base / name, n, seed=seed, size=s.size, frames=s.frames, style="actions",
                             progress=progress)
    return {name: base / name for name in SETS}


def clips_to_generate(s: Study) -> int:
    """How many clips :func:`prepare_data` would generate (0 when every set is there already)."""
    base = s.data_path()
    return sum(n for name, (n, seed) in data_sets(s).items()
               if not synth_dataset_matches(base / name, n, seed=seed, size=s.size, frames=s.frames, style="actions"))


# ---------------------------------------------------------------- one run (in a spawned process)
# These import torch and the engine inside them: they run in a spawned worker, and the study's own
# process (mgm study, mgm demo) never loads torch.


def _common(s: Study, out: Path, seed: int) -> list[str]:
    return [f"run.out_dir={out}", f"run.seed={seed}", "run.resume=auto", "run.threads=1", "data.num_workers=0",
            "run.tensorboard=false", "run.log_every=50", "run.keep_last=1", "run.device=cpu",
            f"model.img_size={s.size}", f"data.size={s.size}", *s.overrides]


def _epochs_for(steps: int, clips: int, batch: int) -> tuple[int, int]:
    per_epoch = max(1, clips // batch)
    return math.ceil(steps / per_epoch), per_epoch


def pretrain_run(s: Study, data: dict, arm: str, seed: int) -> dict:
    from mgm.config import load_config
    from mgm.engine.pretrain import run_pretrain

    out = run_dir(s, "pretrain", {"arm": arm, "seed": seed})
    cfg = load_config("tiny", [f"data.train={data['unlabeled'] / 'all.txt'}", *_common(s, out, seed), "run.log_every=10",
                               *s.arms[arm]])
    epochs, per_epoch = _epochs_for(s.pretrain_steps, s.unlabeled, cfg.optim.batch_size)
    cfg.optim.epochs, cfg.run.max_steps = epochs, s.pretrain_steps
    cfg.optim.ema = s.pretrain_ema
    cfg.optim.warmup_epochs = max(0.05 * s.pretrain_steps / per_epoch, 0.0)
    res = run_pretrain(cfg)
    loss = [h["loss"] for h in res["history"]]
    whole = bool(loss) and res["history"][0]["step"] == 1      # not resumed from a checkpoint without history
    return {"weights": res["weights"], "pretrain_seconds": res["timing"]["seconds"], "pretrain_steps": res["step"],
            "pretrain_loss_first": loss[0] if whole else None,
            "pretrain_loss_last": sum(loss[-50:]) / max(1, len(loss[-50:])) if loss else None}


def labelled_list(s: Study, data: dict, k: int, seed: int) -> Path:
    from mgm.data.annotations import load_annotations
    from mgm.data.subset import per_class, write_list

    ann = load_annotations(data["labelled"] / "all.txt")
    return write_list(per_class(ann.samples, k, seed), Path(s.out_dir) / "lists" / f"labelled_k{k}_s{seed}.txt")


def draw_seed(seed: int, draw: int) -> int:
    """The seed of draw ``draw`` of protocol seed ``seed``: it picks the K-shot subset and seeds the
    fine-tuning (head initialisation, order). Draw 0 is the seed itself."""
    return seed + 1000 * draw


def eval_args(arm: str, k: int, seed: int, draw: int = 0) -> dict:
    """An evaluation's identity in the plan; draw 0 has no ``draw`` (the plain run's key)."""
    return {"arm": arm, "k": k, "seed": seed, **({"draw": draw} if draw else {})}


def run_dir(s: Study, kind: str, args: dict, key: str | None = None) -> Path:
    """A run's directory, OUT/runs/ARM/NAME (its log: NAME.log beside it). NAME says what the run is
    (kind, K, seed, draw) and ends in a digest of its key (default :func:`task_key`): a run made
    with other settings (steps, set sizes, ``--set``) gets its own directory, so it cannot overwrite
    the weights that an earlier pretraining's record points to."""
    k, draw = args.get("k"), args.get("draw", 0)
    name = kind + (f"_k{k}" if k is not None else "") + f"_s{args['seed']}" + (f"_d{draw}" if draw else "")
    digest = hashlib.sha256((key or task_key(s, kind, args)).encode()).hexdigest()[:8]
    return Path(s.out_dir) / "runs" / args["arm"] / f"{name}-{digest}"


def finetune_run(s: Study, data: dict, arm: str, weights: str, k: int, seed: int, draw: int = 0) -> dict:
    from mgm.config import load_config
    from mgm.engine.finetune import run_finetune

    out = run_dir(s, "finetune", eval_args(arm, k, seed, draw))
    run_seed = draw_seed(seed, draw)
    train = labelled_list(s, data, k, run_seed)
    cfg = load_config("tiny_finetune", [f"data.train={train}", f"data.test={data['test'] / 'all.txt'}", "data.val=",
                                        "run.eval_every=0", f"model.init={weights or ''}", *_common(s, out, run_seed)])
    epochs, per_epoch = _epochs_for(s.finetune_steps, 8 * k, cfg.optim.batch_size)
    cfg.optim.epochs, cfg.run.max_steps = epochs, s.finetune_steps
    cfg.optim.warmup_epochs = 0.1 * s.finetune_steps / per_epoch
    t0 = time.perf_counter()
    res = run_finetune(cfg)
    return {"finetune_top1": res["test"]["top1"], "finetune_seconds": time.perf_counter() - t0}


def probe_run(s: Study, data: dict, arm: str, weights: str, k: int, seed: int, draw: int = 0) -> dict:
    """Linear probe on the frozen features of the K-shot subset, evaluated on the test set, and
    k-NN on the same cached features."""
    import torch

    from mgm.config import load_config
    from mgm.engine.knn import knn_top1
    from mgm.engine.linprobe import run_linprobe

    out = run_dir(s, "probe", eval_args(arm, k, seed, draw))
    run_seed = draw_seed(seed, draw)
    train = labelled_list(s, data, k, run_seed)
    cfg = load_config("tiny_linprobe", [f"data.train={train}", f"data.val={data['test'] / 'all.txt'}",
                                        f"optim.epochs={s.probe_epochs}", f"run.eval_every={s.probe_epochs}",
                                        *_common(s, out, run_seed)])
    cfg.model.init = weights or _random_init(cfg, out)
    t0 = time.perf_counter()
    res = run_linprobe(cfg)
    tr = torch.load(out / "features_train.pt", weights_only=True)
    te = torch.load(out / "features_val.pt", weights_only=True)
    return {"probe_top1": res["val"]["top1"], "knn_top1": knn_top1(tr["feats"], tr["labels"], te["feats"], te["labels"],
                                                                  k=min(s.knn_k, k)),
            "probe_seconds": time.perf_counter() - t0}


def _random_init(cfg, out: Path) -> str:
    """scratch: the run's classifier at its own random initialisation (seeded by run.seed)."""
    import torch

    from mgm.models.checkpoint import save_checkpoint
    from mgm.models.vit import build_model

    torch.manual_seed(cfg.run.seed)
    return str(save_checkpoint(build_model(cfg.model, "classifier"), out / "random_init.safetensors"))


# ---------------------------------------------------------------- the plan


# the settings of one kind of evaluation, which the other kind does not read
EVALUATION_SETTINGS = {"finetune": ("finetune_steps",), "probe": ("probe_epochs", "knn_k")}


def task_key(s: Study, kind: str, args: dict, legacy: bool = False) -> str:
    """What makes two runs the same experiment: the arm's overrides (not its name, so the ratio
    sweep's 0.75 point reuses the masks study's run), the seeds, K and the protocol's settings that
    reach the run (a scratch evaluation's key leaves out the pretraining's: scratch is shared by
    studies that differ only in how they pretrain; a fine-tune's leaves out the probe's settings and
    a probe's the fine-tune's, so ``--probe-epochs`` reruns no fine-tune). ``legacy``: the key of
    studies made before that split, which held both (``mgm.experiments.runner`` adopts their runs)."""
    settings = {f: getattr(s, f) for f in ("unlabeled", "pool", "test", "size", "frames", "pretrain_steps",
                                           "finetune_steps", "probe_epochs", "knn_k", "overrides")}
    if s.pretrain_ema:      # only when set: the keys of the runs made before it existed stay the same
        settings["pretrain_ema"] = s.pretrain_ema
    pretrained = kind != "pretrain" and args["arm"] != SCRATCH     # scratch evaluations use no pretraining
    pretraining = ("unlabeled", "pretrain_steps", "pretrain_ema")
    if kind == "pretrain":
        settings = {f: v for f, v in settings.items() if f in ("size", "frames", "overrides", *pretraining)}
    elif not pretrained:
        settings = {f: v for f, v in settings.items() if f not in pretraining}
    if kind in EVALUATION_SETTINGS and not legacy:
        other = {f for k, fs in EVALUATION_SETTINGS.items() if k != kind for f in fs}
        settings = {f: v for f, v in settings.items() if f not in other}
    arm = {k: v for k, v in args.items() if k not in ("weights", "arm")}
    return json.dumps({"kind": kind, "arm": sorted(s.arms[args["arm"]]), **arm, **settings,
                       "pretrain_seed": pretrain_seed_for(s, args["seed"]) if pretrained else None},
                      sort_keys=True)


def pretrain_seed_list(s: Study) -> list[int]:
    """The seeds of the study's pretrainings: its own seeds, or the shared ``pretrain_seeds``."""
    return list(s.pretrain_seeds) if s.pretrain_seeds is not None else list(s.seeds)


def plan(s: Study) -> tuple[list[tuple[str, dict]], list[tuple[str, dict]]]:
    """Every run of the study as (kind, args): the pretrainings, then the evaluations (a fine-tune
    and a probe per arm, K, seed and draw). :func:`run_study` runs them; the demo's progress bar
    counts them."""
    pre = [("pretrain", {"arm": a, "seed": p}) for a in s.arms if a != SCRATCH for p in pretrain_seed_list(s)]
    evals = [(kind, eval_args(a, k, seed, d))
             for a in s.arms for k in s.labels for seed in s.seeds for d in range(s.draws)
             for kind in ("finetune", "probe")]
    return pre, evals


def pretrain_seed_for(s: Study, seed: int) -> int:
    return seed if s.pretrain_seeds is None else s.pretrain_seeds[seed % len(s.pretrain_seeds)]


# each strategy at the ratio its paper uses (VideoMAE: tube 0.9; ST-MAE: random 0.9; MGM: 0.75)
PAPER_RATIO = {"random": 0.9, "tube": 0.9}


def arms_for(kind: str, strategies=None, ratios=None, sources=None, strategy: str = "mgm",
             baseline: bool = True, ratio: float | None = None) -> dict[str, list[str]]:
    """The arms of a study: ``study`` (random, tube, mgm, each at its paper's mask ratio unless
    ``ratio`` is given), ``masks`` (every strategy, at ``ratio``, default 0.75: Table 4e),
    ``ratio`` (one strategy at several ratios: Fig. 4a), ``motion`` (codec vectors vs optical
    flow: Table 4b). ``scratch`` (no pretraining) comes first unless ``baseline`` is False. None
    means the default list; an empty one means none (``mgm study --arms scratch``).
    Arms with the same overrides are the same runs (reused by studies sharing an OUT)."""
    def arm(s, r):
        return [f"mask.strategy={s}", f"mask.ratio={r:g}"]

    arms: dict[str, list[str]] = {SCRATCH: []} if baseline else {}
    if kind == "study":
        for s in ("random", "tube", "mgm") if strategies is None else strategies:
            r = ratio or PAPER_RATIO.get(s, 0.75)
            arms[s if r == PAPER_RATIO.get(s, 0.75) else f"{s}@{r:g}"] = arm(s, r)
    elif kind == "masks":
        r = ratio or 0.75
        for s in STRATEGIES if strategies is None else strategies:
            arms[s if r == PAPER_RATIO.get(s, 0.75) else f"{s}@{r:g}"] = arm(s, r)
    elif kind == "ratio":
        for r in RATIO_SWEEP if ratios is None else ratios:
            arms[f"{strategy}@{r:g}"] = arm(strategy, r)
    elif kind == "motion":      # codec: data.motion=auto, which is codec for H.264 (the masks study's run)
        for src in ("codec", "flow") if sources is None else sources:
            name = strategy if src == "codec" else f"{strategy}:{src}"
            arms[name] = arm(strategy, ratio or 0.75) + ([] if src == "codec" else [f"data.motion={src}"])
    else:
        raise ValueError(f"kind must be study, masks, ratio or motion, got {kind!r}")
    return arms
