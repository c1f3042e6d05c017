"""`mgm masks` end to end on a generated H.264 clip, and MGM coverage on decoded motion."""
from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("av")
video = pytest.importorskip("mgm.video")
if not hasattr(video, "read_clip"):
    pytest.skip("mgm.video.read_clip not available yet", allow_module_level=True)

from mgm.masking import STRATEGIES, make_mask, motion_to_patch_magnitude  # noqa: E402


@pytest.fixture(scope="module")
def moving_clips(tmp_path_factory):
    """H.264 224² clips: a textured square moving across a textured background plus static
    textured distractors; returns [(path, truth)]."""
    from mgm.video.synthetic import SyntheticObject, make_synthetic_video

    d = tmp_path_factory.mktemp("masks")
    out = []
    for i, (start, vel) in enumerate([((40, 60), (2.5, 1.0)), ((180, 150), (-2.0, -1.5)), ((60, 170), (3.0, -1.0))]):
        p = d / f"clip{i}.mp4"
        truth = make_synthetic_video(p, 224, 224, 40, objects=[SyntheticObject(size=(44, 44), start=start,
                                                                                velocity=vel)],
                                     distractors=2, seed=10 + i)
        out.append((p, truth))
    return out


def test_mgm_covers_moving_object_on_decoded_clips(moving_clips):
    from mgm.video import read_clip

    grid = (8, 14, 14)
    hits = {s: [] for s in STRATEGIES}
    for path, truth in moving_clips:
        clip = read_clip(path, num_frames=16, stride=2, start=0, motion="codec", cell=16)
        assert clip.motion.shape == (16, 14, 14, 2)
        mag, val = motion_to_patch_magnitude(clip.motion, clip.motion_valid, grid, 2)
        centres = truth.centres[clip.indices][:, 0]
        for seed in range(4):
            for s in STRATEGIES:
                m = make_mask(s, grid=grid, ratio=0.5, magnitude=mag, magnitude_valid=val, seed=seed)
                for t in range(8):
                    cx, cy = centres[2 * t:2 * t + 2].mean(0)
                    hits[s].append(bool(m[t, int(cy // 16), int(cx // 16)]))
    cov = {s: float(np.mean(v)) for s, v in hits.items()}
    assert cov["mgm"] >= 0.9, cov
    assert cov["mgm"] >= cov["tube"] + 0.25 and cov["mgm"] >= cov["random"] + 0.25, cov


def test_cli_masks_all_png_and_npy(moving_clips, tmp_path, capsys):
    from mgm.cli import main

    path, _ = moving_clips[0]
    out, npy = tmp_path / "m.png", tmp_path / "m.npy"
    assert main(["masks", str(path), "--strategy", "all", "--start", "0", "--out", str(out),
                 "--save-npy", str(npy), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    arr = np.load(npy)
    assert arr.shape == (len(STRATEGIES), 8, 14, 14) and arr.dtype == bool
    assert (arr.sum((1, 2, 3)) == 8 * 147).all()
    assert [r["strategy"] for r in summary["strategies"]] == list(STRATEGIES)
    from PIL import Image

    w, h = Image.open(out).size
    assert h > len(STRATEGIES) * 100 and w > 8 * 100


def test_cli_masks_single_strategy_gif(moving_clips, tmp_path):
    from mgm.cli import main

    path, _ = moving_clips[1]
    npy = tmp_path / "mgm.npy"
    assert main(["masks", str(path), "--strategy", "mgm", "--frames", "8", "--size", "112", "--start", "0",
                 "--out", str(tmp_path / "m.gif"), "--save-npy", str(npy), "--tile", "64"]) == 0
    arr = np.load(npy)
    assert arr.shape == (4, 7, 7) and (arr.sum((1, 2)) == round(0.75 * 49)).all()
    assert (tmp_path / "m.gif").stat().st_size > 0


def test_cli_masks_errors(tmp_path, capsys):
    from mgm.cli import main

    assert main(["masks"]) == 2
    assert main(["masks", str(tmp_path / "missing.mp4")]) == 2
    assert "error" in capsys.readouterr().err


def test_bench_masks_json(capsys):
    from mgm.cli import main

    assert main(["bench", "masks", "--repeats", "2", "--batch", "4", "--grid", "4,7,7", "--device", "cpu",
                 "--step", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    for key in ("clip", "batched"):
        assert set(STRATEGIES) <= set(out["us_per_mask"][key]) and all(v > 0 for v in out["us_per_mask"][key].values())
    assert 0 < out["in_step"]["mask_pct_of_step"] < 100 and "cuda_equals_cpu" not in out


def test_cli_masks_without_motion_reports_fallback_and_writes_mp4(moving_clips, tmp_path, capsys):
    from mgm.cli import main

    path, _ = moving_clips[2]
    out = tmp_path / "m.mp4"
    assert main(["masks", str(path), "--motion", "none", "--strategy", "mgm", "--frames", "4", "--start", "0",
                 "--out", str(out), "--tile", "48", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["strategies"][0]["fallback"] == "smm"
    import av

    with av.open(str(out)) as c:
        assert sum(1 for _ in c.decode(video=0)) == 4
