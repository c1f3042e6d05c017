"""Subsets of an annotation list: a few labelled clips per class (data-efficiency studies,
few-shot splits) or a subset of the classes (Mini-Kinetics-200 from Kinetics-400, the 14 classes
UCF101 and HMDB51 share).

    from mgm.data.annotations import load_annotations
    from mgm.data.subset import per_class, write_list
    ann = load_annotations("train.txt")
    write_list(per_class(ann.samples, k=4, seed=0), "train_4shot.txt")

    sub = make_subset(ann, classes=200, per_class_k=400)     # Mini-K200: the 200 largest classes
    write_subset(sub, "mini200/train.txt", root="/data/k400")  # + classes.txt beside it

Deterministic in the seed; the first ``k`` of a class for seed s are the first ``k`` of a
longer draw with the same seed, so a 4-shot split is contained in the 16-shot split of the
same seed. A class subset renumbers the labels 0..N-1 in the order the classes were chosen (a
head then has N outputs) and names them in the subset's ``classes.txt``.
"""
from __future__ import annotations

import difflib
import os
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mgm.data.annotations import Annotations, Sample
from mgm.data.annotations import write_list as write_annotation_list
from mgm.data.class_map import CLASS_SETS
from mgm.errors import UserError

CHOICES = ("frequent", "random")   # how N classes are chosen: the N largest, or a seeded draw


def per_class(samples: list[Sample], k: int, seed: int = 0, classes: list[int] | None = None) -> list[Sample]:
    """``k`` samples of every class (or of ``classes``), drawn with ``seed``, in list order."""
    by_label: dict[int, list[int]] = defaultdict(list)
    for i, s in enumerate(samples):
        by_label[int(s.label)].append(i)
    labels = sorted(by_label) if classes is None else list(classes)
    keep = []
    for label in labels:
        idx = by_label.get(label, [])
        if len(idx) < k:
            raise UserError(f"class {label} has {len(idx)} samples, fewer than the {k} asked for")
        order = np.random.default_rng([seed, label]).permutation(len(idx))
        keep += [idx[j] for j in order[:k]]
    return [samples[i] for i in sorted(keep)]


def choose_classes(samples: list[Sample], n: int, how: str = "frequent", seed: int = 0) -> list[int]:
    """``n`` class ids, ascending: the ``n`` with most samples (ties: lower id first; Mini-Kinetics
    takes K400's largest classes) or ``n`` drawn uniformly with ``seed``."""
    counts = Counter(int(s.label) for s in samples if s.label >= 0)
    if not 1 <= n <= len(counts):
        raise UserError(f"asked for {n} classes; the list has {len(counts)} labelled classes")
    if how == "frequent":
        ranked = sorted(counts, key=lambda c: (-counts[c], c))
        return sorted(ranked[:n])
    if how == "random":
        pool = sorted(counts)
        pick = np.random.default_rng([seed, n]).permutation(len(pool))[:n]
        return sorted(pool[i] for i in pick)
    raise UserError(f"class choice {how!r} is not one of {', '.join(CHOICES)}")


def read_class_names(spec: str, classes: list[str]) -> list[int]:
    """Class ids from ``spec``: a file with one class name (or id) per line (``#`` comments), or a
    built-in set (``CLASS_SETS``: ucf14, hmdb14, ucf7, hmdb7). Names are looked up in ``classes``
    (the list's ``classes.txt``); a token that is no name but an integer is an id."""
    if spec in CLASS_SETS and not Path(spec).exists():
        where, lines = f"built-in class set {spec}", list(enumerate(CLASS_SETS[spec], 1))
    else:
        try:
            text = Path(spec).read_text()
        except OSError as e:
            raise UserError(f"{spec}: cannot read the class file ({e.strerror or e})") from None
        where = spec
        lines = [(i, l.split("#", 1)[0].strip()) for i, l in enumerate(text.splitlines(), 1)]
    ids: list[int] = []
    for lineno, tok in lines:
        if not tok:
            continue
        if tok in classes:
            c = classes.index(tok)
        elif tok.isdigit() and int(tok) < len(classes):
            c = int(tok)
        else:
            near = difflib.get_close_matches(tok, classes, n=1)
            raise UserError(f"{where}:{lineno}: class {tok!r} is not a class of the list (names from "
                            f"its classes.txt; {len(classes)} classes)"
                            + (f"; did you mean {near[0]}?" if near else ""))
        if c in ids:
            raise UserError(f"{where}:{lineno}: class {tok!r} is listed twice")
        ids.append(c)
    if not ids:
        raise UserError(f"{where}: no class names")
    return ids


