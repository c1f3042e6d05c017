"""The data-efficiency protocol end to end at toy size: every run, resume, tables, plot."""
from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from mgm.experiments.progress import Progress
from mgm.experiments.runner import run_study
from mgm.experiments.study import Study, arms_for, clips_to_generate, draw_seed, eval_args, plan, run_dir, task_key
from mgm.experiments.tables import (format_paired, format_table, mean_std, ordering, paired_differences, pooled_std,
                                    reference_arm, seeds_to_separate, summarize, t975, std_from_test_set,
                                    write_outputs)
from mgm.provenance import installation


def test_study_runs_every_arm_and_resumes(tmp_path):
    s = Study(out_dir=str(tmp_path / "st"), arms=arms_for("study", strategies=["tube", "mgm"]), seeds=(0,),
              labels=(1,), unlabeled=16, pool=2, test=16, pretrain_steps=2, finetune_steps=2, probe_epochs=1,
              jobs=2)
    done = []
    rows = run_study(s, progress=lambda i, n, label, reused: done.append((i, n, label)))
    kinds = sorted((r["kind"], r["arm"]) for r in rows)
    assert kinds == sorted([("pretrain", "tube"), ("pretrain", "mgm")]
                           + [(k, a) for a in ("scratch", "tube", "mgm") for k in ("finetune", "probe")])
    assert done[-1][:2] == (8, 8)
    for r in rows:
        if r["kind"] == "pretrain":
            assert r["pretrain_steps"] == 2 and math.isfinite(r["pretrain_loss_last"])
        elif r["kind"] == "finetune":
            assert 0 <= r["finetune_top1"] <= 100
        else:
            assert 0 <= r["probe_top1"] <= 100 and 0 <= r["knn_top1"] <= 100
    # same seed, same initial weights and clips: the two pretrainings differ only by their masks
    first = {r["arm"]: r["pretrain_loss_first"] for r in rows if r["kind"] == "pretrain"}
    assert first["tube"] != first["mgm"]
    # the K=1 subset: one clip per class, absolute paths
    lst = (tmp_path / "st" / "lists" / "labelled_k1_s0.txt").read_text().splitlines()
    assert sorted(int(l.split()[1]) for l in lst) == list(range(8)) and lst[0].startswith("/")

    again = run_study(s)                                   # resumes: nothing new runs
    assert len((tmp_path / "st" / "results.jsonl").read_text().splitlines()) == 8
    assert sorted(r["finetune_top1"] for r in again if "finetune_top1" in r) == \
        sorted(r["finetune_top1"] for r in rows if "finetune_top1" in r)
    summary = write_outputs(s, rows, title="toy")
    assert set(summary) == {"scratch", "tube", "mgm"} and summary["mgm"][1]["finetune_top1"]["seeds"] == [0]
    table = (tmp_path / "st" / "table_study.md").read_text()
    assert "| mgm |" in table and "fine-tune, K = 1" in table and "k-NN" in table and "opencv " in table
    # each arm's mask and ratio: 'tube' in a study is VideoMAE's 0.9, in 'mgm ablate masks' it is tube@0.75
    assert "Arms: scratch, no pretraining; tube, tube masks at ratio 0.9; mgm, mgm masks at ratio 0.75." in table
    here = installation()
    assert all(r["installation"] == here for r in rows)
    assert f"Made with mgm {here['mgm']}, code {here['code']}" in table and "more than one" not in table

    # runs made with another installation (or before mgm recorded it) are reused, said before
    # anything runs, and the table says its rows are mixed
    results = tmp_path / "st" / "results.jsonl"
    original = results.read_text()
    recs = [json.loads(line) for line in original.splitlines()]
    for rec in recs[:2]:
        rec["installation"] = {**rec["installation"], "torch_cpu": "OTHER-ISA", "cpu": "Other CPU"}  # differs on every machine
    del recs[2]["installation"]
    results.write_text("".join(json.dumps(r) + "\n" for r in recs))
    notices = []
    mixed = run_study(s, notice=notices.append)
    assert len(notices) == 1 and notices[0].startswith("reusing 3 runs made with another installation")
    assert "1 recorded none; made with torch_cpu OTHER-ISA, cpu Other CPU" in notices[0]
    write_outputs(s, mixed, title="toy")
    table = (tmp_path / "st" / "table_study.md").read_text()
    assert "(5 runs); 2 runs with torch_cpu OTHER-ISA, cpu Other CPU; 1 run recorded no installation" in table
    assert "more than one installation" in table
    results.write_text(original)
    notices.clear()
    run_study(s, notice=notices.append)
    assert notices == []
    fingerprints = json.loads((tmp_path / "st" / "summary_study.json").read_text())["data_sha256"]
    assert set(fingerprints) == {"unlabeled", "labelled", "test"} and f"test {fingerprints['test'][:12]}" in table
    assert "| mgm minus arm, fine-tune |" in table and "| tube | " in table.split("mgm minus arm")[1]
    assert (tmp_path / "st" / "study.png").stat().st_size > 1000

    # other pretraining steps in the same OUT: new pretrainings in their own directories (the first
    # ones' weights stay as their records say), scratch's evaluations reused
    weights = {r["arm"]: r["weights"] for r in rows if r["kind"] == "pretrain"}
    before = {a: open(w, "rb").read() for a, w in weights.items()}
    s.pretrain_steps = 3
    longer = run_study(s)
    assert {(r["kind"], r["arm"]) for r in longer if r.get("reused")} == {("finetune", "scratch"), ("probe", "scratch")}
    assert all(r["weights"] not in weights.values() for r in longer if r["kind"] == "pretrain")
    assert {a: open(w, "rb").read() for a, w in weights.items()} == before


