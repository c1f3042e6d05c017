"""``report.md`` and a self-contained ``report.html`` (images inlined as base64) from the demo's
metrics. The first screen is the answer: fine-tuning accuracy with K labelled clips per class
for MGM-pretrained, tube-pretrained and scratch encoders, mean ± std over the seeds, chance, and
the wall time."""
from __future__ import annotations

import base64
import html
import math
import re
from pathlib import Path

from mgm.experiments.tables import seed_ranges
from mgm.provenance import describe_installations

CAPTIONS = {
    "study": ("Fine-tuning, linear probe and k-NN per arm",
              "Test top-1 (%) with K labelled clips per class: bars are the mean over the seeds, "
              "error bars the standard deviation, dots the seeds; dotted line: chance."),
    "loss": ("Pretraining loss", "Masked-patch MSE per logged optimiser step of each pretraining run, "
             "on per-patch normalised pixels (VideoMAE's target). Dashed: the loss of a model that has "
             "learnt nothing (each hidden patch predicted as its own mean); the curves end only a little "
             "below it, yet the fine-tuning table shows what the encoder learnt on the way."),
    "masks": ("Masks of every strategy on one test clip (paper Fig. 5)",
              "Top row: the frames with the motion magnitude of each patch (red) and its argmax "
              "(yellow cross); then one row per strategy, masked patches tinted blue, ratio 0.75 on "
              "the 8×8 patch grid. One column per temporal index t' (two frames per tubelet)."),
    "motion": ("Motion vectors of the same clip (paper Fig. 6c)",
               "The codec's motion vectors read from the H.264 stream in the same decode pass as the "
               "frames, accumulated per 8×8 cell between sampled frames (arrows; magnitude in colour, "
               "scale on the right)."),
    "reconstruction": ("Reconstructions (paper Fig. 8)",
                       "Each pretrained model on its own kind of mask: the input with the masked "
                       "patches grey, and the reconstruction (visible patches from the input, masked "
                       "ones as predicted, in colour; the model predicts per-patch normalised pixels, "
                       "shown with each target patch's own mean and std, as in VideoMAE's figures)."),
    "attention": ("Encoder attention of the centre patch of the centre frame (paper Fig. 7)",
                  "Last encoder block, all tokens visible, attention of the query at the centre patch "
                  "of temporal index T'/2 (green box), averaged over heads; colour from the row's "
                  "minimum (none) to its maximum (yellow)."),
}


def _f(x, d=1) -> str:
    try:
        return "–" if x is None or not math.isfinite(float(x)) else f"{float(x):.{d}f}"
    except (TypeError, ValueError):
        return str(x)


def _cell(c: dict | None) -> str:
    if not c:
        return "–"
    return f"{_f(c['mean'])} ± {_f(c['std'])}"


def headline(m: dict) -> list[str]:
    """The answer, in markdown lines: the fine-tuning table and what it shows."""
    k, arms = m["labels_per_class"], list(m["finetune"])
    lines = [f"| encoder | fine-tune top-1 (%), K = {k} | per seed | linear probe | k-NN |",
             "|---|---:|---|---:|---:|"]
    for a in arms:
        ft = m["finetune"].get(a)
        name = {"scratch": "scratch (no pretraining)"}.get(a, f"{a}-pretrained")
        lines.append(f"| {name} | **{_cell(ft)}** | {', '.join(_f(v) for v in (ft or {}).get('values', []))} | "
                     f"{_cell(m['probe'].get(a))} | {_cell(m['knn'].get(a))} |")
    lines.append(f"| chance | {_f(m['chance'])} | | {_f(m['chance'])} | {_f(m['chance'])} |")
    return lines + ["", verdict(m)]


def verdict(m: dict) -> str:
    """What the table shows, in one sentence per comparison, from the numbers themselves."""
    ft = m["finetune"]
    if m.get("preset") == "quick":
        return ("*Quick preset: a smoke test of the whole path (a few steps of everything): its numbers "
                "mean nothing.*")
    out = []
    base = ft.get("scratch")
    for a in [a for a in ft if a != "scratch"]:
        if not base:
            break
        d = ft[a]["mean"] - base["mean"]
        every = seed_ranges(ft[a]["values"], base["values"]) == "above"
        out.append(f"{a}-pretrained vs scratch: {d:+.1f} points"
                   + (" (every seed above every scratch seed)." if every else " (the seeds overlap)."))
    if "mgm" in ft and "tube" in ft:
        d = ft["mgm"]["mean"] - ft["tube"]["mean"]
        spread = max(ft["mgm"]["std"], ft["tube"]["std"])
        out.append(f"MGM vs tube: {d:+.1f} points" + (", within the seeds' spread." if abs(d) <= spread else "."))
    return " ".join(out)


