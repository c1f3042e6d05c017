"""``mgm demo``: synthetic motion classes -> tiny ViT pretrained with MGM -> linear probe ->
a report directory (``report.md``, self-contained ``report.html``, ``metrics.json``, figures).

Stages (the progress bar shows the stage and the ETA of the whole demo):

1. data      generate the motion-classes set (``mgm data synth``) or reuse it;
2. pretrain  MGM pretraining through :func:`mgm.engine.pretrain.run_pretrain`;
3. linprobe  linear probe of the pretrained encoder, and of the same encoder at its random
             init (the no-pretraining reference), through :func:`run_linprobe`;
4. figures   masks of every strategy (Fig. 5), motion vectors (Fig. 6c), reconstructions
             (Fig. 8), centre-patch attention (Fig. 7);
5. report    report.md / report.html / metrics.json.
"""
from __future__ import annotations

import dataclasses
import json
import os
import platform
import sys
import threading
import time
from pathlib import Path

from mgm.experiments.ablate import BASELINE, Recipe

# videos, pretraining epochs, probe epochs, input side, synthetic style, base lr (x batch/256).
# 64x64 input (tubelets 2x16x16: 8x4x4 = 128 tokens) and the high-contrast "bold" set: at 112x112 on
# the low-contrast "natural" set the CPU-sized pretraining only reaches the mean colour (docs/results.md)
PRESETS = {
    "default": {"videos": 240, "epochs": 60, "probe_epochs": 50, "size": 64, "style": "bold", "base_lr": 4e-2},
    "quick": {"videos": 48, "epochs": 1, "probe_epochs": 10, "size": 64, "style": "bold", "base_lr": 4e-2},
}
FIGURE_CLASS = "right"            # the clip drawn in the figures: first val video of this class


