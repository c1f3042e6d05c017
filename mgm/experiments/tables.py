"""Tables and plots of a study's results: mean ± std over seeds per arm, labelled-clip count
and metric (fine-tune, linear probe, k-NN), and the files a study writes (``write_outputs``) with
what its numbers depend on (the installations that made them, the generated sets' fingerprints)."""
from __future__ import annotations

import csv
import dataclasses
import itertools
import json
import math
from pathlib import Path

from mgm.data.synth import set_fingerprint
from mgm.experiments.study import SETS, Study, eval_args, run_dir
from mgm.provenance import describe_installations, installation_counts, versions

METRICS = {"finetune_top1": "fine-tune", "probe_top1": "linear probe", "knn_top1": "k-NN"}


def mean_std(vals: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value)."""
    vals = [float(v) for v in vals if v is not None and math.isfinite(float(v))]
    if not vals:
        return float("nan"), float("nan")
    m = sum(vals) / len(vals)
    return m, math.sqrt(sum((v - m) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0


def pooled_std(groups: list[list[float]]) -> float:
    """The spread within groups (sample std pooled over groups of two or more values)."""
    groups = [g for g in groups if len(g) > 1]
    ss = sum((x - m) ** 2 for g in groups for m in [mean_std(g)[0]] for x in g)
    dof = sum(len(g) - 1 for g in groups)
    return math.sqrt(ss / dof) if dof else float("nan")


def summarize(rows: list[dict], arms: list[str]) -> dict:
    """{arm: {K: {metric: {"mean", "std", "seeds": [...], "values": [...]}}}} plus each arm's
    pretraining loss and seconds (mean over its pretrainings). A seed evaluated on several labelled
    draws (rows with ``draw``) counts once, with the mean over its draws; its cell then also holds
    ``draws`` (each seed's values, by draw), ``draw_std`` (the pooled spread between draws of one
    seed: how much of the seeds' spread is the labelled draw) and ``seed_std`` (what is left of the
    seeds' spread once the draws' is taken out, √max(0, std² − draw_std² · mean(1/D)) for a seed mean
    over D draws: for a pretrained arm, its pretrainings' spread, which more draws cannot average)."""
    out: dict = {}
    for arm in arms:
        out[arm] = {}
        pre = [r for r in rows if r["kind"] == "pretrain" and r["arm"] == arm]
        if pre:
            out[arm]["pretrain"] = {"loss_last": mean_std([r.get("pretrain_loss_last") for r in pre])[0],
                                    "seconds": mean_std([r.get("pretrain_seconds") for r in pre])[0]}
        for k in sorted({r["k"] for r in rows if "k" in r}):
            cell = {}
            for metric in METRICS:
                by_seed: dict[int, list[float]] = {}
                for r in sorted((r for r in rows if r["arm"] == arm and r.get("k") == k and metric in r),
                                key=lambda r: (r["seed"], r.get("draw", 0))):
                    by_seed.setdefault(r["seed"], []).append(r[metric])
                if by_seed:
                    means = [mean_std(v)[0] for v in by_seed.values()]
                    m, sd = mean_std(means)
                    cell[metric] = {"mean": m, "std": sd, "seeds": list(by_seed),
                                    "values": [round(v, 2) for v in means]}
                    if any(len(v) > 1 for v in by_seed.values()):
                        cell[metric]["draws"] = [[round(x, 2) for x in v] for v in by_seed.values()]
                        cell[metric]["draw_std"] = ds = pooled_std(list(by_seed.values()))
                        per_seed = sum(1 / len(v) for v in by_seed.values()) / len(by_seed)
                        cell[metric]["seed_std"] = math.sqrt(max(0.0, sd ** 2 - ds ** 2 * per_seed))
            out[arm][k] = cell
    return out


def format_table(summary: dict, metric: str = "finetune_top1", chance: float = 12.5) -> str:
    """Markdown: one row per arm, one column per K, mean ± std (n seeds) of ``metric``."""
    ks = sorted({k for a in summary.values() for k in a if isinstance(k, int)})
    lines = ["| arm | " + " | ".join(f"{METRICS[metric]}, K = {k} (%)" for k in ks) + " |",
             "|---|" + "---:|" * len(ks)]
    for arm, cells in summary.items():
        vals = []
        for k in ks:
            c = cells.get(k, {}).get(metric)
            draws = (f" × {max(map(len, c['draws']))} draws; between draws ± {c['draw_std']:.1f}, "
                     f"seeds beyond the draws ± {c['seed_std']:.1f}" if c and "draws" in c else "")
            test = f"; test set ± {c['test_std']:.1f}" if c and c.get("test_std") is not None else ""
            vals.append("–" if c is None else f"{c['mean']:.1f} ± {c['std']:.1f} (n={len(c['values'])}{draws}{test})")
        lines.append(f"| {arm} | " + " | ".join(vals) + " |")
    lines.append("| chance | " + " | ".join(f"{chance:.1f}" for _ in ks) + " |")
    return "\n".join(lines)


def std_from_test_set(s: Study, rows: list[dict], arm: str, k: int) -> float | None:
    """How much of a seed's fine-tune number (mean of its draws) is the test set's sampling, in
    points, from the runs' own ``predictions.csv``: two runs that disagree on a fraction d of n test
    clips move apart by about √(d / n) between test sets, so one run by √(d / 2n) and a mean of D
    draws by √(d / 2nD) (d averaged over every pair of the arm's runs). When it is small against the
    arm's std over seeds, a larger test set would not narrow that std. None with fewer than two
    runs' predictions."""
    runs = [r for r in rows if r["kind"] == "finetune" and r["arm"] == arm and r.get("k") == k]
    correct = []
    for r in runs:
        path = run_dir(s, "finetune", eval_args(arm, k, r["seed"], r.get("draw", 0))) / "predictions.csv"
        if path.exists():
            with open(path, newline="") as f:
                correct.append({row["path"]: row["correct"] for row in csv.DictReader(f)})
    if len(correct) < 2:
        return None
    clips = set.intersection(*(set(c) for c in correct))
    if not clips:
        return None
    d = [sum(a[p] != b[p] for p in clips) / len(clips) for a, b in itertools.combinations(correct, 2)]
    return 100 * math.sqrt(sum(d) / len(d) / (2 * len(clips) * s.draws))


def reference_arm(arms) -> str | None:
    """The arm the others are compared with, seed by seed: MGM at its paper's ratio (named ``mgm`` in
    the study and the masks ablation, ``mgm@0.75`` in the ratio sweep), or None."""
    return next((a for a in ("mgm", "mgm@0.75") if a in arms), None)


# Student's t, two-sided 95 % (0.975 quantile) by degrees of freedom; between rows the lower
# row's value is used, which is the wider interval (a table, not scipy, for 25 numbers)
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262,
        10: 2.228, 11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110,
        18: 2.101, 19: 2.093, 20: 2.086, 25: 2.060, 30: 2.042, 40: 2.021, 60: 2.000, 120: 1.980}


