"""The paper's downstream protocols as one table (``mgm transfer``): Table 2 (fine-tune and linear
probe on UCF101, HMDB51, Diving48) and Table 3 (partial domain adaptation UCF14->HMDB7,
HMDB14->UCF7), for one pretrained checkpoint per row.

A plan is a list of cells; a cell is a protocol on a dataset, run with a config preset and
``key=value`` overrides:

``finetune``  ``run_finetune``; the cell is the multi-view test top-1 on ``data.test``.
``linprobe``  ``run_linprobe``, then ``run_eval`` of the probe it saved (``linprobe.safetensors``,
              BatchNorm folded into the head) on ``data.test``.
``da``        ``run_finetune`` with a preset that sets ``data.class_map`` (``da_*``): trained on
              the source list (``data.train``), tested on the target list (``data.test``) through
              the map. The cell is top-1 over all source classes (a source-only prediction is an
              error, as the benchmark scores it), with top-1 restricted to the target's classes.

Every cell runs in this process through the engine's functions, exactly as the command it
records (``mgm finetune --config PRESET ... run.out_dir=...``) would. Each cell's result goes to
``OUT/cells/<label>__<protocol>__<dataset>/transfer_cell.json``; ``OUT/transfer.md`` and
``OUT/transfer.csv`` are rebuilt from every cell under OUT, so the rows of several checkpoints
(``--label``) accumulate in one table. A cell whose result exists for the same command is kept.
"""
from __future__ import annotations

import csv
import json
import os
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from mgm.config import ConfigError, load_config
from mgm.config_checks import validate_config
from mgm.engine.finetune import run_eval, run_finetune
from mgm.engine.linprobe import run_linprobe
from mgm.engine.preemption import EXIT_PREEMPTED, TrainingInterrupted
from mgm.engine.trainer import TrainingStopped
from mgm.errors import UserError, parse_problem

PROTOCOLS = {"finetune": "Fine-tune", "linprobe": "Linear probe", "da": "Partial domain adaptation"}
RESULT = "transfer_cell.json"

# the paper's cells (Sec. 4.4): lists under DATA laid out as docs/transfer.md says
PAPER_PLAN = {
    "title": "Transfer from one pretrained checkpoint (paper Tables 2 and 3)",
    "cells": [
        *({"protocol": p, "dataset": name, "config": cfg if p == "finetune" else "linprobe",
           "set": {"data.train": f"{{data}}/{d}/train.txt", "data.test": f"{{data}}/{d}/test.txt"}}
          for p in ("finetune", "linprobe")
          for name, d, cfg in (("UCF101", "ucf101", "finetune_ucf101"), ("HMDB51", "hmdb51", "finetune_hmdb51"),
                               ("Diving48", "diving48", "finetune_diving48"))),
        {"protocol": "da", "dataset": "UCF14→HMDB7", "config": "da_ucf14_hmdb7",
         "set": {"data.train": "{data}/ucf14/train.txt", "data.test": "{data}/hmdb7/test.txt"}},
        {"protocol": "da", "dataset": "HMDB14→UCF7", "config": "da_hmdb14_ucf7",
         "set": {"data.train": "{data}/hmdb14/train.txt", "data.test": "{data}/ucf7/test.txt"}},
    ],
}
PLANS = {"paper": PAPER_PLAN}


@dataclass
class Cell:
    protocol: str                 # finetune | linprobe | da
    dataset: str                  # the table's column
    config: str                   # preset name or YAML path
    overrides: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.protocol}/{self.dataset}"


def infer_protocol(config: str) -> str:
    stem = Path(config).stem
    return "da" if stem.startswith("da_") else "linprobe" if "linprobe" in stem else "finetune"


def _fill(value: str, data_dir: str, where: str) -> str:
    if "{data}" in value and not data_dir:
        raise UserError(f"{where} uses {{data}}: give --data DIR (the folder of the dataset lists)")
    return value.replace("{data}", data_dir.rstrip("/"))


