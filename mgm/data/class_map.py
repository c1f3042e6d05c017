"""Class maps for cross-dataset evaluation: each class of a target list -> a class of the source model.

Partial domain adaptation (the paper's Table 3, on the UCF-HMDB_partial benchmark of Xu et al.,
ICCV 2021): a classifier fine-tuned on the source's 14 classes is tested on a target set whose 7
classes are a subset of them, under the other dataset's names. The map says which source class
each target class is. A prediction of a source class the target lacks is simply wrong ("negative
transfer"); ``mgm.engine.evaluate`` also reports top-1 restricted to the mapped source classes.

File formats (``data.class_map=FILE``), target class -> source class, names or ids::

    # map.yaml                          # map.csv (an optional header line)
    climb: RockClimbingIndoor           target,source
    dive: Diving                        climb,RockClimbingIndoor
    3: 7                                3,7

A key or value is a class *name* when the list (target) or the model (source) has a class of
that name, else an integer id. Target names come from the list's ``classes.txt``; source names
from the fine-tuning run (its training list's ``classes.txt``, recorded in ``finetuned.json``).
Every class that occurs in the target list must be mapped and every name must exist: otherwise a
``ClassMapError`` names the file and the class. ``BUILTIN`` holds the benchmark's two pairings
(``data.class_map=ucf14_hmdb7`` / ``hmdb14_ucf7``); ``CLASS_SETS`` its class lists (for
``mgm data subset --classes ucf14``). Torch-free: ``mgm.config`` validates maps with it.
"""
from __future__ import annotations

import csv
import difflib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import yaml

from mgm.data.annotations import Annotations, Sample
from mgm.errors import UserError

# The 14 classes UCF101 and HMDB51 share in UCF-HMDB_partial, as (UCF101 name, HMDB51 name).
# Read from the benchmark's released lists (github.com/xuyu0010/PATAN, dataset/*/list_cvt/*_uh.txt
# and *_hu.txt): the HMDB14 source list of HMDB14->UCF7 labels these HMDB classes 0..13 in this
# order, which is the alphabetical order of the UCF names; its UCF7 target list labels the first
# seven 0..6. The UCF14 source list of UCF14->HMDB7 uses another order of the same 14 classes and
# its HMDB7 target is climb, dive, fencing, golf, handstand, kick_ball, pullup.
SHARED_14 = (
    ("Archery", "shoot_bow"), ("Basketball", "shoot_ball"), ("Biking", "ride_bike"),
    ("Diving", "dive"), ("Fencing", "fencing"), ("GolfSwing", "golf"),
    ("HandstandWalking", "handstand"), ("HorseRiding", "ride_horse"), ("PullUps", "pullup"),
    ("Punch", "punch"), ("PushUps", "pushup"), ("RockClimbingIndoor", "climb"),
    ("SoccerPenalty", "kick_ball"), ("WalkingWithDog", "walk"),
)
HMDB7 = ("climb", "dive", "fencing", "golf", "handstand", "kick_ball", "pullup")
UCF7 = ("Archery", "Basketball", "Biking", "Diving", "Fencing", "GolfSwing", "HandstandWalking")
CLASS_SETS = {
    "ucf14": tuple(u for u, _ in SHARED_14),
    "hmdb14": tuple(h for _, h in SHARED_14),
    "hmdb7": HMDB7,
    "ucf7": UCF7,
}
BUILTIN = {   # name -> {target class name: source class name}
    "ucf14_hmdb7": {h: u for u, h in SHARED_14 if h in HMDB7},
    "hmdb14_ucf7": {u: h for u, h in SHARED_14 if u in UCF7},
}


class ClassMapError(UserError, ValueError):
    """A class map that cannot be read or does not fit the data; the message names file and class."""


@dataclass(frozen=True)
class ClassMap:
    where: str                                       # the file, or "built-in class map NAME"
    pairs: tuple[tuple[str | int, str | int], ...]   # (target key, source key), as written


# ---------------------------------------------------------------- reading


class _UniqueKeyLoader(yaml.SafeLoader):
    """safe_load keeps the last of two equal keys; in a class map that hides a mistake."""


