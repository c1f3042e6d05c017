"""Small-scale experiments on the synthetic motion-classes set: ``mgm demo`` and ``mgm ablate``.

One *recipe* = identical tiny pretraining (only the mask strategy / ratio / motion source
change) -> linear probe on frozen features -> optional short fine-tune, all through the
engine's own loops (:func:`run_pretrain`, :func:`run_linprobe`, :func:`run_finetune`).

    r = Recipe(data_dir="runs/synth", out_dir="runs/ablate/mgm_s0", strategy="mgm", seed=0)
    metrics = run_recipe(r)          # {"linprobe_top1": .., "finetune_top1": .., ...}

    rows = run_ablation("masks", data_dir, out_dir, variants=["tube", "mgm"], seeds=[0, 1])

The model is ``vit_tiny`` (192 wide, 3 heads) cut to ``depth`` blocks (4 by default) with a
1-block decoder, on 16 frames of 112x112 (tubelets 2x16x16: 8x7x7 = 392 tokens), so that a
run takes minutes on a laptop CPU. The same seed gives the same initial weights and the same
clip order for every variant, so variants differ only in the masks.

Results are appended to ``OUT_DIR/results.jsonl`` (one line per variant and seed) as they
finish; a second call with the same settings skips what is already there, so an interrupted
ablation continues where it stopped.
"""
from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

KINDS = ("masks", "ratio", "motion")
BASELINE = "scratch"                        # no pretraining: random-init encoder
MASK_VARIANTS = ("random", "block", "tube", "smm-sparse", "smm", "mgm-sparse", "mgm")
RATIO_VARIANTS = (0.5, 0.6, 0.75, 0.85, 0.9, 0.95)
MOTION_VARIANTS = ("codec", "flow")


@dataclass
class Recipe:
    data_dir: str
    out_dir: str
    strategy: str = "mgm"           # a mask strategy, or "scratch" (no pretraining)
    ratio: float = 0.75
    motion: str = "codec"           # data.motion for guided masks: codec | flow
    seed: int = 0
    epochs: int = 4                 # pretraining epochs
    batch_size: int = 8
    base_lr: float = 2.0e-2         # lr = base_lr * batch / 256 (AdamW)
    depth: int = 4                  # encoder blocks of vit_tiny
    decoder_depth: int = 1
    norm_pix_loss: bool = False     # True: VideoMAE's per-patch normalised targets (see docs/results.md)
    probe_epochs: int = 30          # linear probe on cached features (seconds)
    finetune_epochs: int = 0        # 0: no fine-tuning
    max_steps: int = 0              # > 0: cap pretraining steps (smoke tests)
    finetune_max_steps: int = 0
    workers: int = 1                # DataLoader workers
    threads: int = 0                # torch threads per process (0: torch's default)
    size: int = 112                 # input side (model.img_size = data.size); tubelets stay 2x16x16

    def key(self) -> dict:
        """What makes two runs the same experiment (out_dir excluded)."""
        d = dataclasses.asdict(self)
        for k in ("out_dir", "data_dir", "workers", "threads"):
            d.pop(k)
        if d["size"] == 112:        # keys written before ``size`` existed stay valid
            d.pop("size")
        return d


def _base_overrides(r: Recipe, out: Path) -> list[str]:
    d = Path(r.data_dir)
    return [f"data.train={d / 'train.txt'}", f"data.val={d / 'val.txt'}", f"run.out_dir={out}",
            f"run.seed={r.seed}", f"data.num_workers={r.workers}", f"run.threads={r.threads}",
            "run.tensorboard=false", "run.keep_last=1", "run.log_every=1", "run.device=cpu",
            "data.flip=false", f"model.img_size={r.size}", f"data.size={r.size}"]


def pretrain_config(r: Recipe):
    from mgm.config import load_config

    out = Path(r.out_dir) / "pretrain"
    ov = _base_overrides(r, out) + [
        f"mask.strategy={r.strategy}", f"mask.ratio={r.ratio}", f"data.motion={r.motion}",
        f"model.depth={r.depth}", f"model.decoder_depth={r.decoder_depth}",
        f"model.norm_pix_loss={str(r.norm_pix_loss).lower()}",
        f"optim.epochs={r.epochs}",
        f"optim.warmup_epochs={min(1.0, r.epochs / 4)}", f"optim.batch_size={r.batch_size}",
        f"optim.base_lr={r.base_lr}", f"run.max_steps={r.max_steps}"]
    return load_config("tiny", ov)