def load_plan(spec: str, data_dir: str = "") -> tuple[str, list[Cell]]:
    """(title, cells) of a built-in plan (``PLANS``) or a YAML plan file."""
    if spec in PLANS and not Path(spec).exists():
        plan, base = PLANS[spec], Path.cwd()
    else:
        try:
            plan = yaml.safe_load(Path(spec).read_text())
        except (OSError, yaml.YAMLError) as e:
            raise UserError(f"{spec}: not a readable plan ({parse_problem(e)}); built-in plans: "
                            f"{', '.join(PLANS)}") from None
        base = Path(spec).parent
    if not isinstance(plan, dict) or not isinstance(plan.get("cells"), list) or not plan["cells"]:
        raise UserError(f"{spec}: a plan is a mapping with a non-empty list 'cells'")
    cells = []
    for i, c in enumerate(plan["cells"], 1):
        where = f"{spec}: cell {i}"
        if not isinstance(c, dict) or not {"protocol", "dataset"} <= set(c) or set(c) - {"protocol", "dataset", "config", "set"}:
            raise UserError(f"{where}: expected keys protocol, dataset, config (optional), set (optional)")
        if c["protocol"] not in PROTOCOLS:
            raise UserError(f"{where}: protocol {c['protocol']!r} is not one of {', '.join(PROTOCOLS)}")
        config = _fill(str(c.get("config") or ("linprobe" if c["protocol"] == "linprobe" else "")), data_dir, where)
        if not config:
            raise UserError(f"{where}: no config (a preset such as finetune_ucf101, or a YAML file)")
        if (base / config).is_file():               # a YAML file named relative to the plan
            config = str(base / config)
        sets = c.get("set") or {}
        items = sets.items() if isinstance(sets, dict) else (str(s).partition("=")[::2] for s in sets)
        cells.append(Cell(c["protocol"], str(c["dataset"]), config,
                          [f"{k}={_fill(str(v), data_dir, where)}" for k, v in items]))
    return str(plan.get("title") or ""), cells


def plan_yaml(spec: str) -> str:
    return yaml.safe_dump(PLANS[spec], sort_keys=False, allow_unicode=True) if spec in PLANS else Path(spec).read_text()


def row_label(overrides: list[str]) -> str:
    """The row name when --label is not given: the pretraining run's folder, else the file's stem."""
    init = next((o.partition("=")[2] for o in reversed(overrides) if o.startswith("model.init=")), "")
    if not init:
        return "scratch"
    p = Path(init)
    return p.parent.name if p.stem in ("pretrained", "model", "finetuned") and p.parent.name else p.stem


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text.replace("→", "-")).strip("-") or "x"


def cell_dir(out: Path, label: str, cell: Cell) -> Path:
    return out / "cells" / f"{_slug(label)}__{cell.protocol}__{_slug(cell.dataset)}"


def cell_steps(cell: Cell, extra: list[str], out_dir: Path) -> list[tuple[str, str, list[str]]]:
    """(task, config, overrides) of each engine run of a cell, in order; the user's overrides
    come after the plan's, the output directory last."""
    ov = [*cell.overrides, *extra, f"run.out_dir={out_dir}"]
    if cell.protocol == "linprobe":
        probe = [o for o in ov if not o.startswith("model.init=")]    # the eval loads the probe instead
        return [("linprobe", cell.config, ov),
                ("eval", cell.config, [*probe, f"model.init={out_dir / 'linprobe.safetensors'}"])]
    return [("finetune", cell.config, ov)]


def command(task: str, config: str, overrides: list[str], launcher: str = "") -> str:
    head = [*shlex.split(launcher), "-m", "mgm"] if launcher else ["mgm"]
    return shlex.join([*head, task, "--config", config, *overrides])