def test_probe_settings_rerun_no_fine_tune_and_older_keys_are_taken_over(tmp_path):
    s = Study(out_dir=str(tmp_path / "st"), arms=arms_for("study", strategies=["tube"]), seeds=(0,), labels=(1,),
              unlabeled=16, pool=1, test=8, pretrain_steps=2, finetune_steps=2, probe_epochs=1, jobs=2)
    assert clips_to_generate(s) == 16 + 8 + 8
    first = run_study(s)
    assert clips_to_generate(s) == 0
    score = {(r["kind"], r["arm"]): r.get("finetune_top1", r.get("probe_top1")) for r in first}
    s.probe_epochs = 2                              # the probes run again, the fine-tunes and pretraining do not
    bar = Progress.for_study(s, "t", enabled=False)  # the bar counts this call's work: the two probes only
    try:
        # the sets are there: their generation is no work of this call either (it made a study that
        # reused them look minutes from its end)
        assert bar.runs == {} and bar.data_seconds == 0 and bar.bar.total == round(2 * bar.per_run)
    finally:
        bar.close()
    rows = run_study(s)
    assert {(r["kind"], r["arm"]) for r in rows if not r.get("reused")} == {("probe", "scratch"), ("probe", "tube")}
    s.finetune_steps = 3                            # and the other way round
    rows = run_study(s)
    assert {(r["kind"], r["arm"]) for r in rows if not r.get("reused")} == {("finetune", "scratch"),
                                                                            ("finetune", "tube")}

    # an OUT whose evaluations carry the keys of earlier code (both evaluations' settings in each)
    s.probe_epochs, s.finetune_steps = 1, 2
    results = tmp_path / "st" / "results.jsonl"
    recs = [json.loads(line) for line in results.read_text().splitlines()]
    _, evals = plan(s)
    legacy = {task_key(s, kind, args): (kind, args) for kind, args in evals}
    for rec in recs:
        if rec["key"] in legacy:
            kind, args = legacy[rec["key"]]
            rec["key"] = task_key(s, kind, args, legacy=True)
            run_dir(s, kind, args).rename(run_dir(s, kind, args, key=rec["key"]))
    results.write_text("".join(json.dumps(r) + "\n" for r in recs))
    notices = []
    rows = run_study(s, notice=notices.append)
    assert all(r.get("reused") for r in rows) and any(n.startswith("4 evaluations recorded under the keys") for n in notices)
    assert {(r["kind"], r["arm"]): r.get("finetune_top1", r.get("probe_top1")) for r in rows} == score
    assert all(run_dir(s, kind, args).is_dir() for kind, args in evals)
    notices = []
    assert run_study(s, notice=notices.append) and notices == []       # taken over once, for good

    # a record cut short by a kill is skipped and said; its run is done again on a line of its own
    needed = task_key(s, "finetune", eval_args("scratch", 1, 0))
    lines = results.read_text().splitlines()
    cut = next(line for line in lines if json.loads(line)["key"] == needed)
    results.write_text("".join(f"{line}\n" for line in lines if line != cut) + cut[:20])
    notices = []
    rows = run_study(s, notice=notices.append)
    assert len(notices) == 1 and "not a result record" in notices[0]
    assert sum(not r.get("reused") for r in rows) == 1
    assert json.loads(results.read_text().splitlines()[-1])["key"] == needed


