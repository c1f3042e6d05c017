"""Multi-view evaluation: softmax per view, average per video, top-1/top-5, a predictions CSV.

Each view (temporal clip x spatial crop) is turned into probabilities with a softmax *before*
averaging (VideoMAE's own fix of averaging raw logits). Views are spread over ranks by a
non-shuffling distributed sampler that pads the last batch by wrapping around; the padded
positions are known (global position >= dataset length) and dropped where they are predicted,
so no view is counted twice. Each rank sums probabilities per video; the partial sums are
gathered and added, and a view seen on two ranks is an error. Items of an unreadable video (the
dataset gives a stand-in: ``index != requested``) are dropped too: that video is left out of the
metrics and the predictions CSV (the training report names such videos; ``mgm data check`` too).

Cross-dataset tests (``data.class_map``: the labels are the source classes the target's map to)
pass ``restrict_to``, the source classes the target has. ``top1`` then counts a prediction of a
source-only class as an error (negative transfer, as partial domain adaptation scores it);
``top1_target_classes`` takes the best of the target's classes only, and
``predicted_outside_target`` is the share of videos whose top class the target lacks.
"""
from __future__ import annotations

import csv
import math
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from mgm.data.transforms import normalize
from mgm.engine import distributed as du
from mgm.engine.run_context import make_loader
from mgm.engine.samplers import ResumableDistributedSampler


def softmax_np(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def accumulate_views(partial: dict, indices, views, logits, labels) -> dict:
    """Add per-view records to ``partial`` = {index: [prob_sum, {views}, label]}."""
    probs = softmax_np(np.asarray(logits, dtype=np.float64))
    for i, v, p, y in zip(indices, views, probs, labels):
        i, v = int(i), int(v)
        entry = partial.get(i)
        if entry is None:
            partial[i] = [p.copy(), {v}, int(y)]
        elif v in entry[1]:
            continue                      # the same view twice on one rank: count it once
        else:
            entry[0] += p
            entry[1].add(v)
    return partial


def combine_partials(partials: list[dict]) -> dict:
    """Add the per-rank partial sums; a view present on two ranks raises ValueError."""
    out: dict = {}
    for part in partials:
        for i, (s, vs, y) in part.items():
            if i not in out:
                out[i] = [np.array(s, dtype=np.float64), set(vs), y]
                continue
            dup = out[i][1] & set(vs)
            if dup:
                raise ValueError(f"video {i}: views {sorted(dup)} were predicted on two ranks")
            out[i][0] += s
            out[i][1] |= set(vs)
    return out


def finalize(merged: dict, ks=(1, 5), restrict_to=None) -> tuple[dict, list[dict]]:
    """Metrics and one row per video (sorted by index) from combined partial sums.
    ``restrict_to``: the classes a cross-dataset target has (module docstring)."""
    rows = []
    correct = {k: 0 for k in ks}
    allowed = np.array(sorted(set(restrict_to)), dtype=np.int64) if restrict_to is not None else None
    within = outside = 0
    for i in sorted(merged):
        s, vs, y = merged[i]
        p = s / len(vs)
        order = np.argsort(-p, kind="stable")
        for k in ks:
            correct[k] += int(y in order[:k].tolist())
        row = {"index": i, "label": y, "pred": int(order[0]), "prob": float(p[order[0]]),
               "top5": [int(c) for c in order[:5]], "views": len(vs), "probs": p}
        if allowed is not None:
            # argmax over the target's classes; ties go to the lower class id, as in argsort
            row["pred_target"] = int(allowed[int(np.argmax(p[allowed]))])
            within += int(row["pred_target"] == y)
            outside += int(row["pred"] not in allowed)
        rows.append(row)
    n = len(rows)
    pct = (lambda c: 100.0 * c / n if n else float("nan"))
    metrics = {f"top{k}": pct(correct[k]) for k in ks}
    if allowed is not None:
        metrics["top1_target_classes"] = pct(within)
        metrics["predicted_outside_target"] = pct(outside)
    metrics["videos"] = n
    return metrics, rows


def merge_views(indices, views, logits, labels, ks=(1, 5), restrict_to=None) -> tuple[dict, list[dict]]:
    """Single-process convenience: records -> (metrics, rows)."""
    return finalize(accumulate_views({}, indices, views, logits, labels), ks, restrict_to)


def write_predictions(path: str | Path, rows: list[dict], paths: list[str] | None = None,
                      classes: list[str] | None = None) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    mapped = any("pred_target" in r for r in rows)     # a class-mapped test: one more column
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["index", "path", "label", "pred", "pred_name", "correct", "prob", "top5", "views"]
                   + (["pred_target"] if mapped else []))
        for r in rows:
            name = classes[r["pred"]] if classes and r["pred"] < len(classes) else ""
            p = paths[r["index"]] if paths and r["index"] < len(paths) else ""
            w.writerow([r["index"], p, r["label"], r["pred"], name, int(r["pred"] == r["label"]),
                        f"{r['prob']:.6f}", " ".join(map(str, r["top5"])), r["views"]]
                       + ([r.get("pred_target", "")] if mapped else []))
    tmp.replace(path)