def check_cell(cell: Cell, steps) -> None:
    """Every config of the cell loads and validates, and its lists exist: a typo in the last
    cell must not wait for the first cell's training."""
    for task, config, ov in steps:
        try:
            cfg = load_config(config, ov)
            cfg.task = task
            validate_config(cfg)
        except ConfigError as e:
            raise UserError(f"cell {cell.name}: {e}") from None
        if cell.protocol == "da" and not cfg.data.class_map:
            raise UserError(f"cell {cell.name}: protocol da needs data.class_map (the da_* presets set it)")
        if task == "linprobe" and not cfg.model.init:
            raise UserError(f"cell {cell.name}: a linear probe needs model.init=CHECKPOINT (the pretrained encoder)")
        if not cfg.data.test:
            raise UserError(f"cell {cell.name}: data.test is not set (the cell's number is its test)")
        for key in ("train", "test") if task != "eval" else ("test",):
            path = getattr(cfg.data, key)
            if not Path(path).exists():
                raise UserError(f"cell {cell.name}: data.{key}={path}: no such file or folder")


def _launched(launcher: str, task: str, config: str, overrides: list[str], where: str) -> None:
    """One engine run as a subprocess under ``launcher`` (``torchrun --nproc_per_node 8``: a
    process group per run, which one process cannot safely set up and tear down cell after cell)."""
    argv = [*shlex.split(launcher), "-m", "mgm", task, "--config", config, *overrides]
    if shlex.split(launcher)[0] in ("python", "python3"):
        argv[0] = sys.executable
    rc = subprocess.run(argv).returncode
    if rc == EXIT_PREEMPTED:
        raise TrainingInterrupted(f"{where}: `mgm {task}` was pre-empted (exit 75); run the same "
                                  "command with run.resume=auto to continue it", step=-1, checkpoint=None)
    if rc == 3:
        raise TrainingStopped(f"{where}: `mgm {task}` stopped itself (exit 3; see its output above)")
    if rc != 0:
        raise UserError(f"{where}: `{shlex.join(argv)}` exited with code {rc} (its output is above)")


def run_cell(cell: Cell, steps, label: str, out_dir: Path, launcher: str = "") -> dict:
    """Run the cell's steps (in this process, or each under ``launcher``); its numbers are the
    last step's multi-view test, which run_test writes to OUT_DIR/test_metrics.json."""
    t0 = time.perf_counter()
    where = f"cell {label} {cell.name}"
    metrics_file = out_dir / "test_metrics.json"
    metrics_file.unlink(missing_ok=True)          # left by an earlier run of a changed command
    for task, config, ov in steps:
        if launcher:
            _launched(launcher, task, config, ov, where)
            continue
        cfg = load_config(config, ov)
        cfg.task = task
        fn = {"finetune": run_finetune, "linprobe": run_linprobe, "eval": run_eval}[task]
        try:
            fn(cfg)
        except UserError as e:
            raise UserError(f"{where}: {e}") from None
    test = json.loads(metrics_file.read_text())
    keep = ("top1", "top5", "top1_target_classes", "predicted_outside_target", "videos", "views_per_video",
            "class_map", "target_classes", "source_classes")
    return {"label": label, "protocol": cell.protocol, "dataset": cell.dataset, "config": cell.config,
            "metrics": {k: test[k] for k in keep if k in test}, "seconds": round(time.perf_counter() - t0, 1),
            "out_dir": str(out_dir), "commands": [command(*s, launcher) for s in steps],
            "finished": time.time()}


def _same_command(old: dict, steps, launcher: str = "") -> bool:
    """Equal commands, ignoring run.resume (adding run.resume=auto to continue a pre-empted cell
    must not rerun the finished ones)."""
    strip = (lambda cmds: [re.sub(r" run\.resume=\S*", "", c) for c in cmds])
    return strip(old.get("commands", [])) == strip([command(*s, launcher) for s in steps])