def test_draws_add_fine_tunes_over_the_same_runs(tmp_path):
    """--draws D: draw 0 is the plain run (reused), draw 1 its own K-shot subset and fine-tune; the
    seed's number is the mean of its draws."""
    s = Study(out_dir=str(tmp_path / "st"), arms=arms_for("study", strategies=[]), seeds=(1,), labels=(1,),
              unlabeled=16, pool=2, test=16, pretrain_steps=2, finetune_steps=2, probe_epochs=1, jobs=2)
    plain = run_study(s)
    s.draws = 2
    rows = run_study(s)
    assert len((tmp_path / "st" / "results.jsonl").read_text().splitlines()) == 4      # 2 reused + 2 new
    pre, evals = plan(s)                # what run_study ran and the demo's progress bar counts
    assert pre == [] and len(evals) == len(rows) == 4
    s2 = dataclasses.replace(s, arms=arms_for("study", strategies=["mgm"]), pretrain_seeds=(0,), seeds=(1, 2))
    assert [a for _, a in plan(s2)[0]] == [{"arm": "mgm", "seed": 0}] and len(plan(s2)[1]) == 2 * 1 * 2 * 2 * 2
    ft = sorted((r for r in rows if r["kind"] == "finetune"), key=lambda r: r.get("draw", 0))
    assert [r.get("draw", 0) for r in ft] == [0, 1] and ft[0].get("reused")
    assert ft[0]["finetune_top1"] == next(r["finetune_top1"] for r in plain if r["kind"] == "finetune")
    lists = tmp_path / "st" / "lists"
    assert draw_seed(1, 1) == 1001 and draw_seed(1, 0) == 1
    assert (lists / "labelled_k1_s1001.txt").read_text() != (lists / "labelled_k1_s1.txt").read_text()
    d1 = run_dir(s, "finetune", eval_args("scratch", 1, 1, draw=1))
    assert d1.name.startswith("finetune_k1_s1_d1-") and d1.with_name(d1.name + ".log").exists()
    cell = write_outputs(s, rows)["scratch"][1]["finetune_top1"]
    assert cell["seeds"] == [1] and cell["draws"] == [[round(r["finetune_top1"], 2) for r in ft]]
    assert cell["mean"] == pytest.approx(sum(r["finetune_top1"] for r in ft) / 2)
    table = (tmp_path / "st" / "table_study.md").read_text()
    assert "mean of 2 labelled draws" in table and "whole labelled pool" not in table
    # K equal to the pool: the draws cannot differ in their clips, and the table says so
    write_outputs(dataclasses.replace(s, pool=1), rows)
    assert "at K = 1 every draw holds the whole labelled pool (1 clips per class)" in \
        (tmp_path / "st" / "table_study.md").read_text()
    # the test set's part of the spread, read from the two runs' predictions
    assert cell["test_std"] == std_from_test_set(s, rows, "scratch", 1) and cell["test_std"] >= 0
    assert f"test set ± {cell['test_std']:.1f})" in table


def test_a_rerun_continues_every_run_from_its_checkpoint(tmp_path):
    """Every study run resumes (run.resume=auto): with the results file lost, a rerun takes each run
    up from its last checkpoint (here: their last steps) and records the same numbers, the
    pretraining's loss summary included (the checkpoint carries the loss history)."""
    s = Study(out_dir=str(tmp_path / "st"), arms=arms_for("study", strategies=["tube"], baseline=False), seeds=(0,),
              labels=(1,), unlabeled=16, pool=2, test=16, pretrain_steps=4, finetune_steps=2, probe_epochs=1, jobs=2)
    fields = ("kind", "pretrain_steps", "pretrain_loss_first", "pretrain_loss_last", "finetune_top1", "probe_top1",
              "knn_top1")
    first = sorted(tuple(r.get(f) for f in fields) for r in run_study(s))
    (tmp_path / "st" / "results.jsonl").unlink()
    again = sorted(tuple(r.get(f) for f in fields) for r in run_study(s))
    assert again == first and all(r[2] is not None for r in again if r[0] == "pretrain")
    for kind, args in plan(s)[0] + plan(s)[1]:
        run = run_dir(s, kind, args)
        msgs = [json.loads(l)["text"] for l in (run / "log.jsonl").read_text().splitlines() if '"message"' in l]
        assert any(m.startswith("resumed from ") for m in msgs), (kind, msgs)


