"""Subsets: per-class draws and class subsets (Mini-K200, UCF14): exact counts, seeded, nested,
renumbered labels, clear errors; the `mgm data subset` command."""
import subprocess
import sys

import pytest

from mgm.data.annotations import Sample, load_annotations
from mgm.data.class_map import CLASS_SETS
from mgm.data.subset import choose_classes, make_subset, per_class, write_list, write_subset
from mgm.errors import UserError


def test_per_class_counts_seeds_and_nesting(tmp_path):
    samples = [Sample(f"v{i}.mp4", i % 4) for i in range(40)]
    a = per_class(samples, 3, seed=0)
    assert len(a) == 12 and sorted(s.label for s in a) == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert a == per_class(samples, 3, seed=0) and a != per_class(samples, 3, seed=1)
    assert set(s.path for s in a) <= set(s.path for s in per_class(samples, 6, seed=0))   # nested
    assert sorted(s.label for s in per_class(samples, 2, seed=0, classes=[1, 3])) == [1, 1, 3, 3]
    with pytest.raises(UserError, match="class 0 has 10 samples, fewer than the 11"):
        per_class(samples, 11)
    lines = write_list(a, tmp_path / "x" / "sub.txt").read_text().splitlines()
    assert len(lines) == 12 and [int(l.split()[1]) for l in lines] == [s.label for s in a] and lines[0].startswith("/")


def _ann(tmp_path, counts, names=None):
    """A list with counts[c] videos of class c (interleaved), classes.txt beside it."""
    labels, left = [], list(counts)
    while any(left):
        for c, n in enumerate(left):
            if n:
                labels.append(c)
                left[c] -= 1
    d = tmp_path / "src"
    d.mkdir(exist_ok=True)
    (d / "train.txt").write_text("".join(f"v/{i:03d}.mp4 {y}\n" for i, y in enumerate(labels)))
    (d / "classes.txt").write_text("".join(f"{n}\n" for n in (names or [f"c{i}" for i in range(len(counts))])))
    return load_annotations(d / "train.txt", root=tmp_path / "videos")


def test_class_subsets_exact_counts_renumbered_and_seeded(tmp_path):
    ann = _ann(tmp_path, [5, 9, 2, 9, 7, 1])
    # the N most frequent: 9, 9, 7 -> classes 1, 3, 4 (ties to the lower id), renumbered 0..2 in id order
    assert choose_classes(ann.samples, 3) == [1, 3, 4]
    assert choose_classes(ann.samples, 2) == [1, 3]                 # tie 9/9 kept, 7 dropped
    sub = make_subset(ann, classes=3)
    assert sub.classes == ["c1", "c3", "c4"] and sub.counts == {0: 9, 1: 9, 2: 7} and len(sub.samples) == 25
    assert make_subset(ann, classes=3, per_class_k=2).counts == {0: 2, 1: 2, 2: 2}
    # a seeded draw: same seed, same classes; every seed some 3 distinct classes
    draws = {s: choose_classes(ann.samples, 3, "random", seed=s) for s in range(6)}
    assert draws[0] == choose_classes(ann.samples, 3, "random", seed=0) and len(set(map(tuple, draws.values()))) > 1
    assert all(len(set(d)) == 3 for d in draws.values())
    # a K-shot subset of chosen classes keeps the per-class draw of per_class (nested in a larger K)
    a = make_subset(ann, classes=3, per_class_k=2, seed=4)
    b = make_subset(ann, classes=3, per_class_k=5, seed=4)
    assert {s.path for s in a.samples} <= {s.path for s in b.samples}
    out = write_subset(sub, tmp_path / "mini" / "train.txt", root=tmp_path / "videos")
    lines = out.read_text().splitlines()
    assert len(lines) == 25 and lines[0].startswith("v/") and {l.split()[1] for l in lines} == {"0", "1", "2"}
    assert (out.parent / "classes.txt").read_text() == "c1\nc3\nc4\n"


def test_class_files_builtin_sets_and_errors(tmp_path):
    ann = _ann(tmp_path, [3] * 16, names=list(CLASS_SETS["ucf14"]) + ["Rowing", "Surfing"])
    (tmp_path / "keep.txt").write_text("# my classes\nPunch\n0   # Archery by id\n")
    sub = make_subset(ann, classes=str(tmp_path / "keep.txt"))
    assert sub.classes == ["Punch", "Archery"] and sub.counts == {0: 3, 1: 3}
    assert make_subset(ann, classes="ucf14").classes == list(CLASS_SETS["ucf14"])
    (tmp_path / "bad.txt").write_text("Punch\nPunchh\n")
    with pytest.raises(UserError, match=r"bad\.txt:2: class 'Punchh' is not a class of the list.*did you mean Punch"):
        make_subset(ann, classes=str(tmp_path / "bad.txt"))
    with pytest.raises(UserError, match=r"class 'Archery' \(id 0\) has 3 videos in .*train\.txt, fewer than --per-class 4"):
        make_subset(ann, classes="ucf7", per_class_k=4)
    with pytest.raises(UserError, match="asked for 17 classes; the list has 16"):
        make_subset(ann, classes=17)
    # a classes.txt beside the output that names other classes is never overwritten
    with pytest.raises(UserError, match=r"src/classes\.txt exists and names other classes"):
        write_subset(sub, tmp_path / "src" / "few.txt")


def test_subset_cli_prints_counts_and_writes_the_list(tmp_path):
    _ann(tmp_path, [4, 6, 2])
    r = subprocess.run([sys.executable, "-m", "mgm", "data", "subset", str(tmp_path / "src" / "train.txt"),
                        "--classes", "2", "--per-class", "2", "--seed", "1", "--out", str(tmp_path / "o" / "l.txt")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    table = r.stdout.splitlines()
    assert [l.split()[:3] for l in table[1:3]] == [["0", "c0", "2"], ["1", "c1", "2"]]    # the 2 largest
    assert table[3].startswith("4 videos in 2 classes")
    assert len((tmp_path / "o" / "l.txt").read_text().splitlines()) == 4
    r = subprocess.run([sys.executable, "-m", "mgm", "data", "subset", str(tmp_path / "src" / "train.txt"),
                        "--out", str(tmp_path / "o2" / "l.txt")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "nothing to subset" in r.stderr


def test_subset_of_official_ucf_split_files_by_builtin_class_set(tmp_path):
    """UCF101 split files (classInd.txt + trainlist01.txt) -> the UCF7 classes, by name."""
    ucf = sorted(CLASS_SETS["ucf14"] + ("ApplyEyeMakeup", "Surfing"))
    (tmp_path / "UCF-101").mkdir()
    (tmp_path / "splits").mkdir()
    (tmp_path / "splits" / "classInd.txt").write_text("".join(f"{i + 1} {c}\n" for i, c in enumerate(ucf)))
    (tmp_path / "splits" / "trainlist01.txt").write_text(
        "".join(f"{c}/v_{c}_g{g:02d}_c01.avi {i + 1}\n" for i, c in enumerate(ucf) for g in (8, 9)))
    r = subprocess.run([sys.executable, "-m", "mgm", "data", "subset", str(tmp_path / "UCF-101"), "--splits",
                        str(tmp_path / "splits"), "--classes", "ucf7", "--out", str(tmp_path / "ucf7" / "train.txt")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    lines = (tmp_path / "ucf7" / "train.txt").read_text().splitlines()
    assert len(lines) == 14 and lines[0].endswith("Archery/v_Archery_g08_c01.avi 0")
    assert (tmp_path / "ucf7" / "classes.txt").read_text().split() == list(CLASS_SETS["ucf7"])
