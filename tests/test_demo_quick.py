"""`mgm demo --quick` end to end: report, figures (real PNGs of the expected size), finite metrics."""
from __future__ import annotations

import json
import math

import pytest


def test_demo_quick_end_to_end(tmp_path):
    from mgm.cli import main
    from mgm.masking import STRATEGIES
    from mgm.experiments import figures as F

    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    for name in ("report.md", "report.html", "metrics.json"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0
    m = json.loads((out / "metrics.json").read_text())
    for v in (m["linprobe"]["top1"], m["linprobe"]["top5"], m["linprobe"]["random_init_top1"],
              m["pretrain"]["first_loss"], m["pretrain"]["final_loss"], m["wall_seconds"]):
        assert math.isfinite(v)
    assert 0 <= m["linprobe"]["top1"] <= 100
    assert m["pretrain"]["steps"] >= 1

    figs = m["figures"]
    assert set(figs) == {"loss", "masks", "motion", "reconstruction", "attention"}
    for key, f in figs.items():
        w, h = F.png_size(out / f["path"])          # raises if not a PNG
        assert [w, h] == f["size"], key
        assert w >= 300 and h >= 150, key
    # sizes that follow from the layout: matplotlib figsize x dpi; masks: one row per strategy
    # (+ motion row) and one column per temporal index of 96 px tiles with 2 px gaps
    assert figs["loss"]["size"] == [640, 320]
    assert figs["masks"]["size"] == [8 * 98, (len(STRATEGIES) + 1) * 98]
    assert figs["reconstruction"]["size"][0] == 170 + 8 * 82
    assert figs["attention"]["size"] == [170 + 8 * 82, 3 * 82]
    assert figs["motion"]["source"] == "codec"

    md = (out / "report.md").read_text()
    html = (out / "report.html").read_text()
    for f in figs.values():
        assert f["path"] in md
    assert html.count("data:image/png;base64,") == len(figs)     # self-contained
    assert "no ground-truth statistics" in md    # default pixel targets: the figure uses no target stats


def test_png_size_rejects_non_png(tmp_path):
    from mgm.experiments.figures import png_size

    p = tmp_path / "x.png"
    p.write_bytes(b"not a png at all, really not")
    with pytest.raises(ValueError):
        png_size(p)