@dataclass
class Subset:
    samples: list[Sample]          # labels as written (renumbered for a class subset)
    classes: list[str]             # names of the written labels
    counts: dict[int, int]         # written label -> samples kept
    available: dict[int, int]      # written label -> samples the source list has
    source: str


def make_subset(ann: Annotations, classes: int | str | None = None, per_class_k: int = 0,
                seed: int = 0, how: str = "frequent") -> Subset:
    """Keep ``classes`` (a count ``N`` chosen by ``how``, a class file or built-in set, or None:
    all) and of each kept class ``per_class_k`` samples drawn with ``seed`` (0: all)."""
    labelled = [s for s in ann.samples if s.label >= 0]
    if len(labelled) != len(ann.samples):
        raise UserError(f"{ann.source}: {len(ann.samples) - len(labelled)} videos have no label; "
                        "subsets are drawn per class")
    if per_class_k < 0:
        raise UserError(f"--per-class must be >= 0, got {per_class_k}")
    names = list(ann.classes)
    if classes is None:
        keep, renumber = sorted({s.label for s in labelled}), False
    elif isinstance(classes, int):
        keep, renumber = choose_classes(labelled, classes, how, seed), True
    else:
        keep, renumber = read_class_names(classes, names), True
    available = Counter(s.label for s in labelled)
    if per_class_k:
        short = [c for c in keep if available[c] < per_class_k]
        if short:
            c = short[0]
            raise UserError(f"class {names[c] if c < len(names) else c!r} (id {c}) has {available[c]} "
                            f"videos in {ann.source}, fewer than --per-class {per_class_k}"
                            + (f" ({len(short)} classes are short)" if len(short) > 1 else ""))
        chosen = per_class(labelled, per_class_k, seed, classes=keep)
    else:
        wanted = set(keep)
        chosen = [s for s in labelled if s.label in wanted]
    new = {c: i for i, c in enumerate(keep)} if renumber else {c: c for c in keep}
    out_names = [names[c] if c < len(names) else str(c) for c in keep] if renumber else names
    samples = [Sample(s.path, new[s.label]) for s in chosen]
    return Subset(samples, out_names, dict(Counter(s.label for s in samples)),
                  {new[c]: available[c] for c in keep}, ann.source)


def write_list(samples: list[Sample], path: str | os.PathLike, root: str | os.PathLike = "") -> Path:
    """A VideoMAE list (``path label`` per line) of ``samples``: paths relative to ``root`` when
    given and inside it, else absolute."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_annotation_list(path, [Sample(str(Path(s.path).resolve()), s.label) for s in samples], root)
    return path


def write_subset(sub: Subset, path: str | os.PathLike, root: str | os.PathLike = "") -> Path:
    """The list and, beside it, ``classes.txt``. A different ``classes.txt`` already there names
    the labels of the lists beside it: refused rather than overwritten."""
    path = Path(path)
    names_file = path.parent / "classes.txt"
    text = "".join(f"{n}\n" for n in sub.classes)
    if names_file.exists() and names_file.read_text() != text:
        raise UserError(f"{names_file} exists and names other classes (it labels the lists beside it); "
                        f"write {path.name} into its own folder")
    write_list(sub.samples, path, root)
    names_file.write_text(text)
    return path


def format_counts(sub: Subset) -> str:
    """One line per written class (label, name, kept / available), then the totals."""
    width = max((len(n) for n in sub.classes), default=4)
    lines = [f"{'label':>5}  {'class':<{width}}  {'videos':>6}  {'of':>6}"]
    for label in sorted(sub.available):
        name = sub.classes[label] if label < len(sub.classes) else str(label)
        lines.append(f"{label:>5}  {name:<{width}}  {sub.counts.get(label, 0):>6}  {sub.available[label]:>6}")
    lines.append(f"{len(sub.samples)} videos in {len(sub.available)} classes from {sub.source}")
    return "\n".join(lines)