def test_arms_and_tables():
    assert list(arms_for("masks")) == ["scratch", "random@0.75", "tube@0.75", "block", "smm", "smm-sparse", "mgm",
                                       "mgm-sparse"]
    study = arms_for("study")
    assert study["tube"] == ["mask.strategy=tube", "mask.ratio=0.9"] and study["mgm"] == ["mask.strategy=mgm", "mask.ratio=0.75"]
    assert arms_for("study", ratio=0.75)["tube@0.75"] == arms_for("masks")["tube@0.75"]
    assert arms_for("ratio", ratios=[0.5, 0.9])["mgm@0.9"] == ["mask.strategy=mgm", "mask.ratio=0.9"]
    # the same runs as the other studies' arms (reused, not run again)
    assert arms_for("ratio", ratios=[0.75])["mgm@0.75"] == arms_for("masks")["mgm"] == study["mgm"]
    assert arms_for("masks", ratio=0.9)["tube"] == study["tube"]
    assert arms_for("motion")["mgm"] == arms_for("masks")["mgm"]
    assert arms_for("motion")["mgm:flow"] == ["mask.strategy=mgm", "mask.ratio=0.75", "data.motion=flow"]
    # `mgm study --arms scratch`: scratch alone, not the default strategies
    assert arms_for("study", strategies=[]) == {"scratch": []}
    with pytest.raises(ValueError):
        arms_for("nope")
    assert mean_std([10.0, 20.0, 30.0]) == (20.0, 10.0) and mean_std([5.0]) == (5.0, 0.0)
    rows = [{"kind": "finetune", "arm": a, "k": 4, "seed": s, "finetune_top1": v}
            for a, vals in (("scratch", [40, 50]), ("mgm", [70, 80])) for s, v in enumerate(vals)]
    summ = summarize(rows, ["scratch", "mgm"])
    assert summ["mgm"][4]["finetune_top1"]["mean"] == 75.0
    assert "| mgm | 75.0 ± 7.1 (n=2) |" in format_table(summ)
    # two draws per seed: a seed counts once, with its draws' mean; the pooled spread between draws
    drawn_rows = [{**r, "draw": d, "finetune_top1": r["finetune_top1"] + (4 if d else -4)}
                  for r in rows for d in (0, 1)]
    drawn = summarize(drawn_rows, ["scratch", "mgm"])["mgm"][4]["finetune_top1"]
    assert drawn["values"] == [70.0, 80.0] and drawn["std"] == mean_std([70, 80])[1]
    assert drawn["draws"] == [[66.0, 74.0], [76.0, 84.0]] and drawn["draw_std"] == pytest.approx(math.sqrt(32))
    assert pooled_std([[1.0, 3.0], [5.0]]) == pytest.approx(math.sqrt(2)) and math.isnan(pooled_std([[1.0]]))
    # the seeds' spread net of the draws': std² = seed_std² + draw_std² / D  (50 = 34 + 32 / 2)
    assert drawn["seed_std"] == pytest.approx(math.sqrt(34))
    assert "(n=2 × 2 draws; between draws ± 5.7, seeds beyond the draws ± 5.8)" in format_table(
        summarize(drawn_rows, ["mgm"]))
    # draws that explain the whole spread leave nothing to the seeds (never a negative variance)
    wide = [{**r, "finetune_top1": r["finetune_top1"] + (20 if r["draw"] else -20)} for r in drawn_rows]
    assert summarize(wide, ["mgm"])["mgm"][4]["finetune_top1"]["seed_std"] == 0.0


