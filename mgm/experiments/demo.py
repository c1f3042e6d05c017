"""``mgm demo``: the data-efficiency protocol (:mod:`mgm.experiments.study`) at laptop size, then a
report that leads with its answer: does pretraining with motion-guided masks beat training from
scratch when labels are few, and how does it compare with VideoMAE's tube masks?

Stages (one progress bar over the whole demo, with its ETA):

1. data      the actions set: unlabeled clips for pretraining, a labelled pool, a test set;
2. study     tube and MGM pretraining (one run per arm, in parallel), then for every seed
             fine-tuning, linear probe and k-NN with K labelled clips per class, for scratch,
             tube and MGM (the seeds vary the labelled subset, head initialisation and order);
3. figures   the result plot, pretraining losses, masks of every strategy (Fig. 5), motion
             vectors (Fig. 6c), reconstructions (Fig. 8), centre-patch attention (Fig. 7);
4. report    report.md, self-contained report.html, metrics.json.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import torch

from mgm.data import transforms
from mgm.errors import UserError
from mgm.experiments import figures as F
from mgm.experiments.progress import Progress
from mgm.experiments.runner import run_study
from mgm.experiments.study import SCRATCH, Study, arms_for, prepare_data
from mgm.experiments.tables import data_fingerprints, write_outputs
from mgm.experiments.write import write_report
from mgm.masking import motion_to_patch_magnitude
from mgm.models.checkpoint import load_checkpoint
from mgm.models.vit import build_model
from mgm.provenance import installation_counts, versions
from mgm.video import read_clip

# The demo's protocol sizes. "default" takes 7.5–9 minutes on 2 idle cores (docs/results.md): 150
# fine-tuning steps are the most that leave a margin in 10 minutes (200 take about 9.7, 300 about 12);
# "quick" is a smoke test of the whole path (its numbers mean nothing).
PRESETS = {
    "default": dict(unlabeled=400, pool=12, test=200, labels=(4,), seeds=(0, 1, 2), pretrain_steps=1000,
                    finetune_steps=150, probe_epochs=40),
    "quick": dict(unlabeled=48, pool=4, test=48, labels=(2,), seeds=(0,), pretrain_steps=12,
                  finetune_steps=6, probe_epochs=3),
}
ARMS = ("tube", "mgm")                    # + scratch
def demo_study(out: Path, quick: bool = False, data_dir=None, jobs: int = 2, **overrides) -> Study:
    """The demo's protocol: its preset's sizes, tube and MGM against scratch, one pretraining per arm."""
    p = {**PRESETS["quick" if quick else "default"], **{k: v for k, v in overrides.items() if v is not None}}
    return Study(out_dir=str(out), arms=arms_for("study", strategies=ARMS), pretrain_seeds=(0,), jobs=jobs,
                 data_dir=str(data_dir or ""), **p)


def run_demo(out_dir: str | os.PathLike = "mgm-demo", quick: bool = False, data_dir=None, progress: bool = True,
             jobs: int = 2, **overrides) -> dict:
    """Run the demo; returns the metrics (also in ``OUT/metrics.json``). ``overrides``: Study
    fields (e.g. ``pretrain_steps``) for tests and experiments."""
    t0 = time.perf_counter()
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: not a directory (the demo writes its report there)")
    (out / "figures").mkdir(parents=True, exist_ok=True)
    s = demo_study(out, quick, data_dir, jobs, **overrides)
    bar = Progress.for_study(s, "demo", enabled=progress, extra_seconds=20)      # + the figures
    times: dict[str, float] = {}
    try:
        bar.stage("data")
        t = time.perf_counter()
        data = prepare_data(s, progress=False)
        times["data"] = time.perf_counter() - t
        bar.stage("pretrain, fine-tune, probe", bar.data_seconds)
        t = time.perf_counter()
        rows = run_study(s, progress=bar.run_done, notice=lambda line: bar.write(f"mgm demo: {line}"), data=data)
        fingerprints = data_fingerprints(s)        # hashed once: the summary and metrics.json both record them
        summary = write_outputs(s, rows, title="mgm demo: fine-tuning with K labelled clips per class", name="study",
                                fingerprints=fingerprints)
        times["study"] = time.perf_counter() - t
        bar.stage("figures")
        t = time.perf_counter()
        figs = make_figures(out, s, data, rows)
        times["figures"] = time.perf_counter() - t
    finally:
        bar.close()
    m = metrics(s, rows, summary, figs, quick, fingerprints)
    m["stage_seconds"] = {k: round(v, 1) for k, v in times.items()}
    m["wall_s"] = round(time.perf_counter() - t0, 1)      # this call's; reused runs cost it nothing
    m["runs_reused"] = sum(1 for r in rows if r.get("reused"))
    (out / "metrics.json").write_text(json.dumps(m, indent=1, default=str) + "\n")
    write_report(out, m)
    return m


def metrics(s: Study, rows: list[dict], summary: dict, figs: dict, quick: bool, fingerprints: dict[str, str]) -> dict:
    k = s.labels[0]
    pick = lambda metric: {a: summary[a][k][metric] for a in s.arms if metric in summary[a].get(k, {})}  # noqa: E731
    pre = {r["arm"]: {"steps": r.get("pretrain_steps"), "seconds": round(r.get("pretrain_seconds", 0), 1),
                      "loss_first": r.get("pretrain_loss_first"), "loss_last": r.get("pretrain_loss_last")}
           for r in rows if r["kind"] == "pretrain"}
    return {"preset": "quick" if quick else "default", "labels_per_class": k, "chance": 100.0 / 8,
            "finetune": pick("finetune_top1"), "probe": pick("probe_top1"), "knn": pick("knn_top1"),
            "pretrain": pre, "mask_ratio": _ratios(s.arms), "test_clips": s.test, "unlabeled_clips": s.unlabeled,
            "seeds": list(s.seeds), "seeds_vary": "labelled subset, head initialisation and order of the "
            "fine-tuning, over one pretraining per arm (seed 0)",
            "settings": {f: getattr(s, f) for f in ("pretrain_steps", "finetune_steps", "probe_epochs", "size",
                                                      "frames", "pool")},
            "figures": figs, "versions": versions(), "data_sha256": fingerprints,
            "installations": installation_counts(rows)}


def _ratios(arms: dict[str, list[str]]) -> dict[str, float]:
    """Each pretrained arm's mask ratio, read from its overrides (what the report's text quotes)."""
    return {a: float(o.split("=", 1)[1]) for a, over in arms.items() for o in over if o.startswith("mask.ratio=")}


def figure_clip(data: Path, cls: str = "wave") -> Path:
    """The clip drawn in the figures: the first test video of ``cls``."""
    meta = json.loads((data / "boxes.json").read_text())
    for rel, v in meta["videos"].items():
        if v["class"] == cls:
            return data / rel
    return data / next(iter(meta["videos"]))


def make_figures(out: Path, s: Study, data: dict, rows: list[dict]) -> dict:
    """Every figure of the report (paths relative to ``out``, sizes, what they were made from)."""
    fig_dir = out / "figures"
    rel = lambda p: str(Path(p).relative_to(out))  # noqa: E731
    figs = {"study": {"path": rel(out / "study.png"), "size": list(F.png_size(out / "study.png"))}}
    weights = {r["arm"]: r["weights"] for r in rows if r["kind"] == "pretrain"}
    models = {a: load_checkpoint(w) for a, w in weights.items()}
    spec = next(iter(models.values())).spec
    logs = {a: Path(w).parent / "log.jsonl" for a, w in weights.items()}     # the weights lie in their run's directory
    n = spec.tubelet * spec.patch ** 2        # pixels per patch and channel
    reference = (f"predict each patch's mean: (n-1)/n = {(n - 1) / n:.4f}", (n - 1) / n) if spec.norm_pix_loss else None
    path, size, drawn = F.loss_curves(logs, fig_dir / "loss.png", reference=reference)
    figs["loss"] = {"path": rel(path), "size": list(size), "runs": drawn, "trivial": reference[1] if reference else None}
    grid = spec.grid
    cell = spec.img_size // grid[1]
    video_path = figure_clip(data["test"])
    clip = read_clip(video_path, num_frames=spec.num_frames, stride=4, start=0, motion="codec", cell=cell)
    h, w = clip.frames.shape[1:3]
    frames, motion, valid = transforms.apply_clip(clip.frames, clip.motion, clip.motion_valid,
                                                  transforms.center_crop(h, w, spec.img_size), cell)
    mag, mag_valid = motion_to_patch_magnitude(motion, valid, grid, spec.tubelet)
    name = f"{video_path.relative_to(data['test'])} (wave)"
    path, size, masks = F.masks_figure(frames, mag, mag_valid, fig_dir / "masks.png", grid, spec.tubelet)
    figs["masks"] = {"path": rel(path), "size": list(size), "clip": name, "grid": list(grid)}
    path, size = F.motion_figure(clip, fig_dir / "motion.png", title=f"{name}: codec motion vectors")
    figs["motion"] = {"path": rel(path), "size": list(size), "clip": name, "source": clip.motion_source}
    video = transforms.normalize(transforms.channels_first(frames))
    path, size, losses = F.reconstruction_figure({a: (models[a], masks[a]) for a in models}, video,
                                                 fig_dir / "reconstruction.png", spec.tubelet)
    figs["reconstruction"] = {"path": rel(path), "size": list(size), "clip": name, "loss": losses,
                              "trivial_loss": {a: F.trivial_loss(models[a], video, masks[a]) for a in models}}
    torch.manual_seed(0)
    enc = {f"{a}-pretrained": load_checkpoint(weights[a], kind="classifier", num_classes=0).encoder for a in weights}
    enc[SCRATCH + " (random init)"] = build_model(models[ARMS[0]].spec.to_dict(), "classifier").encoder
    path, size, maps = F.attention_figure(enc, video, frames, grid, spec.tubelet, fig_dir / "attention.png")
    figs["attention"] = {"path": rel(path), "size": list(size), "clip": name}
    return figs