def t975(dof: int) -> float:
    """The 0.975 quantile of Student's t with ``dof`` degrees of freedom (from :data:`T975`)."""
    return T975[max(d for d in T975 if d <= dof)]


def ordering(ci: tuple[float, float] | None) -> str:
    """What a 95 % interval of ``reference − arm`` says: ``ahead``, ``behind``, ``not separated``
    (it contains 0), or ``one seed`` (no interval)."""
    if ci is None:
        return "one seed"
    return "ahead" if ci[0] > 0 else "behind" if ci[1] < 0 else "not separated"


def seeds_to_separate(mean: float, std: float, most: int = 1000) -> int | None:
    """The fewest seeds n whose 95 % interval, mean ± t(n − 1) · std / √n, excludes 0, if the
    per-seed differences keep this mean and spread (a planning figure: the mean itself is
    uncertain); None when not within ``most`` seeds (a mean of 0 never separates)."""
    if not std > 0:
        return 2 if mean != 0 else None
    return next((n for n in range(2, most + 1) if t975(n - 1) * std / math.sqrt(n) < abs(mean)), None)


def seed_ranges(mine: list[float], other: list[float]) -> str:
    """"above" when the lowest of ``mine`` is above the highest of ``other``, "below" the other way
    round, else "overlap": the unpaired "every seed above every seed" of issue 11's bar."""
    if min(mine) > max(other):
        return "above"
    return "below" if max(mine) < min(other) else "overlap"