def test_paired_differences_are_per_seed_on_shared_seeds():
    rows = [{"kind": "finetune", "arm": a, "k": 4, "seed": s, "finetune_top1": v}
            for a, vals in (("scratch", {0: 56.7, 1: 37.3, 2: 64.4}), ("random@0.75", {0: 80.0, 2: 72.9}),
                            ("mgm", {0: 83.8, 1: 73.1, 2: 73.2}))
            for s, v in vals.items()]
    summ = summarize(rows, ["scratch", "random@0.75", "mgm"])
    assert reference_arm(summ) == "mgm" and reference_arm(["scratch", "mgm@0.5", "mgm@0.75"]) == "mgm@0.75"
    assert reference_arm(["scratch", "tube"]) is None
    paired = paired_differences(summ, "mgm")
    assert set(paired) == {"scratch", "random@0.75"}
    assert paired["scratch"][4]["diffs"] == [27.1, 35.8, 8.8] and paired["scratch"][4]["above"] == 3
    # random lacks seed 1: only seeds 0 and 2 are paired
    r = paired["random@0.75"][4]
    assert r["seeds"] == [0, 2] and r["diffs"] == [3.8, 0.3] and r["above"] == 2
    assert abs(r["mean"] - 2.05) < 1e-9 and abs(r["std"] - mean_std([3.8, 0.3])[1]) < 1e-12
    # the standard error and Student's 95 % interval of the mean difference (t with 1 dof: 12.706)
    assert r["se"] == pytest.approx(r["std"] / math.sqrt(2))
    assert r["ci95"] == pytest.approx((2.05 - 12.706 * r["se"], 2.05 + 12.706 * r["se"]))
    assert r["order"] == "not separated" and paired["scratch"][4]["order"] == "not separated"
    table = format_paired(summ, "mgm")
    assert ("| random@0.75 | +2.0 ± 2.5, 95 % CI -20.2 to +24.3: not separated (≈ 9 seeds would separate it at "
            "this mean and spread); above on 2/2 (+3.8, +0.3) |") in table
    assert ("| scratch | +23.9 ± 13.8, 95 % CI -10.3 to +58.1: not separated (≈ 4 seeds would separate it at this "
            "mean and spread); every seed above every seed of scratch (73.1 > 64.4); above on 3/3 "
            "(+27.1, +35.8, +8.8) |") in table
    # unpaired: mgm's lowest seed (73.1) is above scratch's highest (64.4), not above random's (80.0 on seed 0)
    assert paired["scratch"][4]["ranges"] == "above" and r["ranges"] == "overlap"
    assert paired_differences(summ, "scratch")["mgm"][4]["ranges"] == "below"
    # 4 seeds: t(3) · 13.8 / √4 = 22.0 < 23.9, where 3 seeds give 34.3
    assert paired["scratch"][4]["seeds_to_separate"] == 4
    # five seeds that agree are ordered; one seed has no interval
    five = [{"kind": "finetune", "arm": a, "k": 4, "seed": s, "finetune_top1": 70.0 + s + (3 + s % 2 if a == "mgm" else 0)}
            for a in ("random", "mgm") for s in range(5)]
    assert paired_differences(summarize(five, ["random", "mgm"]), "mgm")["random"][4]["order"] == "ahead"
    one = paired_differences(summarize([r for r in five if r["seed"] == 0], ["random", "mgm"]), "mgm")["random"][4]
    assert one["ci95"] is None and one["order"] == "one seed" and "CI" not in format_paired(
        summarize([r for r in five if r["seed"] == 0], ["random", "mgm"]), "mgm")
    assert ordering((-3.0, -0.5)) == "behind" and ordering((-0.1, 2.0)) == "not separated"
    # between rows of the t table the lower row (the wider interval)
    assert t975(4) == 2.776 and t975(35) == 2.042 and t975(1000) == 1.980
    # the eight-seed MGM − random of docs/results.md (−1.7 ± 5.8): 48 seeds; a mean of 0 never separates
    assert seeds_to_separate(-1.7, 5.8) == 48 and seeds_to_separate(0.0, 3.0) is None
    assert seeds_to_separate(1.0, 0.0) == 2 and seeds_to_separate(0.1, 9.0) is None