class StageProgress:
    """One tqdm bar over the whole demo. Work is counted in estimated seconds per stage;
    during training a thread follows the run's ``log.jsonl`` to advance the bar per step."""

    def __init__(self, weights: dict[str, float], enabled: bool = True):
        from tqdm import tqdm

        self.weights = weights
        self.done = 0.0
        self.stage = None
        self.bar = tqdm(total=round(sum(weights.values()), 1), disable=not enabled, file=sys.stderr,
                        bar_format="demo [{desc}] {percentage:3.0f}%|{bar}| {elapsed} elapsed, "
                                   "ETA {remaining}", dynamic_ncols=True, position=0,
                        smoothing=0.0)
        self._stop = threading.Event()
        self._thread = None
        self.times: dict[str, float] = {}
        self._t0 = None

    def start(self, stage: str, follow: Path | None = None, steps: int = 0) -> None:
        self.finish_stage()
        self.stage = stage
        self._t0 = time.perf_counter()
        self.bar.set_description_str(stage)
        self._base = self.done
        self.bar.refresh()
        if follow is not None and steps > 0:
            self._stop.clear()
            self._thread = threading.Thread(target=self._follow, args=(follow, steps), daemon=True)
            self._thread.start()

    def _follow(self, path: Path, steps: int) -> None:
        w = self.weights[self.stage]
        while not self._stop.wait(0.5):
            try:
                n = path.read_text().count('"kind": "train"')
            except OSError:
                continue
            self._set(self._base + w * min(n, steps) / steps)

    def _set(self, value: float) -> None:
        value = min(value, self.bar.total)
        if value > self.bar.n:
            self.bar.update(value - self.bar.n)

    def finish_stage(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
        if self.stage is not None:
            self.done = self._base + self.weights.get(self.stage, 0.0)
            self._set(self.done)
            self.times[self.stage] = round(time.perf_counter() - self._t0, 2)
            self.stage = None

    def close(self) -> None:
        self.finish_stage()
        self.bar.close()


def ensure_dataset(data_dir: Path, videos: int, seed: int = 0, progress: bool = True,
                   size: int = 112, style: str = "natural") -> dict:
    """Reuse ``data_dir`` when it holds the set with the same video count, seed, size and style."""
    meta_path = data_dir / "boxes.json"
    info = {"dir": str(data_dir), "videos": videos, "size": size, "style": style}
    if meta_path.exists() and (data_dir / "train.txt").exists() and (data_dir / "val.txt").exists():
        try:
            meta = json.loads(meta_path.read_text())
            if (len(meta.get("videos", {})) == videos and meta.get("seed", 0) == seed
                    and meta.get("width", 112) == size and meta.get("style", "natural") == style
                    and all((data_dir / rel).exists() for rel in meta["videos"])):
                return {**info, "reused": True}
        except (OSError, ValueError):
            pass
    from mgm.data.synth import make_synth_dataset

    rep = make_synth_dataset(data_dir, videos=videos, size=size, frames=32, seed=seed,
                             workers=max(1, min(4, os.cpu_count() or 1)), progress=False, style=style)
    return {**info, "reused": False, **rep}


def _versions() -> dict:
    import torch

    import mgm

    v = {"mgm": mgm.__version__, "python": platform.python_version(), "torch": torch.__version__,
         "platform": platform.platform(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads()}
    try:
        import av

        v["av"] = av.__version__
    except Exception:
        pass
    return v


def figure_clip(data_dir: Path):
    """(path, class) of the clip drawn in the figures."""
    meta = json.loads((data_dir / "boxes.json").read_text())
    vids = meta["videos"]
    for rel, v in vids.items():
        if v["split"] == "val" and v["class"] == FIGURE_CLASS:
            return data_dir / rel, v["class"]
    rel, v = next(iter(vids.items()))
    return data_dir / rel, v["class"]


def run_demo(out_dir: str | os.PathLike = "mgm-demo", quick: bool = False, data_dir=None,
             progress: bool = True, seed: int = 0, norm_pix_loss: bool = False, **overrides) -> dict:
    """Run the whole demo; returns the metrics (also in ``OUT/metrics.json``).

    ``overrides``: ``videos``, ``epochs``, ``probe_epochs``, ``max_steps`` (for tests)."""
    t_start = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fig_dir = out / "figures"
    fig_dir.mkdir(exist_ok=True)
    p = dict(PRESETS["quick" if quick else "default"])
    p.update({k: v for k, v in overrides.items() if v is not None})
    data = Path(data_dir) if data_dir else out / "data"
    n_train = int(p["videos"] * 0.8)         # estimate for the bar; the real count after "data"
    recipe = Recipe(data_dir=str(data), out_dir=str(out / "runs" / "mgm"), strategy="mgm", seed=seed,
                    epochs=p["epochs"], probe_epochs=p["probe_epochs"], max_steps=p.get("max_steps", 0),
                    norm_pix_loss=norm_pix_loss, size=p["size"], base_lr=p["base_lr"])
    steps = p["epochs"] * (n_train // recipe.batch_size)
    if recipe.max_steps:
        steps = min(steps, recipe.max_steps)
    step_s = 0.15 if p["size"] <= 64 else 1.2 * (p["size"] / 112) ** 2     # measured, 2 CPU cores
    weights = {"data": 0.03 * p["videos"], "pretrain": step_s * steps + 5,
               "linprobe": 2 * (8 + 0.06 * p["videos"]), "figures": 12, "report": 1}
    bar = StageProgress(weights, enabled=progress)
    metrics: dict = {"preset": "quick" if quick else "default", "settings": p, "seed": seed}
    try:
        bar.start("data")
        metrics["data"] = ensure_dataset(data, p["videos"], progress=False, size=p["size"], style=p["style"])
        n_train = len((data / "train.txt").read_text().split("\n")) - 1
        steps = p["epochs"] * (n_train // recipe.batch_size)
        if recipe.max_steps:
            steps = min(steps, recipe.max_steps)
        metrics["data"]["train"] = n_train

        bar.start("pretrain", follow=Path(recipe.out_dir) / "pretrain" / "log.jsonl", steps=steps)
        from mgm.experiments import ablate

        # in a spawned process, so the caller's process (a notebook, a test) keeps no
        # DataLoader workers or thread pools of the run and gets its memory back
        pre = ablate.pretrain_isolated(recipe)
        hist = pre["history"]
        metrics["pretrain"] = {"steps": pre["steps"], "seconds": round(pre["seconds"], 1),
                               "first_loss": hist[0]["loss"] if hist else float("nan"),
                               "final_loss": ablate.tail_loss(hist), "weights": pre["weights"],
                               "mask": "mgm", "ratio": recipe.ratio,
                               "targets": "per-patch normalised" if norm_pix_loss else "pixels"}

        bar.start("linprobe")
        lp = ablate.linprobe(recipe, pre["weights"])
        scratch = dataclasses.replace(recipe, strategy=BASELINE, out_dir=str(out / "runs" / "random_init"))
        base_w = ablate.pretrain(scratch)["weights"]
        lp0 = ablate.linprobe(scratch, base_w)
        n_cls = len(ablate.class_names(data))
        metrics["linprobe"] = {"top1": lp["top1"], "top5": lp["top5"], "loss": lp["loss"],
                               "random_init_top1": lp0["top1"], "random_init_top5": lp0["top5"],
                               "chance_top1": 100.0 / n_cls, "epochs": recipe.probe_epochs}

        bar.start("figures")
        metrics["figures"] = make_figures(out, fig_dir, data, pre["weights"], base_w, hist, seed)

        bar.start("report")
        metrics["versions"] = _versions()
        metrics["stage_seconds"] = bar.times
        metrics["wall_seconds"] = round(time.perf_counter() - t_start, 1)
        (out / "metrics.json").write_text(json.dumps(metrics, indent=1, default=str) + "\n")
        from mgm.experiments.write import write_report

        write_report(out, metrics)
    finally:
        bar.close()
    metrics["stage_seconds"] = bar.times
    metrics["wall_seconds"] = round(time.perf_counter() - t_start, 1)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1, default=str) + "\n")
    return metrics


def make_figures(out: Path, fig_dir: Path, data: Path, weights: str, base_weights: str, history, seed: int) -> dict:
    from mgm.data import transforms
    from mgm.masking import motion_to_patch_magnitude
    from mgm.models import load_checkpoint
    from mgm.experiments import figures as F
    from mgm.video import read_clip

    figs = {}
    path, size = F.loss_curve(history, fig_dir / "loss.png", "MGM pretraining loss (train, per optimiser step)")
    figs["loss"] = {"path": str(path.relative_to(out)), "size": list(size)}

    model = load_checkpoint(weights)                     # the pretrainer
    s = model.spec
    grid = s.grid
    video_path, cls = figure_clip(data)
    clip = read_clip(video_path, num_frames=s.num_frames, stride=2, start=0, motion="codec", grid=s.patch)
    h, w = clip.frames.shape[1:3]
    frames, motion, valid = transforms.apply_clip(clip.frames, clip.motion, clip.motion_valid,
                                                  transforms.center_crop(h, w, s.img_size), s.patch)
    mag, mag_valid = motion_to_patch_magnitude(motion, valid, grid, s.tubelet)
    rel = str(Path(video_path).relative_to(data))
    path, size, masks = F.masks_figure(frames, mag, mag_valid, fig_dir / "masks.png", grid, s.tubelet, seed=seed)
    figs["masks"] = {"path": str(path.relative_to(out)), "size": list(size), "clip": rel, "class": cls}
    path, size = F.motion_figure(clip, fig_dir / "motion.png",
                                 title=f"{rel} ({cls}): codec motion vectors ({clip.motion_source})")
    figs["motion"] = {"path": str(path.relative_to(out)), "size": list(size), "clip": rel,
                      "source": clip.motion_source}
    video = transforms.to_tensor(frames)
    path, size, losses = F.reconstruction_figure(model, video, {"mgm": masks["mgm"], "tube": masks["tube"]},
                                                 fig_dir / "reconstruction.png", s.tubelet)
    figs["reconstruction"] = {"path": str(path.relative_to(out)), "size": list(size), "clip": rel,
                              "loss": losses}
    if not model.norm_pix_loss:
        figs["reconstruction"]["mean_colour_loss"] = {k: mean_colour_loss(model, video, masks[k]) for k in losses}
    enc = {"MGM-pretrained": load_checkpoint(weights, kind="classifier", num_classes=0).encoder,
           "random init": load_checkpoint(base_weights, kind="classifier", num_classes=0).encoder}
    path, size, maps = F.attention_figure(enc, video, frames, grid, s.tubelet, fig_dir / "attention.png")
    figs["attention"] = {"path": str(path.relative_to(out)), "size": list(size), "clip": rel,
                         "max_weight": {k: float(v.max()) for k, v in maps.items()}}
    return figs


def mean_colour_loss(model, video, mask) -> float:
    """The trivial reference for pixel targets: MSE on the masked tubelets when every masked
    pixel is predicted as the mean colour of the clip's visible patches."""
    import numpy as np
    import torch

    with torch.no_grad():
        p = model.patchify(video[None].float() * model.pixel_std + model.pixel_mean)[0]   # (N, t*p*p, C)
        m = torch.as_tensor(np.asarray(mask).reshape(-1), dtype=torch.bool)
        return float(((p[m] - p[~m].mean(dim=(0, 1))) ** 2).mean())
