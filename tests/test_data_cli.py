"""`mgm data check|transcode|synth` and `mgm bench loader`, in process."""
import json

import numpy as np
import pytest

from data_fixtures import broken_files, odd_videos
from mgm.cli import main


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "synth"
    assert main(["data", "synth", str(out), "--videos", "10", "--size", "64", "--frames", "20",
                 "--workers", "1", "--json"]) == 0
    return out


def test_synth_layout_and_boxes(synth):
    from mgm.data.annotations import load_annotations
    from mgm.data.synth import CLASSES, load_boxes

    train, val = load_annotations(synth / "train.txt"), load_annotations(synth / "val.txt")
    assert len(train) + len(val) == 10 and len(val) == 2 and train.classes == list(CLASSES)
    meta = load_boxes(synth / "boxes.json")
    assert meta["format"] == "xyxy" and meta["num_frames"] == 20
    v = meta["videos"]["videos/00000.mp4"]                     # class "left"
    b = v["boxes"]
    assert v["class"] == "left" and b.shape == (20, 4)
    assert np.all(b[:, 2] > b[:, 0]) and np.all(b[:, 3] > b[:, 1]) and b.max() <= 64
    cx = (b[:, 0] + b[:, 2]) / 2
    assert cx[-1] < cx[0] - 10                                  # moved left
    grow = meta["videos"]["videos/00004.mp4"]["boxes"]          # "towards": grows
    assert (grow[-1, 2] - grow[-1, 0]) > 1.5 * (grow[0, 2] - grow[0, 0])


def test_check_names_bad_files_and_writes_clean_list(synth, tmp_path, capsys):
    bad = broken_files(tmp_path / "bad", synth / "videos/00000.mp4")
    odd = odd_videos(tmp_path / "odd")
    bad["three_frames"] = odd["three_frames"]
    lst = tmp_path / "mixed.txt"
    good = [synth / f"videos/{i:05d}.mp4" for i in range(3)]
    lst.write_text("".join(f"{p} {i}\n" for i, p in enumerate(good + list(bad.values()))))
    capsys.readouterr()
    rc = main(["data", "check", str(lst), "--json", "--workers", "2", "--span", "31",
               "--write-clean", str(tmp_path / "clean.txt")])
    rep = json.loads(capsys.readouterr().out)
    assert rc == 1 and rep["total"] == 10 and rep["ok"] == 3
    reasons = {b["path"]: b["reason"] for b in rep["bad"]}
    assert set(reasons) == {str(p) for p in bad.values()}
    # each reason says what is wrong (not an exception's name)
    assert reasons[str(bad["missing"])] == "no such file"
    assert reasons[str(bad["empty"])].startswith("empty file")
    assert reasons[str(bad["three_frames"])] == "too short: 3 frames, clip needs 31 (--min-frames 16)"
    assert "no video stream" in reasons[str(bad["audio"])]
    for k in ("random", "text", "truncated"):
        assert reasons[str(bad[k])].startswith("not a readable video container"), reasons
    assert not any("TypeError" in r for r in reasons.values()), reasons
    assert rep["codecs"] == {"h264": 3} and rep["no_motion_vectors"] == 0
    assert rep["frames"]["min"] == 20 and rep["duration_s"]["max"] > 0
    assert {w["reason"] for w in rep["warnings"]} == {"short: 20 frames, clip needs 31 (the last frame repeats)"}
    clean = (tmp_path / "clean.txt").read_text().split("\n")
    assert [l.split()[0] for l in clean if l] == [str(p.resolve()) for p in good]
    rc = main(["data", "check", str(tmp_path / "clean.txt"), "--workers", "1", "--deep"])
    out = capsys.readouterr().out
    assert rc == 0 and "3 videos, 3 ok, 0 bad" in out


def test_transcode_vp9_to_h264_resumable(tmp_path, capsys):
    from mgm.video import probe_video, read_clip
    from mgm.video.synthetic import make_synthetic_video

    src = tmp_path / "src"
    (src / "a").mkdir(parents=True)
    make_synthetic_video(src / "a" / "v1.webm", width=66, height=50, num_frames=12, codec="libvpx-vp9",
                         options={"deadline": "realtime", "cpu-used": "8"})
    (src / "list.csv").write_text("a/v1.webm,4\na/missing.webm,2\n")
    out = tmp_path / "out"
    capsys.readouterr()
    assert main(["data", "check", str(src / "list.csv"), "--json", "--workers", "1", "--min-frames", "4"]) == 1
    rep = json.loads(capsys.readouterr().out)
    assert rep["codecs"] == {"vp9": 1} and rep["no_motion_vectors"] == 1 and len(rep["bad"]) == 1
    assert any("no motion vectors" in w["reason"] for w in rep["warnings"])
    rc = main(["data", "transcode", str(src / "list.csv"), str(out), "--workers", "1", "--json"])
    rep = json.loads(capsys.readouterr().out)
    assert rc == 1 and rep["transcoded"] == 1 and len(rep["failed"]) == 1
    assert (out / "list.csv").read_text() == "a/v1.mp4,4\n"
    info = probe_video(out / "a" / "v1.mp4")
    assert info.codec == "h264" and info.has_motion_vectors and (info.width, info.height) == (66, 50)
    assert read_clip(out / "a" / "v1.mp4", num_frames=4, stride=2, start=0).motion_source == "codec"
    rc = main(["data", "transcode", str(src / "list.csv"), str(out), "--workers", "1", "--json"])
    rep = json.loads(capsys.readouterr().out)
    assert rep["skipped"] == 1 and rep["transcoded"] == 0                   # resumed


def test_bench_loader_json(synth, capsys):
    capsys.readouterr()
    rc = main(["bench", "loader", str(synth / "train.txt"), "--json", "--workers", "1", "--clips", "8",
               "--rounds", "1", "--batch-size", "4", "--size", "64", "--frames", "8", "--stride", "2"])
    rep = json.loads(capsys.readouterr().out)
    assert rc == 0 and set(rep["clips_per_s"]) == {"tube", "mgm"} and rep["ratio"]["mgm"] > 0
    assert all(r["clips"] == 8 and r["bad"] == 0 for r in rep["runs"])