def paired_differences(summary: dict, reference: str, metric: str = "finetune_top1") -> dict:
    """{arm: {K: {"seeds", "diffs", "mean", "std", "se", "ci95", "order", "above", "seeds_to_separate",
    "ranges", "lowest", "highest_other"}}}:
    ``reference`` minus each other arm on the seeds both ran. A seed fixes the labelled draw, initial weights and
    clip order for every arm, so these paired differences are the comparison to read; the arms' own
    stds also carry how hard each seed's labelled draw is, which is shared by both arms of a pair.
    ``std`` is the spread of one seed's difference (more seeds do not shrink it); ``se`` = std/√n
    and ``ci95`` (Student's t) are what more seeds narrow, and ``order`` (:func:`ordering`) reads the
    interval: two arms whose interval contains 0 are not ordered by this study;
    ``seeds_to_separate`` (:func:`seeds_to_separate`) is how many seeds would order them if the
    difference and its spread stayed as measured. ``ranges`` (:func:`seed_ranges`) compares the
    two arms' seeds unpaired; ``lowest`` is ``reference``'s lowest seed, ``highest_other`` the arm's
    highest."""
    out: dict = {}
    for arm, cells in summary.items():
        if arm == reference:
            continue
        out[arm] = {}
        for k, cell in cells.items():
            ref = summary[reference].get(k, {}).get(metric)
            c = cell.get(metric) if isinstance(k, int) else None
            if ref is None or c is None:
                continue
            ours, theirs = dict(zip(ref["seeds"], ref["values"])), dict(zip(c["seeds"], c["values"]))
            shared = [s for s in ours if s in theirs]
            if shared:
                mine, other = [ours[s] for s in shared], [theirs[s] for s in shared]
                diffs = [round(v - w, 2) for v, w in zip(mine, other)]
                m, sd = mean_std(diffs)
                n = len(diffs)
                se = sd / math.sqrt(n) if n > 1 else float("nan")
                ci = (m - t975(n - 1) * se, m + t975(n - 1) * se) if n > 1 else None
                out[arm][k] = {"seeds": shared, "diffs": diffs, "mean": m, "std": sd, "se": se,
                               "ci95": ci, "order": ordering(ci), "above": sum(d > 0 for d in diffs),
                               "seeds_to_separate": seeds_to_separate(m, sd) if n > 1 else None,
                               "ranges": seed_ranges(mine, other),
                               "lowest": min(mine), "highest_other": max(other)}
    return out


def format_paired(summary: dict, reference: str, metric: str = "finetune_top1") -> str:
    """Markdown: ``reference`` minus each arm, mean ± std of the per-seed differences, the 95 %
    interval of their mean and what it says (when it contains 0, how many seeds would separate a
    difference of this mean and spread), whether every seed of ``reference`` is above every seed of
    the arm, how many seeds ``reference`` is above, and the differences themselves."""
    paired = paired_differences(summary, reference, metric)
    ks = sorted({k for a in paired.values() for k in a})
    lines = [f"| {reference} minus arm, {METRICS[metric]} | " + " | ".join(f"K = {k} (points)" for k in ks) + " |",
             "|---|" + "---:|" * len(ks)]
    for arm, cells in paired.items():
        vals = []
        for k in ks:
            c = cells.get(k)
            ci = "" if c is None or c["ci95"] is None else \
                f", 95 % CI {c['ci95'][0]:+.1f} to {c['ci95'][1]:+.1f}: {c['order']}"
            if c is not None and c["order"] == "not separated":
                need = c["seeds_to_separate"]
                ci += f" ({'over 1000' if need is None else f'≈ {need}'} seeds would separate it at this mean and spread)"
            if c is not None and c["ranges"] == "above":
                ci += f"; every seed above every seed of {arm} ({c['lowest']:.1f} > {c['highest_other']:.1f})"
            vals.append("–" if c is None else f"{c['mean']:+.1f} ± {c['std']:.1f}{ci}; above on {c['above']}/"
                        f"{len(c['diffs'])} ({', '.join(f'{d:+.1f}' for d in c['diffs'])})")
        lines.append(f"| {arm} | " + " | ".join(vals) + " |")
    return "\n".join(lines)


