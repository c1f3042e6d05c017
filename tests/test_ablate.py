"""The ablation runner: 2 strategies x 1 seed x a few steps; table, plot, resume."""
from __future__ import annotations

import json
import math


def test_ablation_two_strategies_few_steps(tmp_path):
    from mgm.data.synth import make_synth_dataset
    from mgm.experiments.ablate import Recipe, format_table, run_ablation
    from mgm.experiments.figures import png_size

    data = tmp_path / "data"
    make_synth_dataset(data, videos=40, size=112, frames=32, workers=2, progress=False)
    out = tmp_path / "abl"
    base = Recipe(str(data), str(out), epochs=1, max_steps=2, probe_epochs=2, finetune_epochs=1,
                  finetune_max_steps=1, batch_size=4, workers=0)
    res = run_ablation("masks", str(data), str(out), variants=["tube", "mgm"], seeds=[0], base=base)
    assert [r["variant"] for r in res.rows] == ["tube", "mgm"]
    for r in res.rows:
        assert r["pretrain_steps"] == 2
        assert math.isfinite(r["final_loss"])
        assert 0 <= r["linprobe_top1"] <= 100 and 0 <= r["finetune_top1"] <= 100
    # same seed: same initial weights and clip order, so the first loss differs only by the mask
    assert res.rows[0]["loss_history"][0] != res.rows[1]["loss_history"][0]
    table = format_table(res)
    assert "| tube | 1 |" in table and "| mgm | 1 |" in table and "±" in table
    assert (out / "table_masks.md").read_text().strip() == table
    w, h = png_size(out / "ablate_masks.png")
    assert (w, h) == (700, 360)
    lines = (out / "results.jsonl").read_text().splitlines()
    assert len(lines) == 2

    # a second call with the same settings reuses the results (no new lines, same numbers)
    res2 = run_ablation("masks", str(data), str(out), variants=["tube", "mgm"], seeds=[0], base=base)
    assert len((out / "results.jsonl").read_text().splitlines()) == 2
    assert [r["linprobe_top1"] for r in res2.rows] == [r["linprobe_top1"] for r in res.rows]
    summary = json.loads((out / "summary_masks.json").read_text())
    assert [s["variant"] for s in summary] == ["tube", "mgm"]

    # the ratio sweep's 0.75 point with mgm is the same experiment: reused, labelled as a ratio
    res3 = run_ablation("ratio", str(data), str(out), variants=[0.75], seeds=[0], base=base)
    assert len((out / "results.jsonl").read_text().splitlines()) == 2
    assert res3.rows[0]["variant"] == 0.75 and res3.rows[0]["kind"] == "ratio"
    assert res3.rows[0]["linprobe_top1"] == res.rows[1]["linprobe_top1"]
    assert png_size(out / "ablate_ratio.png") == (700, 360)


def test_summary_mean_std():
    from mgm.experiments.ablate import summarize

    rows = [{"variant": "a", "seed": s, "linprobe_top1": v, "final_loss": 1.0, "pretrain_seconds": 1.0,
             "seconds": 2.0} for s, v in enumerate([10.0, 20.0, 30.0])]
    s = summarize(rows)[0]
    assert s["linprobe_top1"] == (20.0, 10.0)
    assert s["seeds"] == [0, 1, 2]