def build_pretrainer_for(r: Recipe, cfg):
    """The recipe's pretrainer; initial weights depend on the seed only."""
    import torch

    from mgm.engine.run_context import model_from_config

    torch.manual_seed(r.seed)
    return model_from_config(cfg, "pretrainer")


def pretrain(r: Recipe) -> dict:
    """Pretrain (or, for ``scratch``, save the seed's random init). Returns
    {"weights", "history", "seconds", "steps"}."""
    from mgm.engine.pretrain import run_pretrain
    from mgm.models import save_checkpoint

    cfg = pretrain_config(r if r.strategy != BASELINE else dataclasses.replace(r, strategy="tube"))
    model = build_pretrainer_for(r, cfg)
    t0 = time.perf_counter()
    if r.strategy == BASELINE:
        path = save_checkpoint(model, Path(r.out_dir) / "pretrain" / "pretrained.safetensors")
        return {"weights": str(path), "history": [], "seconds": 0.0, "steps": 0}
    res = run_pretrain(cfg, model=model)
    return {"weights": res["weights"], "history": res.get("history", []),
            "seconds": time.perf_counter() - t0, "steps": res.get("step", 0)}


def linprobe(r: Recipe, weights: str, out_name: str = "linprobe") -> dict:
    from mgm.config import load_config
    from mgm.engine.linprobe import run_linprobe
    from mgm.models import load_checkpoint

    out = Path(r.out_dir) / out_name
    cfg = load_config("tiny_linprobe", _base_overrides(r, out) + [
        f"optim.epochs={r.probe_epochs}", "optim.warmup_epochs=1", "optim.batch_size=32",
        f"run.eval_every={r.probe_epochs}", "run.log_every=50", "data.num_workers=0"])
    backbone = load_checkpoint(weights, kind="classifier", num_classes=0)
    t0 = time.perf_counter()
    res = run_linprobe(cfg, backbone=backbone)
    val = res.get("val") or {}
    return {"top1": float(val.get("top1", float("nan"))), "top5": float(val.get("top5", float("nan"))),
            "loss": float(val.get("loss", float("nan"))), "seconds": time.perf_counter() - t0,
            "history": res.get("history", [])}


def finetune(r: Recipe, weights: str) -> dict:
    """Short fine-tune (no mixup/cutmix/repeated aug: they need long schedules), then the
    multi-view test on the val list."""
    from mgm.config import load_config
    from mgm.engine.finetune import run_finetune
    from mgm.models import load_checkpoint

    out = Path(r.out_dir) / "finetune"
    cfg = load_config("tiny_finetune", _base_overrides(r, out) + [
        f"optim.epochs={r.finetune_epochs}", f"optim.warmup_epochs={min(1.0, r.finetune_epochs / 4)}",
        f"optim.batch_size={r.batch_size}", "finetune.mixup=0.0", "finetune.cutmix=0.0",
        "finetune.repeated_aug=1", "run.eval_every=0", f"run.max_steps={r.finetune_max_steps}"])
    model = load_checkpoint(weights, kind="classifier", num_classes=len(class_names(r.data_dir)),
                            drop_path=cfg.model.drop_path)
    t0 = time.perf_counter()
    res = run_finetune(cfg, model=model, test=True)
    test = res.get("test") or {}
    return {"top1": float(test.get("top1", float("nan"))), "seconds": time.perf_counter() - t0}


def class_names(data_dir) -> list[str]:
    return Path(data_dir, "classes.txt").read_text().split()


def run_recipe(r: Recipe, on_stage: Callable[[str], None] | None = None) -> dict:
    """Pretrain -> linear probe -> (fine-tune). Returns flat metrics (+ loss history)."""
    def stage(name):
        if on_stage:
            on_stage(name)

    t0 = time.perf_counter()
    stage("pretrain")
    p = pretrain(r)
    stage("linprobe")
    lp = linprobe(r, p["weights"])
    out = {"linprobe_top1": lp["top1"], "linprobe_top5": lp["top5"], "pretrain_seconds": p["seconds"],
           "pretrain_steps": p["steps"], "linprobe_seconds": lp["seconds"], "weights": p["weights"],
           "final_loss": tail_loss(p["history"]),
           "loss_history": [round(h["loss"], 5) for h in p["history"]]}
    if r.finetune_epochs > 0:
        stage("finetune")
        ft = finetune(r, p["weights"])
        out.update(finetune_top1=ft["top1"], finetune_seconds=ft["seconds"])
    out["seconds"] = time.perf_counter() - t0
    return out