def intro(m: dict) -> str:
    s, r = m.get("settings", {}), m.get("mask_ratio", {})
    return (f"Generated action clips (`mgm data synth --style actions`: stick figures walk left or right, "
            f"wave, clap, jump, kick, sit down or stand up over textured, panning scenes; appearance "
            f"carries no label). A 4-block `vit_tiny` encoder (8 frames of {s.get('size')}², 2×8×8 "
            f"tubelets) is pretrained as a masked autoencoder on {m.get('unlabeled_clips')} unlabeled clips "
            f"for {s.get('pretrain_steps')} steps with tube masks (ratio {r.get('tube', '–')}; VideoMAE's is 0.9) and "
            f"with motion-guided masks (ratio {r.get('mgm', '–')}; the paper's is 0.75), then fine-tuned for "
            f"{s.get('finetune_steps')} "
            f"steps on {m['labels_per_class']} labelled clips per class and tested on {m.get('test_clips')} "
            f"other clips, against the same encoder trained from scratch with the same steps. Seeds "
            f"{m.get('seeds')} vary the {m.get('seeds_vary')}. Wall time {_f(m.get('wall_s'), 0)} s"
            + (f" ({m['runs_reused']} runs reused from an earlier call into the same directory). "
               if m.get("runs_reused") else ". ") +
            "At this budget scratch training is far from converged: the gap measures how much faster a "
            "pretrained encoder learns from few labels; docs/results.md has the full protocol "
            "(`mgm study`: separate pretrainings per seed, longer runs) and longer fine-tuning.")


def details(m: dict) -> list[tuple[str, str]]:
    rows = []
    for a, p in (m.get("pretrain") or {}).items():
        rows.append((f"{a} pretraining: steps, seconds, loss first → last 50 steps",
                     f"{p.get('steps')}, {_f(p.get('seconds'))}, {_f(p.get('loss_first'), 4)} → "
                     f"{_f(p.get('loss_last'), 4)}"))
    rec = (m.get("figures") or {}).get("reconstruction") or {}
    for a, v in (rec.get("trivial_loss") or {}).items():
        rows.append((f"figure clip, {a}: masked-patch loss vs a model that learnt nothing",
                     f"{_f(rec['loss'].get(a), 4)} vs {_f(v, 4)}"))
    rows.append(("seconds per stage", ", ".join(f"{k} {_f(v)}" for k, v in (m.get("stage_seconds") or {}).items())))
    v = m.get("versions") or {}
    rows.append(("versions", ", ".join(f"{k} {v[k]}" for k in ("mgm", "code", "torch", "torch_cpu", "av", "opencv",
                                                                "python") if k in v)
                 + f"; {v.get('cpu')}, {v.get('cpu_count')} CPUs"))
    made = m.get("installations") or []
    if len(made) > 1:           # runs reused from an earlier demo made with another installation
        rows.append(("runs made with", describe_installations(made)))
    d = m.get("data_sha256") or {}
    if d:
        rows.append(("generated sets, SHA-256 (first 12 hex digits)", ", ".join(f"{k} {h[:12]}" for k, h in d.items())))
    return rows


def write_report(out: Path, m: dict) -> tuple[Path, Path]:
    out = Path(out)
    figs = m.get("figures", {})
    title = "mgm demo: does motion-guided pretraining help when labels are few?"
    if m.get("preset") == "quick":
        title += " (--quick: a smoke test)"
    head = headline(m)
    md = [f"# {title}", "", *head, "", intro(m), "", "## Details", "", "| | |", "|---|---|"]
    md += [f"| {k} | {v} |" for k, v in details(m)]
    md.append("")
    for key, (cap, text) in CAPTIONS.items():
        if key in figs:
            md += [f"## {cap}", "", f"![{cap}]({figs[key]['path']})", "", text, ""]
    md_path = out / "report.md"
    md_path.write_text("\n".join(md))

    esc = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(title)}</title>",
             "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
             "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}"
             "img{max-width:100%;border:1px solid #ddd}figcaption{color:#555;font-size:0.9em;margin:0.4em 0 2em}"
             "</style></head><body>", f"<h1>{esc(title)}</h1>", _md_table(head[:-2]),
             f"<p>{_md_inline(head[-1])}</p>", f"<p>{_md_inline(intro(m))}</p>", "<h2>Details</h2><table>"]
    parts += [f"<tr><td>{esc(k)}</td><td>{esc(v)}</td></tr>" for k, v in details(m)]
    parts.append("</table>")
    for key, (cap, text) in CAPTIONS.items():
        if key in figs:
            data = base64.b64encode((out / figs[key]["path"]).read_bytes()).decode()
            parts.append(f"<h2>{esc(cap)}</h2><figure><img alt='{esc(cap)}' src='data:image/png;base64,{data}'>"
                         f"<figcaption>{esc(text)}</figcaption></figure>")
    parts.append("</body></html>")
    html_path = out / "report.html"
    html_path.write_text("\n".join(parts))
    return md_path, html_path


def _md_table(lines: list[str]) -> str:
    rows = [ln.strip("|").split("|") for ln in lines if not set(ln) <= set("|-:")]
    out = ["<table>"]
    for i, cells in enumerate(rows):
        tag = "th" if i == 0 else "td"
        out.append("<tr>" + "".join(f"<{tag}>{_md_inline(c.strip())}</{tag}>" for c in cells) + "</tr>")
    return "".join(out) + "</table>"


def _md_inline(text: str) -> str:
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))
    text = re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", text)
    return re.sub(r"\*([^*]+)\*", r"<i>\1</i>", text)
