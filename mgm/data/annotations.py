"""Annotation formats: turn a list file, an SSv2 JSON, a class-folder tree or a plain
folder of videos into ``Annotations`` (a list of ``Sample(path, label)`` + class names).

Formats (``format="auto"`` picks one from the path):

``list``       VideoMAE-style list: one ``path label`` per line, separated by a space, a
               tab or a comma (``path num_frames label`` is accepted too: the label is the
               last field). Relative paths are joined to ``root``. A line with a path only
               has label -1 (unlabeled pretraining lists). A first line whose label is not
               an integer is taken as a header and skipped. Without ``root``, relative
               paths are looked up next to the list file, then in the working directory. Class names come from a
               ``classes.txt`` next to the list (one name per line, line i = label i) when
               there is one, else the names are ``"0" .. "K-1"``.
``ssv2``       Something-Something v2: ``something-something-v2-{train,validation,test}.json``
               (entries with ``id`` and ``template``) + ``labels.json`` (template -> index)
               next to it or in ``root``. Videos are ``root/<id>.<ext>`` (``.webm`` as
               shipped, or ``.mp4`` after ``mgm data transcode``). Test entries: label -1.
``folders``    One sub-folder per class (UCF101 / HMDB51 / Diving48-by-class layout).
               Without split files: every video under the tree, classes = sorted
               sub-folder names. With official split files: a UCF101 ``trainlist0N.txt`` /
               ``testlist0N.txt`` given directly (videos relative to ``root``, class
               indices from ``classInd.txt`` beside it), or ``splits=DIR`` holding UCF101
               (``classInd.txt``, ``trainlist0N.txt``, ``testlist0N.txt``) or HMDB51
               (``<class>_test_splitN.txt``, ``1`` = train, ``2`` = test) files and
               ``split_id=N`` choosing the split; split "train" reads the train part,
               "val"/"test" the test part.
``unlabeled``  Every video file under a folder, recursively, label -1.

A path that does not exist as written but exists with another video extension (e.g. a
list naming ``.webm`` files after a transcode to ``.mp4``) is resolved to that file.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from mgm.errors import UserError

VIDEO_EXTENSIONS = (
    ".mp4", ".avi", ".webm", ".mkv", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv",
    ".3gp", ".ts", ".ogv", ".h264", ".264",
)
FORMATS = ("auto", "list", "ssv2", "folders", "unlabeled")


class AnnotationError(UserError, ValueError):
    """The annotation file / folder cannot be read; the message says why."""


@dataclass(frozen=True)
class Sample:
    path: str
    label: int = -1


@dataclass
class Annotations:
    samples: list[Sample]
    classes: list[str] = field(default_factory=list)
    format: str = "list"
    source: str = ""

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def num_classes(self) -> int:
        return len(self.classes)


# ---------------------------------------------------------------- entry point


def detect_format(spec: str | os.PathLike) -> str:
    p = Path(spec)
    if p.is_dir():
        if _looks_like_split_dir(p):
            raise AnnotationError(
                f"{p} holds split files, not videos: pass the video tree as the data path "
                "and this folder as data.splits (format folders)"
            )
        subdirs_with_videos = [d for d in p.iterdir() if d.is_dir() and _has_video(d, recursive=False)]
        top_videos = [f for f in p.iterdir() if f.is_file() and f.suffix.lower() in VIDEO_EXTENSIONS]
        return "folders" if subdirs_with_videos and not top_videos else "unlabeled"
    if p.is_file():
        if p.suffix.lower() == ".json":
            return "ssv2"
        if re.fullmatch(r"(train|test)list\d+\.txt", p.name.lower()):
            return "folders"
        return "list"
    raise AnnotationError(f"{p}: no such file or folder")


def load_annotations(
    spec: str | os.PathLike,
    root: str | os.PathLike = "",
    format: str = "auto",
    split: str = "train",
    splits: str | os.PathLike = "",
    split_id: int = 1,
    num_classes: int = 0,
) -> Annotations:
    """Read one annotation source. ``split`` only matters for official split files."""
    if not str(spec):
        raise AnnotationError(f"no data path given for split {split!r}")
    if format not in FORMATS:
        raise AnnotationError(f"unknown data format {format!r}; one of {', '.join(FORMATS)}")
    fmt = detect_format(spec) if format == "auto" else format
    spec = Path(spec)
    if fmt == "list":
        ann = read_list(spec, root)
    elif fmt == "ssv2":
        ann = read_ssv2(spec, root)
    elif fmt == "folders":
        ann = read_folders(spec, root=root, split=split, splits=splits, split_id=split_id)
    else:
        ann = read_unlabeled(spec)
    ann.format, ann.source = fmt, str(spec)
    if num_classes:
        top = max((s.label for s in ann.samples), default=-1)
        if top >= num_classes:
            raise AnnotationError(f"{spec}: label {top} >= data.num_classes={num_classes}")
        if len(ann.classes) != num_classes:
            names = list(ann.classes[:num_classes])
            ann.classes = names + [str(i) for i in range(len(names), num_classes)]
    return ann


# ---------------------------------------------------------------- helpers


def resolve_path(path: str, root: str | os.PathLike = "") -> str:
    """Join to root (unless absolute); if missing, try the same stem with another video
    extension. Returns the joined path even when nothing exists (the loader reports it)."""
    p = Path(path).expanduser()
    if not p.is_absolute() and str(root):
        p = Path(root) / p
    if p.exists():
        return str(p)
    parent = p.parent
    if parent.is_dir():
        for ext in VIDEO_EXTENSIONS:
            q = p.with_suffix(ext)
            if q.exists():
                return str(q)
    return str(p)


def _has_video(d: Path, recursive: bool) -> bool:
    it = d.rglob("*") if recursive else d.iterdir()
    return any(f.suffix.lower() in VIDEO_EXTENSIONS and f.is_file() for f in it)


def _looks_like_split_dir(d: Path) -> bool:
    names = [f.name.lower() for f in d.iterdir() if f.is_file()]
    return "classind.txt" in names or any(re.search(r"_test_split\d+\.txt$", n) for n in names)


def _is_int(s: str) -> bool:
    try:
        int(s)
        return True
    except ValueError:
        return False


# ---------------------------------------------------------------- list


def _list_path(rel: str, root, list_file: Path) -> str:
    """A list's relative path: under ``root`` when given; otherwise next to the list file
    when it exists there, else relative to the working directory."""
    if str(root) or Path(rel).is_absolute():
        return resolve_path(rel, root)
    beside = resolve_path(rel, list_file.parent)
    if Path(beside).exists():
        return beside
    here = resolve_path(rel, "")
    return here if Path(here).exists() else beside


def _split_line(line: str) -> list[str]:
    """Split a list line into fields. Comma-separated if the line has a comma followed by
    an integer at the end; otherwise whitespace. Paths containing spaces survive when the
    label is the last field."""
    s = line.strip()
    if "," in s:
        parts = [p.strip() for p in s.split(",")]
        if len(parts) >= 2 and (_is_int(parts[-1]) or len(parts) == 2):
            return parts
    parts = s.split()
    if len(parts) >= 2 and _is_int(parts[-1]):
        if len(parts) >= 3 and _is_int(parts[-2]) and not _is_int(parts[0]):
            # path num_frames label (TSN / VideoMAE frame lists) or path with spaces
            return [" ".join(parts[:-2]), parts[-2], parts[-1]]
        return [" ".join(parts[:-1]), parts[-1]]
    return [s]


def read_list(path: Path, root: str | os.PathLike = "") -> Annotations:
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as e:
        raise AnnotationError(f"{path}: cannot read ({e.strerror or e})") from None
    samples: list[Sample] = []
    labelled = unlabelled = first_unlabelled = 0
    first = True
    for lineno, raw in enumerate(lines, 1):
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        parts = _split_line(raw)
        is_first, first = first, False
        if len(parts) == 1:
            samples.append(Sample(_list_path(parts[0], root, path), -1))
            unlabelled += 1
            first_unlabelled = first_unlabelled or lineno
            continue
        if not _is_int(parts[-1]):
            if is_first:
                continue  # header line
            raise AnnotationError(f"{path}:{lineno}: label {parts[-1]!r} is not an integer")
        samples.append(Sample(_list_path(parts[0], root, path), int(parts[-1])))
        labelled += 1
    if not samples:
        raise AnnotationError(f"{path}: no videos listed")
    if labelled and unlabelled:
        raise AnnotationError(f"{path}:{first_unlabelled}: no integer label at the end of the line, "
                              "but other lines have one")
    classes: list[str] = []
    names_file = path.parent / "classes.txt"
    if names_file.is_file() and names_file != path:
        classes = [l.strip() for l in names_file.read_text().splitlines() if l.strip()]
    top = max(s.label for s in samples)
    if top >= len(classes):
        classes = classes + [str(i) for i in range(len(classes), top + 1)]
    if min(s.label for s in samples) < -1:
        raise AnnotationError(f"{path}: negative label")
    return Annotations(samples, classes)


# ---------------------------------------------------------------- SSv2


def _ssv2_template_key(t: str) -> str:
    return t.replace("[", "").replace("]", "").strip()


def read_ssv2(path: Path, root: str | os.PathLike = "") -> Annotations:
    try:
        entries = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise AnnotationError(f"{path}: not a readable JSON file ({e})") from None
    if not isinstance(entries, list):
        raise AnnotationError(f"{path}: expected a JSON list of {{id, template, ...}} entries")
    labels_file = None
    for cand in (path.parent / "labels.json", Path(root) / "labels.json" if str(root) else None):
        if cand is not None and cand.is_file():
            labels_file = cand
            break
    labels: dict[str, int] = {}
    if labels_file is not None:
        try:
            raw = json.loads(labels_file.read_text())
            labels = {_ssv2_template_key(k): int(v) for k, v in raw.items()}
        except (OSError, ValueError, AttributeError) as e:
            raise AnnotationError(f"{labels_file}: not a template -> index mapping ({e})") from None
    classes = [""] * (max(labels.values()) + 1 if labels else 0)
    for name, idx in labels.items():
        classes[idx] = name
    video_root = Path(root) if str(root) else path.parent
    samples = []
    for i, e in enumerate(entries):
        if not isinstance(e, dict) or "id" not in e:
            raise AnnotationError(f"{path}: entry {i} has no 'id'")
        label = -1
        if "template" in e or "label" in e:
            if not labels:
                raise AnnotationError(f"{path}: labelled entries but no labels.json next to it or in data.root")
            key = _ssv2_template_key(e.get("template") or e.get("label"))
            if key not in labels:
                raise AnnotationError(f"{path}: entry {e['id']}: template {key!r} not in {labels_file}")
            label = labels[key]
        samples.append(Sample(resolve_path(f"{e['id']}.webm", video_root), label))
    if not samples:
        raise AnnotationError(f"{path}: no videos listed")
    return Annotations(samples, classes)


# ---------------------------------------------------------------- class folders


def _tree_classes(tree: Path) -> list[str]:
    return sorted(d.name for d in tree.iterdir() if d.is_dir() and _has_video(d, recursive=True))


def read_folders(
    spec: Path, root: str | os.PathLike = "", split: str = "train",
    splits: str | os.PathLike = "", split_id: int = 1,
) -> Annotations:
    want_train = split == "train"
    if spec.is_file():  # a UCF101 trainlist/testlist given directly
        tree = Path(root) if str(root) else spec.parent
        return _read_ucf_split_file(spec, tree, spec.parent / "classInd.txt")
    if not spec.is_dir():
        raise AnnotationError(f"{spec}: no such folder")
    if str(splits):
        sdir = Path(splits)
        if not sdir.is_dir():
            raise AnnotationError(f"data.splits {sdir}: no such folder")
        if (sdir / "classInd.txt").is_file():
            name = f"{'train' if want_train else 'test'}list{split_id:02d}.txt"
            if not (sdir / name).is_file():
                raise AnnotationError(f"{sdir}: no {name} (UCF101 split {split_id})")
            return _read_ucf_split_file(sdir / name, spec, sdir / "classInd.txt")
        files = sorted(sdir.glob(f"*_test_split{split_id}.txt"))
        if not files:
            raise AnnotationError(f"{sdir}: neither classInd.txt (UCF101) nor *_test_split{split_id}.txt (HMDB51)")
        return _read_hmdb_split(files, spec, split_id, want_train)
    classes = _tree_classes(spec)
    if not classes:
        raise AnnotationError(f"{spec}: no class sub-folders with videos")
    samples = []
    for label, name in enumerate(classes):
        for f in sorted((spec / name).rglob("*")):
            if f.is_file() and f.suffix.lower() in VIDEO_EXTENSIONS:
                samples.append(Sample(str(f), label))
    return Annotations(samples, classes)


def _read_ucf_split_file(split_file: Path, tree: Path, class_ind: Path) -> Annotations:
    classes: list[str] = []
    if class_ind.is_file():
        pairs = []
        for line in class_ind.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 2 and _is_int(parts[0]):
                pairs.append((int(parts[0]), parts[1]))
        classes = [n for _, n in sorted(pairs)]
    else:
        classes = _tree_classes(tree) if tree.is_dir() else []
    index = {n: i for i, n in enumerate(classes)}
    samples = []
    for lineno, line in enumerate(split_file.read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        rel = parts[0]
        cls = rel.replace("\\", "/").split("/")[0]
        if cls not in index:
            if len(parts) >= 2 and _is_int(parts[1]):
                label = int(parts[1]) - 1  # trainlist labels are 1-based
            else:
                raise AnnotationError(f"{split_file}:{lineno}: class {cls!r} not in {class_ind}")
        else:
            label = index[cls]
        samples.append(Sample(resolve_path(rel, tree), label))
    if not samples:
        raise AnnotationError(f"{split_file}: no videos listed")
    return Annotations(samples, classes)


def _read_hmdb_split(files: list[Path], tree: Path, split_id: int, want_train: bool) -> Annotations:
    pat = re.compile(rf"^(.*)_test_split{split_id}\.txt$")
    classes = sorted(pat.match(f.name).group(1) for f in files)
    samples = []
    for label, name in enumerate(classes):
        f = files[0].parent / f"{name}_test_split{split_id}.txt"
        for line in f.read_text().splitlines():
            parts = line.split()
            if len(parts) < 2 or not _is_int(parts[1]):
                continue
            tag = int(parts[1])
            if (want_train and tag == 1) or (not want_train and tag == 2):
                samples.append(Sample(resolve_path(f"{name}/{parts[0]}", tree), label))
    if not samples:
        raise AnnotationError(f"{files[0].parent}: split {split_id} lists no videos")
    return Annotations(samples, classes)


# ---------------------------------------------------------------- unlabeled


def read_unlabeled(spec: Path) -> Annotations:
    if not spec.is_dir():
        raise AnnotationError(f"{spec}: no such folder")
    files = sorted(
        str(f) for f in spec.rglob("*") if f.is_file() and f.suffix.lower() in VIDEO_EXTENSIONS
    )
    if not files:
        raise AnnotationError(f"{spec}: no video files (extensions {' '.join(VIDEO_EXTENSIONS)})")
    return Annotations([Sample(f, -1) for f in files], [])


# ---------------------------------------------------------------- writing


def write_list(path: str | os.PathLike, samples: list[Sample], root: str | os.PathLike = "") -> None:
    """Write a VideoMAE-style ``path label`` list (paths relative to root when inside it)."""
    root_p = Path(root).resolve() if str(root) else None
    out = []
    for s in samples:
        p = Path(s.path)
        if root_p is not None:
            try:
                p = p.resolve().relative_to(root_p)
            except ValueError:
                pass
        out.append(f"{p} {s.label}" if s.label >= 0 else f"{p}")
    # written whole, then renamed over the list: a process reading it meanwhile (a study's fine-tune
    # and probe of one draw write the same list at once) sees the old list or the new, never a part
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text("\n".join(out) + ("\n" if out else ""))
    os.replace(tmp, path)