def tail_loss(history: list[dict], n: int = 10) -> float:
    vals = [h["loss"] for h in history[-n:] if math.isfinite(h["loss"])]
    return float(sum(vals) / len(vals)) if vals else float("nan")


# ---------------------------------------------------------------- ablations


def variant_recipe(kind: str, variant, base: Recipe) -> Recipe:
    if kind == "masks":
        return dataclasses.replace(base, strategy=str(variant))
    if kind == "ratio":
        return dataclasses.replace(base, strategy=base.strategy, ratio=float(variant))
    if kind == "motion":
        return dataclasses.replace(base, strategy=base.strategy, motion=str(variant))
    raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")


def default_variants(kind: str) -> list:
    return list({"masks": MASK_VARIANTS, "ratio": RATIO_VARIANTS, "motion": MOTION_VARIANTS}[kind])


def _variant_dir(variant) -> str:
    return str(variant).replace(".", "p")


@dataclass
class AblationResult:
    kind: str
    rows: list[dict] = field(default_factory=list)       # one per (variant, seed)
    summary: list[dict] = field(default_factory=list)    # one per variant: mean / std


def _isolated_main(fn: str, recipe: dict, path: str) -> None:
    m = {"run_recipe": run_recipe, "pretrain": pretrain}[fn](Recipe(**recipe))
    Path(path).write_text(json.dumps(m))