def run_plan(cells: list[Cell], extra: list[str], out: str | Path, label: str = "", force: bool = False,
             dry_run: bool = False, title: str = "", log=print, launcher: str = "") -> list[dict]:
    """Run (or, with ``dry_run``, list) every cell; returns the results of this call's cells.
    ``launcher``: run each engine run as ``LAUNCHER -m mgm ...`` (several GPUs), else in this process."""
    out = Path(out)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise UserError("run mgm transfer as one process; for several GPUs give --launcher "
                        "'torchrun --standalone --nproc_per_node N' (each run gets its own process group)")
    if any(o.startswith("run.out_dir=") for o in extra):
        raise UserError("run.out_dir is set per cell (OUT/cells/...); give --out DIR instead")
    label = label or row_label(extra)
    plans = [(c, cell_dir(out, label, c)) for c in cells]
    plans = [(c, d, cell_steps(c, extra, d)) for c, d in plans]
    for c, _, steps in plans:
        check_cell(c, steps)
    done = []
    for c, d, steps in plans:
        old = d / RESULT
        if dry_run:
            log("\n".join(command(*s, launcher) for s in steps))
            continue
        if old.exists() and not force and _same_command(json.loads(old.read_text()), steps, launcher):
            log(f"{label} {c.name}: kept (finished before with the same command; --force runs it again)")
            done.append(json.loads(old.read_text()))
            continue
        log(f"{label} {c.name}: " + " && ".join(command(*s, launcher) for s in steps))
        res = run_cell(c, steps, label, d, launcher)
        d.mkdir(parents=True, exist_ok=True)
        old.write_text(json.dumps(res, indent=1, ensure_ascii=False) + "\n")
        write_tables(out, title)
        done.append(res)
    return done


# ---------------------------------------------------------------- the table


def collect(out: str | Path) -> list[dict]:
    """Every cell result under OUT, oldest first."""
    found = [json.loads(p.read_text()) for p in sorted(Path(out).glob(f"cells/*/{RESULT}"))]
    return sorted(found, key=lambda r: r.get("finished", 0))


def _value(r: dict | None) -> str:
    if r is None:
        return "–"
    m = r["metrics"]
    text = f"{m['top1']:.1f}"
    if "top1_target_classes" in m:
        text += f" ({m['top1_target_classes']:.1f})"
    return text


def format_markdown(results: list[dict], title: str = "") -> str:
    lines = [f"# {title or 'Transfer'}", ""]
    notes = {"finetune": "top-1 % of the multi-view test on each dataset's test list",
             "linprobe": "top-1 % of the multi-view test of the linear probe (frozen encoder)",
             "da": "top-1 % on the target's test list over all source classes (a source-only class "
                   "counts as an error); in parentheses, top-1 restricted to the target's classes"}
    for proto, heading in PROTOCOLS.items():
        rows = [r for r in results if r["protocol"] == proto]
        if not rows:
            continue
        labels = list(dict.fromkeys(r["label"] for r in rows))
        cols = list(dict.fromkeys(r["dataset"] for r in rows))
        cell = {(r["label"], r["dataset"]): r for r in rows}
        lines += [f"## {heading}", "", notes[proto] + ".", "",
                  "| pretrained | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
        lines += [f"| {lab} | " + " | ".join(_value(cell.get((lab, c))) for c in cols) + " |" for lab in labels]
        lines.append("")
    lines += ["## Commands", "", "Each cell, as the commands that made it (run in `mgm transfer`'s process):", ""]
    for r in results:
        m = r["metrics"]
        lines.append(f"- **{r['label']} / {r['protocol']} / {r['dataset']}** ({m.get('videos', '?')} test videos, "
                     f"{r['seconds']:.0f} s): " + " && ".join(f"`{c}`" for c in r["commands"]))
    return "\n".join(lines) + "\n"


CSV_COLUMNS = ("label", "protocol", "dataset", "top1", "top5", "top1_target_classes", "predicted_outside_target",
               "videos", "views_per_video", "seconds", "config", "out_dir", "commands")


def write_tables(out: str | Path, title: str = "") -> tuple[Path, Path]:
    out = Path(out)
    results = collect(out)
    md = out / "transfer.md"
    md.write_text(format_markdown(results, title))
    path = out / "transfer.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(CSV_COLUMNS)
        for r in results:
            flat = {**r, **r["metrics"], "commands": " && ".join(r["commands"])}
            w.writerow([flat.get(k, "") for k in CSV_COLUMNS])
    return md, path
