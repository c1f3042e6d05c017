"""`mgm motion` and `mgm bench motion`."""
from __future__ import annotations

import json

import numpy as np

from mgm.cli import main


def test_motion_synthetic_json(capsys):
    assert main(["motion", "--synthetic", "--json", "--frames", "6", "--stride", "3", "--seed", "0"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["codec"] == "h264" and s["motion_source"] == "codec"
    assert s["width"] == s["height"] == 224 and s["grid"] == [14, 14]
    assert len(s["sampled"]) == 6 and s["max_magnitude"] > 1.0


def test_motion_summary_save_plot(synthetic_video_path, tmp_path, capsys):
    npz, png = tmp_path / "m.npz", tmp_path / "m.png"
    assert main(["motion", synthetic_video_path, "--frames", "4", "--stride", "2", "--start", "5",
                 "--save", str(npz), "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert "h264" in out and "128x96" in out and "codec" in out
    d = np.load(npz)
    assert d["frames"].shape == (4, 96, 128, 3) and d["motion"].shape == (4, 6, 8, 2)
    assert list(d["indices"]) == [5, 7, 9, 11]
    assert png.stat().st_size > 1000


def test_motion_bad_file_is_a_clean_error(tmp_path, capsys):
    p = tmp_path / "nope.mp4"
    assert main(["motion", str(p)]) == 2
    err = capsys.readouterr().err
    assert str(p) in err and "Traceback" not in err


def test_bench_motion_json(synthetic_video_path, capsys):
    assert main(["bench", "motion", synthetic_video_path, "--repeats", "1", "--frames", "4",
                 "--stride", "2", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)["results"][0]
    for k in ("a_ms_cpu", "b_ms_cpu", "c_ms_cpu", "b_over_a_cpu", "c_over_b_cpu", "b_over_a_wall"):
        assert r[k] is not None and r[k] > 0, k


def test_bench_motion_against_other_decoders(synthetic_video_path, capsys):
    """Peers run on the same indices when importable; the others are listed as skipped."""
    import importlib.util

    assert main(["bench", "motion", synthetic_video_path, "--repeats", "1", "--frames", "4",
                 "--stride", "2", "--against", "decord,nosuch", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert "nosuch" in out["skipped"]
    r = out["results"][0]
    if importlib.util.find_spec("decord") is None:
        assert "decord" in out["skipped"] and "decord_ms_cpu" not in r
    else:
        assert out["against"] == ["decord"]
        assert r["decord_frames_identical"] is True
        assert r["decord_ms_cpu"] > 0 and r["b_over_decord_cpu"] > 0 and r["a_over_decord_cpu"] > 0
    assert main(["bench", "motion", synthetic_video_path, "--repeats", "1", "--frames", "4",
                 "--against", "none", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["against"] == [] and not any("decord" in k for k in out["results"][0])


def test_cli_modules_import_light():
    import subprocess
    import sys

    code = ("import sys, mgm.cli.motion, mgm.video.bench; "
            "bad = [m for m in ('av', 'cv2', 'torch') if m in sys.modules]; print(bad); sys.exit(bool(bad))")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
