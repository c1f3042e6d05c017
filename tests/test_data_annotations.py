"""Annotation formats parsed from small fixtures (no video decoding)."""
import json
import os
from pathlib import Path

import pytest

from mgm.data.annotations import AnnotationError, Sample, detect_format, load_annotations, write_list


def touch(p: Path) -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(b"x")
    return p


def test_videomae_list_space_and_comma(tmp_path):
    root = tmp_path / "k400"
    for n in ("a.mp4", "b c.mp4", "d.mp4"):
        touch(root / "train" / n)
    (tmp_path / "space.txt").write_text("train/a.mp4 3\ntrain/b c.mp4 0\n\ntrain/d.mp4 1\n")
    (tmp_path / "comma.csv").write_text("path,label\ntrain/a.mp4,3\ntrain/b c.mp4,0\ntrain/d.mp4,1\n")
    (tmp_path / "frames.txt").write_text("train/a.mp4 300 3\ntrain/b c.mp4 120 0\ntrain/d.mp4 90 1\n")
    for name in ("space.txt", "comma.csv", "frames.txt"):
        ann = load_annotations(tmp_path / name, root=root)
        assert ann.format == "list"
        assert [Path(s.path).name for s in ann.samples] == ["a.mp4", "b c.mp4", "d.mp4"]
        assert [s.label for s in ann.samples] == [3, 0, 1]
        assert ann.classes == ["0", "1", "2", "3"]
        assert all(Path(s.path).is_file() for s in ann.samples)


def test_list_unlabeled_classes_file_and_relative_to_list(tmp_path):
    touch(tmp_path / "v" / "x.mp4")
    (tmp_path / "pre.txt").write_text("v/x.mp4\nv/y.mp4\n")
    ann = load_annotations(tmp_path / "pre.txt")
    assert [s.label for s in ann.samples] == [-1, -1] and ann.classes == []
    assert ann.samples[0].path == str(tmp_path / "v" / "x.mp4")      # next to the list
    (tmp_path / "lab.txt").write_text("v/x.mp4 1\n")
    (tmp_path / "classes.txt").write_text("walk\nrun\njump\n")
    ann = load_annotations(tmp_path / "lab.txt")
    assert ann.classes == ["walk", "run", "jump"] and ann.num_classes == 3
    (tmp_path / "bad.txt").write_text("v/x.mp4 1\nv/y.mp4 one\n")
    with pytest.raises(AnnotationError, match="bad.txt:2"):
        load_annotations(tmp_path / "bad.txt")


def test_extension_fallback_after_transcode(tmp_path):
    touch(tmp_path / "v" / "x.mp4")
    (tmp_path / "l.txt").write_text("v/x.webm 0\n")
    assert load_annotations(tmp_path / "l.txt").samples[0].path.endswith("x.mp4")


def test_ssv2_json(tmp_path):
    d = tmp_path / "ssv2"
    labels = {"Moving something from left to right": "0", "Pushing something so that it falls off the table": "1"}
    d.mkdir()
    (d / "labels.json").write_text(json.dumps(labels))
    train = [{"id": "10", "label": "moving a cup from left to right",
              "template": "Moving [something] from left to right", "placeholders": ["a cup"]},
             {"id": "11", "label": "pushing pen so that it falls off the table",
              "template": "Pushing [something] so that it falls off the table", "placeholders": ["pen"]}]
    (d / "something-something-v2-train.json").write_text(json.dumps(train))
    (d / "something-something-v2-test.json").write_text(json.dumps([{"id": "99"}]))
    videos = tmp_path / "videos"
    touch(videos / "10.webm")
    touch(videos / "11.mp4")            # transcoded
    ann = load_annotations(d / "something-something-v2-train.json", root=videos)
    assert ann.format == "ssv2"
    assert [s.label for s in ann.samples] == [0, 1]
    assert ann.classes[1].startswith("Pushing something")
    assert ann.samples[0].path.endswith("10.webm") and ann.samples[1].path.endswith("11.mp4")
    test = load_annotations(d / "something-something-v2-test.json", root=videos)
    assert [s.label for s in test.samples] == [-1]