def _unique_mapping(loader, node, deep=False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise ClassMapError(f"target class {key!r} is mapped twice (line {key_node.start_mark.line + 1})")
        seen.add(key)
    return loader.construct_mapping(node, deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


def _scalar(value, what: str, where: str):
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ClassMapError(f"{where}: {what} {value!r} is not a class name or id (quote names "
                            "such as yes/no/on/off in YAML)")
    if isinstance(value, str) and not value.strip():
        raise ClassMapError(f"{where}: empty {what}")
    return value.strip() if isinstance(value, str) else value


def _read_yaml(path: Path) -> list[tuple]:
    try:
        data = yaml.load(path.read_text(), Loader=_UniqueKeyLoader)
    except ClassMapError as e:
        raise ClassMapError(f"{path}: {e}") from None
    except (OSError, yaml.YAMLError) as e:
        raise ClassMapError(f"{path}: not a readable YAML mapping ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict) or not data:
        raise ClassMapError(f"{path}: expected a mapping 'target class: source class', one per line")
    pairs = []
    for k, v in data.items():
        if v is None:
            raise ClassMapError(f"{path}: target class {k!r} has no source class after the colon")
        pairs.append((_scalar(k, "target class", str(path)), _scalar(v, "source class", str(path))))
    return pairs


def _read_csv(path: Path) -> list[tuple]:
    try:
        lines = path.read_text().splitlines()
    except OSError as e:
        raise ClassMapError(f"{path}: cannot read ({e.strerror or e})") from None
    pairs, seen = [], {}
    for lineno, row in enumerate(csv.reader(lines), 1):
        cells = [c.strip() for c in row]
        if not any(cells) or cells[0].startswith("#"):
            continue
        if len(cells) != 2 or not all(cells):
            raise ClassMapError(f"{path}:{lineno}: expected two columns 'target,source', got {row!r}")
        if not pairs and not seen and [c.lower() for c in cells] == ["target", "source"]:
            continue                                      # header
        if cells[0] in seen:
            raise ClassMapError(f"{path}:{lineno}: target class {cells[0]!r} is mapped twice "
                                f"(first on line {seen[cells[0]]})")
        seen[cells[0]] = lineno
        pairs.append((cells[0], cells[1]))
    if not pairs:
        raise ClassMapError(f"{path}: no 'target,source' lines")
    return pairs


def load_class_map(spec: str) -> ClassMap:
    """A built-in map by name, or a ``.csv`` file (two columns) or YAML file (a mapping)."""
    if spec in BUILTIN:
        return ClassMap(f"built-in class map {spec}", tuple(BUILTIN[spec].items()))
    path = Path(spec)
    if not path.is_file():
        raise ClassMapError(f"{spec}: no such file, and not a built-in class map "
                            f"({', '.join(BUILTIN)})")
    pairs = _read_csv(path) if path.suffix.lower() == ".csv" else _read_yaml(path)
    return ClassMap(str(path), tuple(pairs))


# ---------------------------------------------------------------- fitting to the data


def _index(key, names: list[str] | None, count: int) -> int | None:
    """A name of ``names`` first (names such as "3" are names), then an integer id < count."""
    if isinstance(key, str):
        if names and key in names:
            return names.index(key)
        try:
            key = int(key)
        except ValueError:
            return None
    return key if 0 <= key < count else None


def _listing(names: list[str], limit: int = 12) -> str:
    return ", ".join(names[:limit]) + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def _near(key, names) -> str:
    near = difflib.get_close_matches(str(key), list(names or []), n=1)
    return f" (did you mean {near[0]}?)" if near else ""


def resolve_class_map(cm: ClassMap, target: Annotations, source_classes: list[str] | None,
                      num_source: int, model: str = "the model") -> dict[int, int]:
    """{target label: source label}; ClassMapError naming ``cm.where`` and the class on any
    mismatch. ``source_classes``: the model's class names (None when unknown), ``num_source``
    its number of outputs, ``model`` how to name it in messages."""
    tnames = list(target.classes)
    tsrc = target.source or "the target list"
    if source_classes is not None and len(source_classes) != num_source:
        source_classes = None                     # names that do not match the head are no names
    unlabelled = sum(s.label < 0 for s in target.samples)
    if unlabelled:
        raise ClassMapError(f"{tsrc}: {unlabelled} videos have no label; a class map needs a "
                            "labelled target list")
    mapping: dict[int, int] = {}
    for tkey, skey in cm.pairs:
        t = _index(tkey, tnames, len(tnames))
        if t is None:
            raise ClassMapError(f"{cm.where}: target class {tkey!r} is not a class of {tsrc} "
                                f"(its classes: {_listing(tnames)}; names come from classes.txt "
                                f"beside the list){_near(tkey, tnames)}")
        if t in mapping:
            raise ClassMapError(f"{cm.where}: target class {tnames[t]!r} (id {t}) is mapped twice")
        s = _index(skey, source_classes, num_source)
        if s is None:
            if source_classes is None and isinstance(skey, str) and not skey.lstrip("-").isdigit():
                raise ClassMapError(f"{cm.where}: source class {skey!r} is a name, but {model} "
                                    f"records no class names; use source ids 0..{num_source - 1}")
            listed = f": {_listing(source_classes)}" if source_classes else f" (ids 0..{num_source - 1})"
            raise ClassMapError(f"{cm.where}: source class {skey!r} is not a class of {model} "
                                f"({num_source} classes{listed}){_near(skey, source_classes)}")
        mapping[t] = s
    counts = Counter(s.label for s in target.samples)
    for t in sorted(counts):
        if t not in mapping:
            name = tnames[t] if t < len(tnames) else str(t)
            raise ClassMapError(f"{cm.where}: target class {name!r} (id {t}, {counts[t]} videos in "
                                f"{tsrc}) has no source class")
    return mapping


def map_annotations(target: Annotations, mapping: dict[int, int], source_classes: list[str] | None,
                    num_source: int) -> Annotations:
    """The target list with source labels and the source's class names (predictions are source
    classes, so the predictions CSV names them)."""
    names = list(source_classes) if source_classes and len(source_classes) == num_source else \
        [str(i) for i in range(num_source)]
    samples = [Sample(s.path, mapping[s.label]) for s in target.samples]
    return Annotations(samples, names, target.format, target.source)