def plot_summary(summary: dict, path, chance: float = 12.5, title: str = "") -> Path:
    """Bars per arm (mean ± std) for each metric and K; seeds as dots."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    ks = sorted({k for a in summary.values() for k in a if isinstance(k, int)})
    arms = list(summary)
    fig, axes = plt.subplots(1, len(ks), figsize=(max(4.2, 0.75 * len(arms) + 1) * len(ks), 3.6), squeeze=False)
    width = 0.8 / len(METRICS)
    for ax, k in zip(axes[0], ks):
        for j, (metric, label) in enumerate(METRICS.items()):
            xs = [i + (j - (len(METRICS) - 1) / 2) * width for i in range(len(arms))]
            cells = [summary[a].get(k, {}).get(metric) for a in arms]
            ax.bar(xs, [c["mean"] if c else 0 for c in cells], width, yerr=[c["std"] if c else 0 for c in cells],
                   capsize=2, label=label, alpha=0.85)
            for x, c in zip(xs, cells):
                if c:
                    ax.plot([x] * len(c["values"]), c["values"], "k.", ms=3)
        ax.axhline(chance, color="grey", lw=0.8, ls=":", label="chance")
        ax.set_xticks(range(len(arms)))
        ax.set_xticklabels(arms, rotation=20, fontsize=8)
        ax.set_title(f"K = {k} labelled clips per class", fontsize=9)
        ax.set_ylabel("test top-1 (%)")
        ax.set_ylim(0, 100)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].legend(fontsize=7, loc="upper left", ncol=len(METRICS) + 1)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def data_fingerprints(s: Study) -> dict[str, str]:
    """The SHA-256 of each generated set (``mgm.data.synth.set_fingerprint``): equal fingerprints
    and versions mean the same runs, to the clip; sets drawn by other versions can be other bytes,
    and then the numbers move within the seed spread."""
    return {name: set_fingerprint(s.data_path() / name) for name in SETS}


def describe_arms(arms: dict[str, list[str]]) -> str:
    """'Arms: scratch, no pretraining; tube, tube masks at ratio 0.9; ...': what each arm's name
    stands for (an arm named without '@ratio' is at its paper's ratio, which differs by strategy)."""
    parts = []
    for name, overrides in arms.items():
        kv = dict(o.split("=", 1) for o in overrides)
        if not kv:
            parts.append(f"{name}, no pretraining")
            continue
        what = f"{kv.pop('mask.strategy', '?')} masks at ratio {kv.pop('mask.ratio', '?')}"
        parts.append(f"{name}, {what}" + "".join(f", {k}={v}" for k, v in kv.items()))
    return "Arms: " + "; ".join(parts) + "."


def write_outputs(s: Study, rows: list[dict], title: str = "", name: str = "study",
                  fingerprints: dict[str, str] | None = None) -> dict:
    """OUT/summary_NAME.json, table_NAME.md (fine-tune, linear probe, k-NN; pretraining loss and
    time) and NAME.png (several studies can share one OUT and its runs); returns the summary.
    ``fingerprints``: :func:`data_fingerprints`, when the caller already hashed the sets."""
    out = Path(s.out_dir)
    summary = summarize(rows, list(s.arms))
    for arm, cells in summary.items():
        for k, cell in cells.items():
            if isinstance(k, int) and "finetune_top1" in cell:
                cell["finetune_top1"]["test_std"] = std_from_test_set(s, rows, arm, k)
    reference = reference_arm(summary)
    paired = {m: paired_differences(summary, reference, m) for m in METRICS} if reference else {}
    env = versions()
    data = fingerprints or data_fingerprints(s)
    (out / f"summary_{name}.json").write_text(json.dumps({"study": dataclasses.asdict(s), "summary": summary,
                                                          "reference": reference, "paired": paired,
                                                          "versions": env, "data_sha256": data,
                                                          "installations": installation_counts(rows)},
                                                         indent=1, default=str) + "\n")
    seeds = ("one pretraining per arm (seed " + ", ".join(map(str, s.pretrain_seeds)) + "); the seeds vary the "
             "labelled subset, head initialisation and order of the fine-tuning"
             if s.pretrain_seeds is not None else "each seed its own pretraining, labelled subset and fine-tuning")
    if s.draws > 1:
        seeds += (f"; each seed the mean of {s.draws} labelled draws (each its own K-shot subset, head "
                  "initialisation and order over the seed's pretraining)")
        whole = sorted(k for k in {r["k"] for r in rows if "k" in r} if k >= s.pool)
        if whole:
            seeds += (f"; at K = {', '.join(map(str, whole))} every draw holds the whole labelled pool "
                      f"({s.pool} clips per class), so its draws differ only in head initialisation and "
                      "order, and k-NN's are the same")
    averaged = f", the weights' moving average (optim.ema={s.pretrain_ema})" if s.pretrain_ema else ""
    parts = [f"Test set: {s.test} clips; pretraining: {s.unlabeled} unlabeled clips, {s.pretrain_steps} steps{averaged}; "
             f"fine-tuning: {s.finetune_steps} steps; seeds {list(s.seeds)}: {seeds}. {describe_arms(s.arms)} "
             "Mean ± std (sample std). "
             + describe_installations(installation_counts(rows)) + " Generated sets (SHA-256 of the videos, first 12 hex "
             "digits): " + ", ".join(f"{k} {v[:12]}" for k, v in data.items()) + ".",
             "", format_table(summary, "finetune_top1"), "",
             *([format_paired(summary, reference, "finetune_top1"), ""] if reference else []),
             format_table(summary, "probe_top1"), "",
             format_table(summary, "knn_top1"), "", "| arm | pretraining loss (last 50 steps) | pretraining s |",
             "|---|---:|---:|"]
    for arm, cells in summary.items():
        p = cells.get("pretrain")
        parts.append(f"| {arm} | " + (f"{p['loss_last']:.4f} | {p['seconds']:.0f} |" if p else "– | – |"))
    parts += ["", "The pretraining loss compares runs of one mask strategy, not strategies: a guided mask tells "
              "the decoder where the motion is (`mgm recon CHECKPOINT LIST` splits the loss into what comes "
              "with and without the clip)."]
    (out / f"table_{name}.md").write_text("\n".join(parts) + "\n")
    plot_summary(summary, out / f"{name}.png", title=title)
    return summary
