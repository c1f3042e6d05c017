"""The generated demo sets (``style="bold"``, ``style="actions"``) and ensure_dataset's reuse rule."""
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


def test_ensure_synth_dataset_regenerates_on_any_change(tmp_path):
    from mgm.data.synth import GENERATOR_VERSION, ensure_synth_dataset, set_fingerprint

    d = tmp_path / "data"
    a = ensure_synth_dataset(d, 5, size=64, frames=16, style="bold", progress=False)
    assert not a["reused"] and a["style"] == "bold"
    meta = json.loads((d / "boxes.json").read_text())
    assert meta["style"] == "bold" and meta["width"] == 64
    import cv2      # the set records what drew it: another OpenCV rounds its pixels differently

    assert meta["drawn_with"]["opencv"] == cv2.__version__
    # the fingerprint is of the videos themselves: same bytes, same hash; one changed byte, another
    first = set_fingerprint(d)
    assert len(first) == 64 and set_fingerprint(d) == first
    video = d / sorted(meta["videos"])[-1]
    data = bytearray(video.read_bytes())
    data[-1] ^= 1
    video.write_bytes(bytes(data))
    assert set_fingerprint(d) != first
    assert ensure_synth_dataset(d, 5, size=64, frames=16, style="bold", progress=False)["reused"]
    assert not ensure_synth_dataset(d, 5, size=64, frames=16, style="natural", progress=False)["reused"]
    assert json.loads((d / "boxes.json").read_text())["style"] == "natural"
    assert not ensure_synth_dataset(d, 5, size=64, frames=20, style="natural", progress=False)["reused"]
    assert not ensure_synth_dataset(d, 5, seed=1, size=64, frames=20, style="natural", progress=False)["reused"]
    # a set made by an older generator (other bytes for the same seed) is made again, not reused
    meta = json.loads((d / "boxes.json").read_text())
    assert meta["generator_version"] == GENERATOR_VERSION
    del meta["generator_version"]
    (d / "boxes.json").write_text(json.dumps(meta))
    assert not ensure_synth_dataset(d, 5, seed=1, size=64, frames=20, style="natural", progress=False)["reused"]


def test_same_seed_generates_the_same_bytes(tmp_path):
    """A seed is a set: generated twice (in other directories, by two worker processes) the videos
    are the same bytes. With x264's macroblock-tree rate control about half of the clips came out
    as other bytes on every run, and every result trained on them moved with it."""
    from mgm.data.synth import make_synth_dataset, set_fingerprint

    for d in ("a", "b"):
        make_synth_dataset(tmp_path / d, videos=6, size=64, frames=24, seed=3, workers=2, progress=False,
                           style="actions")
    assert set_fingerprint(tmp_path / "a") == set_fingerprint(tmp_path / "b")


def test_actions_style_figures_carry_the_action(tmp_path):
    """The articulated set: 8 classes, boxes follow the figure, the limbs move more than the
    body (several parts at different speeds), sit_down is stand_up reversed in time."""
    from mgm.data.synth import make_synth_dataset, style_classes
    from mgm.data.synth_figures import CLASSES, figure_spec, render_figure

    rep = make_synth_dataset(tmp_path / "a", videos=16, size=64, frames=24, seed=0, style="actions", progress=False)
    assert rep["classes"] == 8 and style_classes("actions") == CLASSES
    meta = json.loads((tmp_path / "a" / "boxes.json").read_text())
    assert meta["classes"] == list(CLASSES) and len(meta["videos"]) == 16
    assert len((tmp_path / "a" / "all.txt").read_text().split()) == 32
    for rel, v in meta["videos"].items():
        b = np.asarray(v["boxes"])
        assert b.shape == (24, 4) and np.all(b[:, 2] > b[:, 0] + 5) and np.all(b[:, 3] > b[:, 1] + 10)
        assert CLASSES[v["label"]] == v["class"]
    walk = figure_spec(CLASSES.index("walk_right"), 64, 24, np.random.default_rng(0))
    frames, boxes = render_figure(walk, 64, 24)
    assert frames.shape == (24, 64, 64, 3) and boxes[-1, 0] > boxes[0, 0] + 4      # moved right
    sit = figure_spec(CLASSES.index("sit_down"), 64, 24, np.random.default_rng(1))
    stand = dict(sit, **{"class": "stand_up"})
    fs, bs = render_figure(sit, 64, 24)
    ft, bt = render_figure(stand, 64, 24)
    assert bs[-1, 1] > bs[0, 1] + 3 and np.allclose(bs[::-1, 1], bt[:, 1], atol=1.5)
    wave = figure_spec(CLASSES.index("wave"), 64, 24, np.random.default_rng(2))
    fw, bw = render_figure(wave, 64, 24)
    moving = np.abs(np.diff(fw.astype(np.float32), axis=0)).mean(-1).mean(0)   # (H, W)
    ys, xs = np.nonzero(moving > 4)
    assert len(ys) > 0 and ys.mean() < bw[:, 1].mean() + 0.4 * (bw[:, 3] - bw[:, 1]).mean()  # the arm, up high
