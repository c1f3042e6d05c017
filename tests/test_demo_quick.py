"""`mgm demo --quick` end to end: report, figures (real PNGs of the expected size), metrics.json."""
from __future__ import annotations

import json
import math

import pytest


def test_demo_quick_end_to_end(tmp_path, capsys):
    from mgm.cli import main
    from mgm.experiments import figures as F
    from mgm.masking import STRATEGIES

    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    assert "mean ± std" in capsys.readouterr().out
    for name in ("report.md", "report.html", "metrics.json"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0
    m = json.loads((out / "metrics.json").read_text())
    assert set(m["finetune"]) == {"scratch", "tube", "mgm"} and m["labels_per_class"] == 2
    for arm, c in m["finetune"].items():
        assert 0 <= c["mean"] <= 100 and math.isfinite(c["std"]) and c["seeds"] == [0], arm
    assert m["chance"] == 12.5 and m["wall_s"] > 0 and set(m["pretrain"]) == {"tube", "mgm"}
    assert set(m["probe"]) == set(m["knn"]) == {"scratch", "tube", "mgm"}

    figs = m["figures"]
    assert set(figs) == {"study", "loss", "masks", "motion", "reconstruction", "attention"}
    for key, f in figs.items():
        w, h = F.png_size(out / f["path"])          # raises if not a PNG
        assert [w, h] == f["size"], key
        assert w >= 300 and h >= 150, key
    # masks: one row per strategy (+ motion row), one column per temporal index, 96 px tiles + 2 px
    # gaps, on the 8x8 patch grid of the tiny recipe
    assert figs["masks"]["grid"] == [4, 8, 8]
    assert figs["masks"]["size"] == [4 * 98, (len(STRATEGIES) + 1) * 98]
    assert figs["reconstruction"]["size"] == [170 + 4 * 82, 5 * 82]       # original + 2 rows per arm
    assert figs["attention"]["size"] == [170 + 4 * 82, 4 * 82]           # frames + 3 encoders
    assert figs["motion"]["source"] == "codec"
    assert sorted(figs["loss"]["runs"]) == ["mgm", "tube"]               # a curve per pretraining
    # the progress bar follows the logs the runs write
    from mgm.experiments.demo import demo_study
    from mgm.experiments.progress import run_logs
    logs = run_logs(demo_study(out, quick=True))
    assert len(logs) == 2 + 3 and all(p.exists() for p in logs)

    md = (out / "report.md").read_text()
    html = (out / "report.html").read_text()
    assert md.index("fine-tune top-1") < md.index("## ")                 # the table comes first
    assert "smoke test" in md.splitlines()[0]                         # said in the title too
    for f in figs.values():
        assert f["path"] in md
    assert html.count("data:image/png;base64,") == len(figs)     # self-contained
    # the text quotes the ratios the arms pretrained with, not constants
    assert m["mask_ratio"] == {"tube": 0.9, "mgm": 0.75} and "tube masks (ratio 0.9;" in md
    assert m["runs_reused"] == 0 and "reused" not in md
    assert [i["runs"] for i in m["installations"]] == [2 + 2 * 3]         # every run made here
    assert m["installations"][0]["installation"]["code"] == m["versions"]["code"] and "runs made with" not in md

    # a second call into the same directory reruns nothing and says so, instead of passing the
    # seconds of a call that only drew figures off as the demo's wall time
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    again = json.loads((out / "metrics.json").read_text())
    assert again["finetune"] == m["finetune"]
    n_runs = 2 + 2 * 3                  # tube, mgm pretrainings; fine-tune + probe per arm (1 seed)
    assert again["runs_reused"] == n_runs
    assert f"{n_runs} runs reused" in (out / "report.md").read_text()


def test_png_size_rejects_non_png(tmp_path):
    from mgm.experiments.figures import png_size

    p = tmp_path / "x.png"
    p.write_bytes(b"not a png at all, really not")
    with pytest.raises(ValueError):
        png_size(p)


def test_progress_counts_parallel_runs_in_wall_time(tmp_path):
    # two runs of 10 s of work each on 2 jobs take 10 s of wall time: both finished is 10, not 20
    from mgm.experiments.progress import Progress, clock

    logs = {tmp_path / f"run{i}.jsonl": (4, 10.0) for i in range(2)}
    bar = Progress(10.0, logs, enabled=False, jobs=2)
    try:
        assert bar.work() == 0.0
        (tmp_path / "run0.jsonl").write_text('{"step": 2}\n')
        assert bar.work() == 2.5
        for log in logs:
            log.write_text('{"step": 1}\n{"step": 4}\n')
        bar.stage("next", done_seconds=3.0)
        assert bar.work() == 13.0
        bar.t0 -= 26.0                  # 13 of 10 estimated seconds done in 26 s: nothing left
        assert bar.eta() == "0:26 elapsed, about 0:00 left"
        bar.bar.total = 39              # 13 of 39 in 26 s: 26 done, 52 left at that pace
        assert bar.eta() == "0:26 elapsed, about 0:52 left"
    finally:
        bar.close()
    assert (clock(75), clock(3700.4), clock(float("nan"))) == ("1:15", "1:01:40", "?")


def test_report_names_the_installations_of_reused_runs():
    from mgm.experiments.write import details

    here = {"mgm": "0.1.0", "code": "aaa", "torch_cpu": "AVX2"}
    one = dict(details({"installations": [{"installation": here, "runs": 8}]}))
    assert "runs made with" not in one
    mixed = dict(details({"installations": [{"installation": here, "runs": 6},
                                            {"installation": {**here, "code": "bbb"}, "runs": 2}]}))
    assert mixed["runs made with"].startswith("Made with mgm 0.1.0, code aaa, torch_cpu AVX2 (6 runs); 2 runs with code bbb")


def test_verdict_says_every_seed_above_scratch_only_when_the_seeds_do_not_overlap():
    from mgm.experiments.write import verdict

    def metrics(mgm):
        return {"finetune": {"scratch": {"mean": 14.3, "std": 1.8, "values": [12.5, 14.5, 16.0]},
                             "mgm": {"mean": sum(mgm) / 3, "std": 1.0, "values": mgm}}}

    assert "mgm-pretrained vs scratch: +14.9 points (every seed above every scratch seed)." in \
        verdict(metrics([44.5, 27.0, 16.1]))
    # one MGM seed level with the best scratch seed is not above it
    assert "(the seeds overlap)." in verdict(metrics([44.5, 27.0, 16.0]))
