"""Saliency score r_bbox / r_non_bbox on synthetic clips whose boxes are known."""
from __future__ import annotations

import json

import numpy as np


def _write_boxes(path, key, boxes, w, h):
    path.write_text(json.dumps({"format": "xyxy", "units": "pixels", "width": w, "height": h,
                                "videos": {key: {"boxes": np.asarray(boxes).tolist()}}}))


def test_saliency_moving_object_box_scores_above_one(tmp_path, synthetic_video_factory):
    from mgm.experiments.saliency import load_boxes_file, saliency

    truth = synthetic_video_factory(width=112, height=112, num_frames=32, distractors=2, seed=3)
    boxes = np.asarray(truth.boxes)[:, 0]                 # (T, 4): the moving object
    bpath = tmp_path / "boxes.json"
    _write_boxes(bpath, "clip.mp4", boxes, 112, 112)
    res = saliency([str(truth.path)], load_boxes_file(bpath), ["clip.mp4"], motion="codec")
    v = res.videos[0]
    assert "error" not in v, v
    assert v["score"] > 1.0, v
    assert res.overall["videos"] == 1 and res.overall["score"] > 1.0

    # a box in a corner where nothing moves scores below the moving object's box
    corner = np.tile([[0, 0, 24, 24]], (len(boxes), 1))
    _write_boxes(bpath, "clip.mp4", corner, 112, 112)
    res2 = saliency([str(truth.path)], load_boxes_file(bpath), ["clip.mp4"], motion="codec")
    assert res2.videos[0]["score"] < v["score"]


def test_saliency_cli_on_synth_set(tmp_path, capsys):
    from mgm.cli import main
    from mgm.data.synth import make_synth_dataset

    d = tmp_path / "synth"
    make_synth_dataset(d, videos=8, size=112, frames=16, workers=1, progress=False)
    assert main(["saliency", str(d / "train.txt"), "--boxes", str(d / "boxes.json"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    n_train = len((d / "train.txt").read_text().split())
    n_train //= 2                                          # "path label" per line
    assert out["overall"]["videos"] == n_train and out["overall"]["skipped"] == 0
    assert out["overall"]["score"] > 1.0


def test_something_else_format_and_matching(tmp_path):
    from mgm.experiments.saliency import inside_mask, load_boxes_file, match

    se = {"12345": [
        {"name": "12345/0001.jpg", "labels": [{"box2d": {"x1": 0, "y1": 0, "x2": 31, "y2": 31}, "category": "hand"},
                                             {"box2d": {"x1": 64, "y1": 64, "x2": 96, "y2": 96}, "category": "cup"}]},
        {"name": "12345/0003.jpg", "labels": []}]}
    p = tmp_path / "bounding_box_annotations.json"
    p.write_text(json.dumps(se))
    b = load_boxes_file(p)
    vb = match(b, "videos/12345.webm")                     # matched by file stem
    assert vb is not None and sorted(vb.frames) == [0]      # 1-based names -> raw frame 0
    assert vb.frames[0].shape == (2, 4)
    m = inside_mask(vb.frames[0], 7, 7, 16)
    assert m[0, 0] and m[4, 4] and not m[2, 2]
    # scaled boxes: boxes for 224 px, video decoded at 112 px
    m2 = inside_mask(np.array([[0, 0, 62, 62]], np.float32), 7, 7, 16, 0.5, 0.5)
    assert m2[0, 0] and m2[1, 1] and not m2[2, 2]