def test_test_set_part_of_the_spread_comes_from_the_runs_predictions(tmp_path):
    """Four runs (2 seeds x 2 draws) on 4 test clips: pairs disagree on 1, 1, 1, 2, 2, 2 clips, so
    d = 9 / 24 and a 2-draw seed mean moves by sqrt(d / (2 * 4 * 2)) with the test set."""
    s = Study(out_dir=str(tmp_path), arms={"mgm": ["mask.strategy=mgm"]}, seeds=(0, 1), labels=(4,), draws=2)
    correct = {(0, 0): [1, 1, 0, 0], (0, 1): [1, 0, 0, 0], (1, 0): [1, 1, 1, 0], (1, 1): [0, 1, 0, 0]}
    rows = []
    for (seed, draw), hits in correct.items():
        d = run_dir(s, "finetune", eval_args("mgm", 4, seed, draw))
        d.mkdir(parents=True)
        (d / "predictions.csv").write_text("index,path,label,correct\n" + "".join(
            f"{i},/t/{i}.mp4,0,{h}\n" for i, h in enumerate(hits)))
        rows.append({"kind": "finetune", "arm": "mgm", "k": 4, "seed": seed, "draw": draw, "finetune_top1": 50.0})
    assert std_from_test_set(s, rows, "mgm", 4) == pytest.approx(100 * math.sqrt(9 / 24 / 16))
    assert std_from_test_set(s, rows[:1], "mgm", 4) is None


def test_knn_votes_by_similarity():
    from mgm.engine.knn import knn_predict, knn_top1

    train = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    labels = torch.tensor([0, 0, 1, 1])
    test = torch.tensor([[1.0, 0.05], [0.05, 1.0], [2.0, 2.1]])
    assert knn_predict(train, labels, test, k=2).tolist() == [0, 1, 1]
    assert knn_top1(train, labels, test, torch.tensor([0, 1, 0]), k=2) == pytest.approx(200 / 3)


def test_runs_stop_with_a_checkpoint_when_the_study_process_is_killed(tmp_path):
    """SIGKILL (or a SIGTERM that reaches only it) gives the study's process no clean-up: its pool
    workers must stop by themselves, the running pretraining after a checkpoint, instead of
    writing on into a run directory that the restarted study continues."""
    script = tmp_path / "study.py"
    script.write_text(textwrap.dedent(f"""
        from mgm.experiments.runner import run_study
        from mgm.experiments.study import Study, arms_for
        if __name__ == "__main__":
            run_study(Study(out_dir={str(tmp_path / "st")!r}, arms=arms_for("study", strategies=["tube"], baseline=False),
                            seeds=(0,), labels=(1,), unlabeled=16, pool=1, test=8, pretrain_steps=100000,
                            finetune_steps=1, probe_epochs=1, jobs=1))
    """))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        logs = []
        for _ in range(600):                     # until the pretraining has logged a step
            logs = [p for p in (tmp_path / "st").glob("runs/tube/pretrain_s0-*/log.jsonl") if '"train"' in p.read_text()]
            if logs or proc.poll() is not None:
                break
            time.sleep(0.5)
        assert logs, "the pretraining never started"
        workers = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    finally:
        proc.kill()
        proc.wait()

    def alive(pid):
        try:
            return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
        except OSError:
            return False

    for _ in range(240):
        if not any(alive(p) for p in workers):
            break
        time.sleep(0.5)
    orphans = [p for p in workers if alive(p)]
    for p in orphans:                            # a failing run must not leave a 100000-step training behind
        os.kill(int(p), signal.SIGKILL)
    assert not orphans, "workers outlived the study's process"
    run = logs[0].parent
    assert list((run / "checkpoints").glob("step_*")), "stopped without a checkpoint"
    assert "the study's process ended: stopped after step" in run.with_name(run.name + ".log").read_text()


def test_study_command_says_each_run_and_the_time_left(tmp_path):
    argv = ["study", "--out", str(tmp_path / "st"), "--arms", "scratch", "tube", "--labels", "1", "--seeds", "0",
            "--unlabeled", "16", "--pool", "1", "--test", "8", "--pretrain-steps", "4", "--finetune-steps", "2",
            "--probe-epochs", "1"]
    r = subprocess.run([sys.executable, "-m", "mgm", *argv], capture_output=True, text=True, timeout=600,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    lines = [line for line in r.stderr.splitlines() if line.startswith("[mgm study ")]
    assert len(lines) == 5 and lines[-1].startswith("[mgm study 5/5, ") and all(" left] done: " in x for x in lines)
    assert "| tube | " in r.stdout and "[mgm study" not in r.stdout      # stdout: the table only
    # again: every run is reused, and said in one line, not a line per run
    r = subprocess.run([sys.executable, "-m", "mgm", *argv], capture_output=True, text=True, timeout=600,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    lines = [line for line in r.stderr.splitlines() if line.startswith("[mgm study")]
    assert lines == [f"[mgm study] 5 of 5 runs were finished by an earlier call: reused (their records: "
                     f"{tmp_path / 'st' / 'results.jsonl'})"], lines