@pytest.fixture
def ucf(tmp_path):
    tree = tmp_path / "UCF-101"
    for c in ("ApplyEyeMakeup", "Biking", "Surfing"):
        for g in (1, 8):
            touch(tree / c / f"v_{c}_g{g:02d}_c01.avi")
    sp = tmp_path / "ucfTrainTestlist"
    sp.mkdir()
    (sp / "classInd.txt").write_text("1 ApplyEyeMakeup\n2 Biking\n3 Surfing\n")
    (sp / "trainlist01.txt").write_text("".join(
        f"{c}/v_{c}_g08_c01.avi {i + 1}\n" for i, c in enumerate(("ApplyEyeMakeup", "Biking", "Surfing"))))
    (sp / "testlist01.txt").write_text("".join(
        f"{c}/v_{c}_g01_c01.avi\n" for c in ("ApplyEyeMakeup", "Biking", "Surfing")))
    return tree, sp


def test_class_folders_and_ucf_splits(ucf):
    tree, sp = ucf
    assert detect_format(tree) == "folders"
    ann = load_annotations(tree)
    assert ann.classes == ["ApplyEyeMakeup", "Biking", "Surfing"] and len(ann) == 6
    assert [s.label for s in ann.samples] == [0, 0, 1, 1, 2, 2]
    # split file given directly (videos under data.root)
    tr = load_annotations(sp / "trainlist01.txt", root=tree)
    assert tr.format == "folders" and [s.label for s in tr.samples] == [0, 1, 2]
    assert all("_g08_" in s.path and Path(s.path).is_file() for s in tr.samples)
    te = load_annotations(sp / "testlist01.txt", root=tree)
    assert [s.label for s in te.samples] == [0, 1, 2] and all("_g01_" in s.path for s in te.samples)
    # or the tree + the split folder
    te2 = load_annotations(tree, splits=sp, split="test", split_id=1)
    assert te2.samples == te.samples
    with pytest.raises(AnnotationError, match="split 2"):
        load_annotations(tree, splits=sp, split="train", split_id=2)


def test_hmdb_splits(tmp_path):
    tree = tmp_path / "hmdb51"
    sp = tmp_path / "splits"
    sp.mkdir()
    for c in ("brush_hair", "cartwheel"):
        lines = []
        for k, tag in enumerate((1, 2, 0, 1)):
            touch(tree / c / f"{c}_{k}.avi")
            lines.append(f"{c}_{k}.avi {tag} ")
        (sp / f"{c}_test_split1.txt").write_text("\n".join(lines) + "\n")
    tr = load_annotations(tree, splits=sp, split="train")
    assert tr.classes == ["brush_hair", "cartwheel"]
    assert [(Path(s.path).name, s.label) for s in tr.samples] == [
        ("brush_hair_0.avi", 0), ("brush_hair_3.avi", 0), ("cartwheel_0.avi", 1), ("cartwheel_3.avi", 1)]
    te = load_annotations(tree, splits=sp, split="val")
    assert [Path(s.path).name for s in te.samples] == ["brush_hair_1.avi", "cartwheel_1.avi"]


def test_unlabeled_recursive_and_write_list(tmp_path):
    touch(tmp_path / "vids" / "a.mp4")
    touch(tmp_path / "vids" / "2024" / "b.MKV")
    touch(tmp_path / "vids" / "2024" / "notes.txt")
    ann = load_annotations(tmp_path / "vids")
    assert ann.format == "unlabeled" and len(ann) == 2 and all(s.label == -1 for s in ann.samples)
    write_list(tmp_path / "out.txt", ann.samples, root=tmp_path / "vids")
    assert (tmp_path / "out.txt").read_text().split() == ["2024/b.MKV", "a.mp4"]
    with pytest.raises(AnnotationError):
        load_annotations(tmp_path / "nothing_here")


def test_write_list_replaces_a_list_whole(tmp_path, monkeypatch):
    """Two processes of a study write the same K-shot list while a third may read it: the list
    is never seen truncated or half written (it is written aside, then renamed over)."""
    target = tmp_path / "labelled.txt"
    target.write_text("old.mp4 0\n")
    seen = []
    real_replace = os.replace

    def replace(src, dst):
        seen.append((Path(dst).read_text(), Path(src).read_text()))   # at the swap: old list whole, new one whole
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    write_list(target, [Sample("a.mp4", 1), Sample("b.mp4", 2)])
    assert seen == [("old.mp4 0\n", "a.mp4 1\nb.mp4 2\n")]
    assert target.read_text() == "a.mp4 1\nb.mp4 2\n" and sorted(p.name for p in tmp_path.iterdir()) == ["labelled.txt"]
