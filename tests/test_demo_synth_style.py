"""The demo's high-contrast synthetic set (``style="bold"``) and ensure_dataset's reuse rule."""
from __future__ import annotations

import json

import numpy as np


def test_bold_style_same_motion_higher_contrast(tmp_path):
    from mgm.data import synth
    from mgm.data.synth import render_bold, video_spec
    from mgm.video.synthetic import render_frames

    stds = {"natural": [], "bold": []}
    for i in range(8):
        spec = video_spec(i, 64, 16, seed=0)
        nat, nat_boxes, _ = render_frames(64, 64, 16, [synth._object(spec)], pan=spec["pan"],
                                          distractors=spec["distractors"], seed=spec["render_seed"])
        bold, boxes = render_bold(spec, 64, 16)
        assert bold.shape == nat.shape and bold.dtype == np.uint8
        assert boxes.shape == (16, 4) and np.all(boxes[:, 2:] >= boxes[:, :2])
        # same trajectory: box centres agree (the bold object is larger, same centre)
        cn = (nat_boxes[:, 0, :2] + nat_boxes[:, 0, 2:]) / 2
        cb = (boxes[:, :2] + boxes[:, 2:]) / 2
        inside = np.all((nat_boxes[:, 0, :2] > 0) & (nat_boxes[:, 0, 2:] < 64) &
                        (boxes[:, :2] > 0) & (boxes[:, 2:] < 64), axis=1)
        assert np.allclose(cn[inside], cb[inside], atol=1.0)
        stds["natural"].append(nat.std() / 255)
        stds["bold"].append(bold.std() / 255)
    assert np.mean(stds["bold"]) > 1.3 * np.mean(stds["natural"])


def test_ensure_dataset_regenerates_on_style_or_size_change(tmp_path):
    from mgm.experiments.demo import ensure_dataset

    d = tmp_path / "data"
    a = ensure_dataset(d, 5, size=64, style="bold")
    assert not a["reused"] and a["style"] == "bold"
    meta = json.loads((d / "boxes.json").read_text())
    assert meta["style"] == "bold" and meta["width"] == 64
    assert ensure_dataset(d, 5, size=64, style="bold")["reused"]
    assert not ensure_dataset(d, 5, size=64, style="natural")["reused"]
    assert json.loads((d / "boxes.json").read_text())["style"] == "natural"