@torch.no_grad()
def evaluate(ctx, forward: Callable[[torch.Tensor], torch.Tensor], dataset, batch_size: int,
             csv_path: str | Path | None = None, collate_fn=None, desc: str = "eval",
             restrict_to=None) -> dict:
    """Run ``forward`` over every view of ``dataset`` on all ranks; metrics on every rank.

    Items must carry ``video``, ``label``, ``index`` (the video) and ``view``. ``restrict_to``:
    the classes a cross-dataset target has (module docstring).
    """
    d = ctx.dist
    sampler = ResumableDistributedSampler(len(dataset), d.world_size, d.rank, shuffle=False)
    loader = make_loader(ctx, dataset, sampler, batch_size, False, collate_fn)
    n = len(dataset)
    partial: dict = {}
    losses = []
    seen = 0
    unreadable: set[str] = set()
    bar = None
    if d.is_main:
        bar = tqdm(total=math.ceil(len(sampler) / batch_size), desc=desc, unit="batch",
                   dynamic_ncols=True, leave=False)
    for batch in loader:
        b = batch["video"].shape[0]
        # global position of each item of this rank: rank + W * k
        pos = d.rank + d.world_size * torch.arange(seen, seen + b)
        seen += b
        keep = (pos < n).numpy()
        if "requested" in batch:     # a stand-in for an unreadable video is not a view of it
            keep &= (batch["index"] == batch["requested"]).numpy()
            unreadable.update(e.split(" (replaced by ")[0] for e in batch.get("bad", []))
        video = batch["video"].to(ctx.device, non_blocking=True)
        if video.dtype == torch.uint8:       # clips; a linear probe's cached features are ready
            video = normalize(video)
        with ctx.autocast():
            logits = forward(video)
        logits = logits.float().cpu()
        labels = batch["label"]
        if keep.any():
            lk = logits[keep]
            yk = labels[keep]
            if int(yk.min()) >= 0:
                losses.append(float(torch.nn.functional.cross_entropy(lk, yk.long(), reduction="sum")))
            accumulate_views(partial, batch["index"][keep].tolist(),
                             batch.get("view", torch.zeros(b, dtype=torch.long))[keep].tolist(),
                             lk.numpy(), yk.tolist())
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    merged = combine_partials(du.all_gather_object(partial))
    metrics, rows = finalize(merged, restrict_to=restrict_to)
    loss_sum = sum(du.all_gather_object(sum(losses)))
    metrics["loss"] = loss_sum / max(1, sum(len(r[1]) for r in merged.values()))
    unreadable = set().union(*du.all_gather_object(unreadable))
    if unreadable:
        metrics["unreadable"] = len(unreadable)
        if d.is_main:
            print(f"{desc}: {len(unreadable)} unreadable videos left out: " + "; ".join(sorted(unreadable)[:10])
                  + (" ..." if len(unreadable) > 10 else ""), file=sys.stderr, flush=True)
    if csv_path is not None and d.is_main:
        samples = getattr(dataset, "samples", None)
        paths = [getattr(s, "path", "") for s in samples] if samples is not None else None
        write_predictions(csv_path, rows, paths, getattr(dataset, "classes", None))
    return metrics
