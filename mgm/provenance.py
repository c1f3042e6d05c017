"""Which installation made a study's runs, so that a table never passes off numbers from another
machine or another code version as this one's.

A study reuses finished runs (``OUT/results.jsonl``), which is what makes it resumable and lets
studies share runs; but a run's numbers depend on more than its seed and command. Measured on this
project's machines (docs/results.md): switching PyTorch's CPU kernels alone moves a pretrained
arm's fine-tune by several points, as much as another seed does; another OpenCV can draw other
bytes. So every run records the installation that made it (:func:`installation`), a study says when
it reuses runs made elsewhere (:func:`reuse_notice`), and its table names the installations its
rows come from (:func:`describe_installations`).
"""
from __future__ import annotations

import functools
import hashlib
import os
import platform
from pathlib import Path

import mgm

# What a run's numbers depend on besides its seed, command and data (the generated sets have their
# own fingerprints): the code, the numerical libraries, the CPU's kernel set and model (MKL picks
# kernels by CPU), the decoder and the drawing library.
NUMBERS_DEPEND_ON = ("mgm", "code", "torch", "torch_cpu", "cpu", "av", "opencv", "numpy")


@functools.lru_cache(maxsize=1)
def code_digest() -> str:
    """SHA-256 (first 12 hex digits) of the mgm package's Python sources and presets: a version
    number stays the same across commits, the digest does not."""
    root = Path(mgm.__file__).parent
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.suffix in (".py", ".yaml") and p.is_file()):
        h.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:12]


def cpu_model() -> str:
    """The CPU's model name (Linux's /proc/cpuinfo; else what ``platform`` knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def versions() -> dict:
    """What a result depends on besides the seed and command, and the platform. The generated sets
    are drawn with OpenCV's float warps and antialiased lines, whose rounding differs between some
    OpenCV releases (4.14 and 5.x draw a few pixels one level apart from the same seed)."""
    import cv2          # heavy imports only when a study runs or writes its outputs, not when the CLI starts
    import numpy
    import torch

    v = {"mgm": mgm.__version__, "code": code_digest(), "python": platform.python_version(),
         "torch": torch.__version__, "torch_cpu": torch.backends.cpu.get_cpu_capability(), "cpu": cpu_model(),
         "opencv": cv2.__version__, "numpy": numpy.__version__, "platform": platform.platform(),
         "cpu_count": os.cpu_count()}
    try:
        import av

        v["av"] = av.__version__
    except ImportError:
        pass
    # plain str: torch.__version__ is a str subclass that torch.load(weights_only=True) refuses in a
    # checkpoint's trainer state
    return {k: n if isinstance(n, int) else str(n) for k, n in v.items()}


def installation(v: dict | None = None) -> dict:
    """The part of :func:`versions` (default: this process's) that a run's numbers depend on."""
    if v is None:
        return dict(_this_installation())
    return {k: v[k] for k in NUMBERS_DEPEND_ON if k in v}


@functools.lru_cache(maxsize=1)
def _this_installation() -> dict:
    return installation(versions())


def installation_counts(rows: list[dict]) -> list[dict]:
    """[{"installation": ..., "runs": n}] for the installations the rows were made with, most rows
    first (the form ``summary_*.json`` and ``metrics.json`` record); installation None for rows
    that recorded none (made before mgm recorded it)."""
    counts: dict[str, dict] = {}
    for r in rows:
        inst = r.get("installation")
        key = repr(sorted(inst.items())) if inst else ""
        counts.setdefault(key, {"installation": inst or None, "runs": 0})["runs"] += 1
    return sorted(counts.values(), key=lambda c: -c["runs"])


def _runs(n: int) -> str:
    return f"{n} run" + ("" if n == 1 else "s")


def differences(inst: dict, ref: dict) -> str:
    """What ``inst`` has other than ``ref``, e.g. 'torch_cpu AVX512, cpu Intel Xeon'."""
    return ", ".join(f"{k} {inst.get(k, '?')}" for k in NUMBERS_DEPEND_ON if inst.get(k) != ref.get(k))


def describe_installations(counts: list[dict]) -> str:
    """One sentence for a table: the installation its rows were made with, or, when they were made
    with several (or some recorded none), how many rows each and how the others differ.
    ``counts``: :func:`installation_counts`."""
    if not counts:
        return "No runs."
    first, n = counts[0]["installation"], counts[0]["runs"]
    if first is None:
        head = f"{_runs(n)} did not record their installation (made before mgm recorded it)"
    else:
        head = "Made with " + ", ".join(f"{k} {first[k]}" for k in NUMBERS_DEPEND_ON if k in first)
        if len(counts) == 1:
            return head + "."
        head += f" ({_runs(n)})"
    others = []
    for c in counts[1:]:
        inst, m = c["installation"], c["runs"]
        others.append(f"{_runs(m)} recorded no installation" if inst is None
                      else f"{_runs(m)} with {differences(inst, first or {})}")
    return (head + "; " + "; ".join(others) + ". **The rows come from more than one installation**: runs made "
            "elsewhere can differ from a rerun here by as much as another seed (docs/results.md, "
            "Reproducibility).") if others else head + "."


def reuse_notice(reused: list[dict], here: dict) -> str | None:
    """A line for the user when a study is about to reuse finished runs made with another
    installation (or none recorded), else None."""
    foreign = [r for r in reused if r.get("installation") != here]
    if not foreign:
        return None
    unrecorded = sum(1 for r in foreign if not r.get("installation"))
    diffs = sorted({differences(r["installation"], here) for r in foreign if r.get("installation")})
    what = "; ".join(filter(None, [f"{unrecorded} recorded none" if unrecorded else "",
                                   *(f"made with {d}" for d in diffs)]))
    return (f"reusing {_runs(len(foreign))} made with another installation than this one ({what}); "
            "their numbers can differ from a rerun here by as much as another seed: use a new --out to rerun them")