def _isolated(fn: str, r: Recipe) -> dict:
    import multiprocessing as mp

    out = Path(r.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{fn}_result.json"
    path.unlink(missing_ok=True)
    p = mp.get_context("spawn").Process(target=_isolated_main, args=(fn, dataclasses.asdict(r), str(path)))
    p.start()
    p.join()
    if p.exitcode != 0 or not path.exists():
        raise RuntimeError(f"{fn} in {r.out_dir} failed (exit code {p.exitcode}); see the messages above")
    return json.loads(path.read_text())


def run_recipe_isolated(r: Recipe) -> dict:
    """:func:`run_recipe` in a fresh (spawned) interpreter. Each run then starts from a clean
    process: no persistent DataLoader workers or thread pools left over from the previous run,
    and its memory is returned when it ends. (Forked loader workers after a decode in the parent
    used to hang in ``sws_scale``; that is fixed at its source in ``mgm/video/pixels.py``.)"""
    return _isolated("run_recipe", r)


def pretrain_isolated(r: Recipe) -> dict:
    """:func:`pretrain` in a fresh (spawned) interpreter (see :func:`run_recipe_isolated`)."""
    return _isolated("pretrain", r)


def run_ablation(kind: str, data_dir: str, out_dir: str, variants: list | None = None,
                 seeds: list[int] = (0,), base: Recipe | None = None, baseline: bool = False,
                 progress: Callable[[int, int, str], None] | None = None,
                 isolate: bool = True) -> AblationResult:
    """Every variant x seed (skipping those already in ``results.jsonl``); ``baseline`` adds
    the no-pretraining row. ``progress(done, total, label)`` is called before each run.
    ``isolate``: each run in its own spawned process (see :func:`run_recipe_isolated`)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    base = base or Recipe(data_dir=data_dir, out_dir=out_dir)
    base = dataclasses.replace(base, data_dir=str(data_dir))
    variants = list(variants) if variants else default_variants(kind)
    plan = [(v, s) for v in variants for s in seeds]
    if baseline:
        plan += [(BASELINE, s) for s in seeds]
    log_path = out / "results.jsonl"
    done = {}
    if log_path.exists():
        for line in log_path.read_text().splitlines():
            if line.strip():
                rec = json.loads(line)
                done[json.dumps(rec["recipe"], sort_keys=True)] = rec
    rows = []
    for i, (v, s) in enumerate(plan):
        if v == BASELINE:
            r = dataclasses.replace(base, strategy=BASELINE)
        else:
            r = variant_recipe(kind, v, base)
        r = dataclasses.replace(r, seed=int(s), out_dir=str(out / f"{kind}_{_variant_dir(v)}" / f"seed{s}"))
        k = json.dumps(r.key(), sort_keys=True)
        if progress:
            progress(i, len(plan), f"{v} seed {s}")
        if k in done:       # the same experiment, maybe run under another kind: relabel it
            rows.append({**done[k], "kind": kind, "variant": v, "seed": int(s)})
            continue
        m = run_recipe_isolated(r) if isolate else run_recipe(r)
        rec = {"kind": kind, "variant": v, "seed": int(s), "recipe": r.key(), **m,
               "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
        with open(log_path, "a") as f:
            f.write(json.dumps(rec) + "\n")
        rows.append(rec)
    if progress:
        progress(len(plan), len(plan), "done")
    res = AblationResult(kind, rows, summarize(rows))
    write_outputs(res, out)
    return res


def _mean_std(vals: list[float]) -> tuple[float, float]:
    vals = [v for v in vals if v is not None and math.isfinite(v)]
    if not vals:
        return float("nan"), float("nan")
    m = sum(vals) / len(vals)
    sd = math.sqrt(sum((v - m) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0
    return m, sd


def summarize(rows: list[dict]) -> list[dict]:
    order: list = []
    for r in rows:
        if r["variant"] not in order:
            order.append(r["variant"])
    out = []
    for v in order:
        rs = [r for r in rows if r["variant"] == v]
        s = {"variant": v, "seeds": [r["seed"] for r in rs]}
        for key in ("linprobe_top1", "finetune_top1", "final_loss", "pretrain_seconds", "seconds"):
            if any(key in r for r in rs):
                s[key] = _mean_std([r.get(key, float("nan")) for r in rs])
        out.append(s)
    return out


def _fmt(ms, digits=1) -> str:
    m, sd = ms
    if not math.isfinite(m):
        return "–"
    return f"{m:.{digits}f} ± {sd:.{digits}f}"


def format_table(res: AblationResult) -> str:
    """Markdown table: mean ± std over seeds (sample std; 0 with one seed)."""
    head = {"masks": "mask", "ratio": "mask ratio", "motion": "motion source"}[res.kind]
    has_ft = any("finetune_top1" in s for s in res.summary)
    cols = [head, "seeds", "linear probe top-1 (%)"] + (["fine-tune top-1 (%)"] if has_ft else []) + [
        "pretrain loss (last 10 steps)", "pretrain s / run"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for s in res.summary:
        v = s["variant"]
        name = "none (random init)" if v == BASELINE else str(v)
        cells = [name, str(len(s["seeds"])), _fmt(s["linprobe_top1"])]
        if has_ft:
            cells.append(_fmt(s.get("finetune_top1", (float("nan"),) * 2)))
        cells.append("–" if v == BASELINE else _fmt(s["final_loss"], 4))
        cells.append("–" if v == BASELINE else _fmt(s["pretrain_seconds"], 0))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_summary(res: AblationResult, path) -> Path:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    path = Path(path)
    summ = res.summary
    keys = [k for k in ("linprobe_top1", "finetune_top1") if any(k in s for s in summ)]
    labels = {"linprobe_top1": "linear probe", "finetune_top1": "fine-tune"}
    fig, ax = plt.subplots(figsize=(7, 3.6))
    if res.kind == "ratio":
        pts = [s for s in summ if s["variant"] != BASELINE]
        xs = [float(s["variant"]) for s in pts]
        for k in keys:
            m = [s[k][0] for s in pts]
            sd = [s[k][1] for s in pts]
            ax.errorbar(xs, m, yerr=sd, marker="o", capsize=3, label=labels[k])
        ax.set_xlabel("mask ratio")
    else:
        names = ["none" if s["variant"] == BASELINE else str(s["variant"]) for s in summ]
        w = 0.8 / max(1, len(keys))
        for j, k in enumerate(keys):
            m = [s.get(k, (float("nan"), 0))[0] for s in summ]
            sd = [s.get(k, (0, 0))[1] for s in summ]
            ax.bar([i + (j - (len(keys) - 1) / 2) * w for i in range(len(summ))], m, w, yerr=sd,
                   capsize=3, label=labels[k])
        ax.set_xticks(range(len(summ)))
        ax.set_xticklabels(names, rotation=20)
    ax.set_ylabel("val top-1 (%)")
    nseeds = max((len(s["seeds"]) for s in summ), default=0)
    ax.set_title(f"mgm ablate {res.kind}: mean ± std over {nseeds} seed(s)", fontsize=10)
    ax.axhline(100 / 8, color="grey", lw=0.8, ls=":", label="chance (8 classes)")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_outputs(res: AblationResult, out: Path) -> dict:
    table = format_table(res)
    (out / f"table_{res.kind}.md").write_text(table + "\n")
    (out / f"summary_{res.kind}.json").write_text(json.dumps(res.summary, indent=1) + "\n")
    png = plot_summary(res, out / f"ablate_{res.kind}.png")
    return {"table": str(out / f"table_{res.kind}.md"), "plot": str(png)}
