"""`mgm transfer` end to end on a generated set: a plan with a fine-tune, a linear-probe and a
domain-adaptation cell (source: 6 classes; target: 2 of them under other names), a few steps each;
the table, the CSV, the recorded commands, the skip on a rerun; plan errors before anything runs."""
import csv
import json

import pytest
import torch
import yaml
from engine_helpers import SMALL, make_synth, run_cli

from mgm.experiments.transfer import PAPER_PLAN, load_plan, row_label
from mgm.models import build_classifier, save_checkpoint

FAST = [*SMALL, "optim.epochs=1", "run.max_steps=2", "optim.batch_size=4", "data.test_clips=1",
        "data.test_crops=1", "run.eval_every=0", "finetune.repeated_aug=1"]


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    synth = make_synth(tmp_path_factory, videos=24)
    root = tmp_path_factory.mktemp("toy")
    names = (synth / "classes.txt").read_text().split()

    def write(folder, lines, classes):
        (root / folder).mkdir()
        (root / folder / "list.txt").write_text("".join(f"{synth / p} {y}\n" for p, y in lines))
        (root / folder / "classes.txt").write_text("".join(f"{c}\n" for c in classes))
        return root / folder / "list.txt"

    def rows(split, keep):
        out = []
        for line in (synth / f"{split}.txt").read_text().splitlines():
            p, y = line.split()
            if int(y) in keep:
                out.append((p, keep.index(int(y))))
        return out

    src = list(range(6))
    lists = {"src_train": write("src_train", rows("train", src), names[:6]),
             "src_test": write("src_test", rows("val", src), names[:6]),
             # the target: source classes 1 and 4 under other names, labelled 0 and 1
             "tgt_test": write("tgt_test", rows("val", [1, 4]), ["other_a", "other_b"])}
    (root / "map.csv").write_text(f"target,source\nother_a,{names[1]}\nother_b,{names[4]}\n")
    torch.manual_seed(0)
    init = save_checkpoint(build_classifier("vit_tiny", num_classes=0, num_frames=8, img_size=64),
                           root / "pre" / "pretrained.safetensors")
    plan = {"title": "toy transfer", "cells": [
        {"protocol": "finetune", "dataset": "toy", "config": "tiny_finetune",
         "set": {"data.train": str(lists["src_train"]), "data.test": str(lists["src_test"])}},
        {"protocol": "linprobe", "dataset": "toy", "config": "tiny_linprobe",
         "set": {"data.train": str(lists["src_train"]), "data.test": str(lists["src_test"])}},
        {"protocol": "da", "dataset": "toy6→target2", "config": "tiny_finetune",
         "set": [f"data.train={lists['src_train']}", f"data.test={lists['tgt_test']}",
                 f"data.class_map={root / 'map.csv'}"]}]}
    (root / "plan.yaml").write_text(yaml.safe_dump(plan, allow_unicode=True, sort_keys=False))
    return root, init


def test_transfer_plan_end_to_end(toy):
    root, init = toy
    out = root / "out"
    args = ["transfer", "--plan", str(root / "plan.yaml"), f"model.init={init}", *FAST, "--out", str(out)]
    r = run_cli(args, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = list(csv.DictReader(open(out / "transfer.csv")))
    assert [(x["label"], x["protocol"], x["dataset"]) for x in rows] == [
        ("pre", "finetune", "toy"), ("pre", "linprobe", "toy"), ("pre", "da", "toy6→target2")]
    ft, lp, da = rows
    n_src, n_tgt = (len((root / f / "list.txt").read_text().splitlines()) for f in ("src_test", "tgt_test"))
    assert int(ft["videos"]) == int(lp["videos"]) == n_src and int(da["videos"]) == n_tgt == 2
    assert 0 <= float(da["top1"]) <= float(da["top1_target_classes"]) <= 100
    assert ft["top1_target_classes"] == "" and da["predicted_outside_target"] != ""
    # the commands that made the cells, runnable as they are
    assert ft["commands"].startswith("mgm finetune --config tiny_finetune data.train=")
    assert lp["commands"].count(" && ") == 1 and "mgm eval --config tiny_linprobe" in lp["commands"]
    assert "linprobe.safetensors" in lp["commands"].split(" && ")[1]
    cell = json.loads(next((out / "cells").glob("pre__da__*/transfer_cell.json")).read_text())
    assert cell["metrics"]["class_map"].endswith("map.csv") and cell["metrics"]["target_classes"] == 2
    md = (out / "transfer.md").read_text()
    assert md.startswith("# toy transfer") and "## Fine-tune" in md and "## Linear probe" in md
    assert "| pre | " in md and f"{float(da['top1']):.1f} ({float(da['top1_target_classes']):.1f})" in md
    assert "`mgm finetune --config tiny_finetune" in md
    # rerun: every cell finished with the same command is kept, nothing trains
    again = run_cli(args, timeout=300)
    assert again.returncode == 0 and again.stdout.count(": kept (finished before") == 3, again.stdout


def test_one_cell_from_a_preset_and_plan_errors(toy, tmp_path):
    root, init = toy
    lists = [f"data.train={root / 'src_train' / 'list.txt'}", f"data.test={root / 'src_test' / 'list.txt'}"]
    r = run_cli(["transfer", "--config", "tiny_finetune", f"model.init={init}", *lists, *FAST,
                 "--out", str(tmp_path / "one"), "--label", "mine", "--dry-run"])
    assert r.returncode == 0 and r.stdout.startswith(f"mgm finetune --config tiny_finetune model.init={init} data.train="), r.stderr
    assert f"run.out_dir={tmp_path / 'one' / 'cells' / 'mine__finetune__src_test'}" in r.stdout
    # the same cell with each engine run a subprocess (how --launcher 'torchrun ...' runs them)
    r = run_cli(["transfer", "--config", "tiny_finetune", f"model.init={init}", *lists, *FAST,
                 "--out", str(tmp_path / "one"), "--label", "mine", "--launcher", "python"])
    assert r.returncode == 0, r.stderr[-2000:]
    row = next(csv.DictReader(open(tmp_path / "one" / "transfer.csv")))
    assert row["commands"].startswith("python -m mgm finetune --config tiny_finetune") and row["dataset"] == "src_test"
    # a da cell without a class map, a typo in a key: refused before anything runs, one line each
    for extra, msg in ((["--protocol", "da"], "cell da/src_test: protocol da needs data.class_map"),
                       (["optim.epoch=1"], "unknown config key 'optim.epoch'")):
        r = run_cli(["transfer", "--config", "tiny_finetune", *lists, *extra, "--out", str(tmp_path / "x")])
        assert r.returncode == 2 and msg in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "x").exists()
    r = run_cli(["transfer", "--plan", "paper", f"model.init={init}"])
    assert r.returncode == 2 and "uses {data}: give --data DIR" in r.stderr


def test_paper_plan_and_labels():
    title, cells = load_plan("paper", "/lists")
    assert [(c.protocol, c.dataset, c.config) for c in cells][::3] == [
        ("finetune", "UCF101", "finetune_ucf101"), ("linprobe", "UCF101", "linprobe"), ("da", "UCF14→HMDB7", "da_ucf14_hmdb7")]
    assert len(cells) == len(PAPER_PLAN["cells"]) == 8
    assert cells[6].overrides == ["data.train=/lists/ucf14/train.txt", "data.test=/lists/hmdb7/test.txt"]
    assert row_label(["model.init=runs/k400_mgm/pretrained.safetensors"]) == "k400_mgm"
    assert row_label(["model.init=ckpts/videomae_k400.pth"]) == "videomae_k400" and row_label([]) == "scratch"
