"""End-to-end training on a small generated video set (CPU): single vs 2-process torchrun,
kill-and-resume equality, non-finite handling, fine-tune -> multi-view eval -> linear probe.

Clips are 8 x 64 x 64 and the model vit_tiny, so every run is a few seconds.
"""
import json
import os

import pytest
import torch

from engine_helpers import (SMALL, TABLE6_MACHINERY, data_args, losses, make_synth, run_cli, run_script,
                            run_signalled_after)
from mgm.config import load_config
from mgm.data.transforms import normalize
from mgm.engine.logging import read_log

@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return make_synth(tmp_path_factory)


# with the cyclic collector off, nothing frees a DDP wrapper but its run's own teardown
DDP_LEFT = """
import gc, sys
from torch.nn.parallel import DistributedDataParallel
from mgm.config import load_config
from mgm.engine.pretrain import run_pretrain
gc.disable()
run_pretrain(load_config("tiny", sys.argv[1:]))
print("DDP wrappers left:", sum(isinstance(o, DistributedDataParallel) for o in gc.get_objects()))
"""


def test_a_two_process_run_frees_its_ddp_wrapper_and_group_before_returning(synth, tmp_path):
    """The DDP wrapper holds the process group and sits in reference cycles: a run must free it
    before it returns, or the group is destroyed at interpreter shutdown, where gloo once aborted
    a finished rank (SIGABRT, "terminate called without an active exception")."""
    script = tmp_path / "ddp_left.py"
    script.write_text(DDP_LEFT)
    p = run_script(script, [*data_args(synth), *SMALL, "optim.batch_size=2", "run.max_steps=2",
                            f"run.out_dir={tmp_path / 'out'}"], nproc=2)
    assert p.returncode == 0, p.stderr[-3000:]
    assert p.stdout.count("DDP wrappers left: 0") == 2, p.stdout + p.stderr[-2000:]


def test_two_process_torchrun_matches_single_process(synth, tmp_path):
    common = ["pretrain", "--config", "tiny", *data_args(synth), *SMALL, "run.max_steps=3",
              "run.seed=1"]
    one = run_cli([*common, f"run.out_dir={tmp_path / 'one'}", "optim.batch_size=4"])
    assert one.returncode == 0, one.stderr[-3000:]
    two = run_cli([*common, f"run.out_dir={tmp_path / 'two'}", "optim.batch_size=2"], nproc=2)
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = losses(tmp_path / "one"), losses(tmp_path / "two")
    assert sorted(a) == sorted(b) == [1, 2, 3]
    for s in a:   # same global batch of the same clips and masks: the same curve
        assert b[s] == pytest.approx(a[s], rel=1e-4, abs=1e-5), (s, a, b)
    recs = read_log(tmp_path / "two" / "log.jsonl", "train")
    assert all(0.7 < r["masked_ratio"] < 0.8 for r in recs)
    assert "2 process(es)" in (tmp_path / "two" / "log.jsonl").read_text()
    # the weights of the 2-process run load as a model
    from mgm.models import load_checkpoint

    m = load_checkpoint(tmp_path / "two" / "pretrained.safetensors")
    assert m.spec.num_frames == 8


def test_kill_and_resume_gives_the_same_loss_curve(synth, tmp_path):
    """SIGKILL after step 3 (checkpoint at step 2), resume: steps 3..6 equal the uninterrupted
    run exactly. Fine-tuning, so drop path, mixup/cutmix, repeated augmentation, the sampler's
    mid-epoch position and the epoch boundary (4 steps/epoch) are all exercised."""
    common = ["finetune", "--config", "tiny_finetune", *data_args(synth), *SMALL, *TABLE6_MACHINERY,
              "optim.batch_size=4", "run.max_steps=6", "run.eval_every=0", "run.seed=3"]
    full = run_cli([*common, f"run.out_dir={tmp_path / 'full'}"])
    assert full.returncode == 0, full.stderr[-3000:]
    out = tmp_path / "killed"
    killed = run_signalled_after("finetune", "SIGKILL", 3, [*common[3:], f"run.out_dir={out}",
                                                            "run.ckpt_every_steps=2"], tmp_path)
    assert killed.returncode == -9, killed.stderr[-3000:]
    assert sorted(losses(out)) == [1, 2, 3]
    assert (out / "checkpoints" / "step_00000002").is_dir()
    resumed = run_cli([*common, f"run.out_dir={out}", "run.ckpt_every_steps=2", "--resume", "auto"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from" in resumed.stderr
    a, b = losses(tmp_path / "full"), losses(out)     # losses(): every step logged once
    assert sorted(a) == sorted(b) == [1, 2, 3, 4, 5, 6]
    assert [b[s] for s in range(1, 7)] == [a[s] for s in range(1, 7)]     # exact
    assert len(set(a.values())) > 1
    # step 3, redone after the resume, was dropped from the log; the resume point is marked
    marks = read_log(out / "log.jsonl", "resume")
    assert [(m["step"], m["dropped"]) for m in marks] == [(2, 1)]


def test_nonfinite_loss_is_skipped_then_stops_with_checkpoint_intact(synth, tmp_path):
    from mgm.engine.pretrain import run_pretrain
    from mgm.engine.trainer import TrainingStopped
    from mgm.models.vit import build_model

    class NaNAfter(torch.nn.Module):
        """Real pretrainer; the loss is NaN on the listed calls."""

        def __init__(self, inner, bad_calls):
            super().__init__()
            self.module = inner          # mgm.models.unwrap finds the real model here
            self.calls, self.bad = 0, set(bad_calls)

        def forward(self, video, mask):
            self.calls += 1
            loss, pred = self.module(video, mask)
            return (loss * float("nan") if self.calls in self.bad else loss), pred

    base = [*data_args(synth), *SMALL, "optim.batch_size=4", "run.ckpt_every_steps=1"]
    cfg = load_config("tiny", [*base, f"run.out_dir={tmp_path / 'a'}", "run.max_steps=4"])
    model = NaNAfter(build_model(cfg.model), {2})
    res = run_pretrain(cfg, model=model)
    assert res["step"] == 4 and res["bad_steps"] == 1
    assert [h["skipped"] for h in res["history"]] == [False, True, False, False]
    recs = read_log(tmp_path / "a" / "log.jsonl", "train")
    assert any(r.get("nonfinite") == 1 and r["step"] == 2 for r in recs)

    cfg = load_config("tiny", [*base, f"run.out_dir={tmp_path / 'b'}", "run.max_steps=8",
                               "run.max_bad_steps=2"])
    model = NaNAfter(build_model(cfg.model), {3, 4, 5, 6})
    with pytest.raises(TrainingStopped, match="non-finite") as e:
        run_pretrain(cfg, model=model)
    assert "step_00000002" in str(e.value)
    ckpts = sorted(p.name for p in (tmp_path / "b" / "checkpoints").iterdir())
    assert ckpts[-1] == "step_00000002"                  # nothing written after the bad steps
    from mgm.models import load_checkpoint

    m = load_checkpoint(tmp_path / "b" / "checkpoints" / "step_00000002")
    assert all(torch.isfinite(p).all() for p in m.parameters())


def test_a_checkpoint_of_another_size_is_used_and_said(synth, tmp_path, capsys):
    """A classifier from model.init takes the file's architecture; when the config describes
    another one (the vit_base preset given a ViT-S checkpoint), the run says so in one line, and
    says nothing when they agree."""
    from mgm.engine.finetune import run_finetune
    from mgm.models.checkpoint import load_checkpoint, save_checkpoint
    from mgm.models.vit import build_pretrainer

    ckpt = save_checkpoint(build_pretrainer("vit_tiny", depth=1, num_frames=8, img_size=64, patch=8,
                                            decoder_depth=1), tmp_path / "d1.safetensors")
    for depth, said in (("4", True), ("1", False)):
        cfg = load_config("tiny_finetune", [*data_args(synth), *SMALL, f"model.depth={depth}", f"model.init={ckpt}",
                                            "run.max_steps=1", "optim.batch_size=4", f"run.out_dir={tmp_path / depth}"])
        ft = run_finetune(cfg)
        err = capsys.readouterr().err
        assert ("depth 1 (config 4)" in err and "not the one model.* describe" in err) == said, err[-2000:]
        assert len(load_checkpoint(ft["weights"]).encoder.blocks) == 1


def test_finetune_eval_and_linprobe_end_to_end(synth, tmp_path):
    from mgm.engine.finetune import run_eval, run_finetune
    from mgm.engine.linprobe import run_linprobe
    from mgm.engine.pretrain import run_pretrain

    views = ["data.test_clips=2", "data.test_crops=2"]
    cfg = load_config("tiny", [*data_args(synth), *SMALL, f"run.out_dir={tmp_path / 'pre'}",
                               "run.max_steps=2", "optim.batch_size=4"])
    pre = run_pretrain(cfg)
    assert all(r["masked_ratio"] == 0.75 for r in read_log(tmp_path / "pre" / "log.jsonl", "train"))
    cfg = load_config("tiny_finetune", [*data_args(synth, val=True), *SMALL, *views,
                                        f"run.out_dir={tmp_path / 'ft'}", f"model.init={pre['weights']}",
                                        "optim.epochs=1", "optim.batch_size=8"])
    ft = run_finetune(cfg)
    assert ft["step"] == 4 and ft["test"]["videos"] == 8 and ft["test"]["views_per_video"] == 4
    rows = (tmp_path / "ft" / "predictions.csv").read_text().splitlines()
    assert rows[0].startswith("index,path,label,pred") and len(rows) == 9
    assert all(r.split(",")[-1] == "4" for r in rows[1:])          # 4 views merged per video
    val = [r for r in read_log(tmp_path / "ft" / "log.jsonl", "val")]
    assert val and "top1" in val[0]

    cfg = load_config("tiny_finetune", [*data_args(synth, val=True), *SMALL, *views,
                                        f"run.out_dir={tmp_path / 'ev'}", f"model.init={ft['weights']}"])
    ev = run_eval(cfg)
    assert ev["top1"] == ft["test"]["top1"] and ev["top5"] == ft["test"]["top5"]

    cfg = load_config("tiny_linprobe", [*data_args(synth, val=True), *SMALL,
                                        f"run.out_dir={tmp_path / 'lp'}", f"model.init={pre['weights']}",
                                        "optim.epochs=2", "optim.batch_size=8"])
    lp = run_linprobe(cfg)
    assert lp["step"] == 8 and (tmp_path / "lp" / "features_train.pt").exists()
    assert "top1" in lp["val"]
    # the saved linear-probe classifier (BatchNorm folded into the head) gives the probe's logits
    from mgm.data import build_dataset
    from mgm.models import load_checkpoint

    clf = load_checkpoint(lp["weights"])
    feats = torch.load(tmp_path / "lp" / "features_val.pt", weights_only=True)["feats"]
    ds = build_dataset(cfg, "val", task="linprobe")
    x = normalize(ds[0]["video"][None])
    with torch.no_grad():
        torch.testing.assert_close(clf.head(clf.forward_features(x)), clf.head(feats[:1]), atol=1e-4, rtol=1e-4)


def test_runs_leave_no_loader_workers_behind(synth, tmp_path):
    """Persistent DataLoader workers end with their run: several runs in one process (a notebook,
    `mgm transfer`, a study) must not pile up workers that are killed, with a traceback, at exit."""
    import multiprocessing

    from mgm.engine.finetune import run_finetune
    from mgm.engine.pretrain import run_pretrain

    workers = [a for a in SMALL if not a.startswith("data.num_workers")] + ["data.num_workers=1"]
    cfg = load_config("tiny", [*data_args(synth), *workers, f"run.out_dir={tmp_path / 'pre'}",
                               "run.max_steps=1", "optim.batch_size=2"])
    pre = run_pretrain(cfg)
    assert multiprocessing.active_children() == []
    cfg = load_config("tiny_finetune", [*data_args(synth, val=True), *workers, f"run.out_dir={tmp_path / 'ft'}",
                                        f"model.init={pre['weights']}", "run.max_steps=1", "optim.batch_size=2"])
    run_finetune(cfg)                                    # training, validation and test loaders
    assert multiprocessing.active_children() == []


def test_one_loader_iterator_serves_every_epoch_and_trains_what_no_workers_train(synth, tmp_path, monkeypatch):
    """The workers decode across epoch boundaries (mgm.engine.samplers): one iterator for the run,
    and the batches, hence the losses, are those of the same run without workers."""
    from torch.utils.data import DataLoader

    from mgm.engine.pretrain import run_pretrain
    from mgm.engine.samplers import EpochStream

    made = []
    make_iter = DataLoader.__iter__
    monkeypatch.setattr(DataLoader, "__iter__", lambda self: (
        made.append(type(self.batch_sampler.sampler).__name__), make_iter(self))[1])
    runs = {}
    for workers in (0, 1):
        small = [a for a in SMALL if not a.startswith("data.num_workers")] + [f"data.num_workers={workers}"]
        cfg = load_config("tiny", [*data_args(synth), *small, f"run.out_dir={tmp_path / str(workers)}",
                                   "optim.batch_size=8", "optim.epochs=3", "optim.warmup_epochs=1"])
        runs[workers] = run_pretrain(cfg)
    assert made == [EpochStream.__name__] * 2
    assert runs[1]["epoch"] == 3 and len(runs[1]["history"]) == 3 * (len(runs[1]["history"]) // 3) > 3
    assert [h["loss"] for h in runs[1]["history"]] == [h["loss"] for h in runs[0]["history"]]


def test_gradient_accumulation_matches_the_large_batch(synth, tmp_path):
    from mgm.engine.pretrain import run_pretrain

    base = [*data_args(synth), *SMALL, "run.max_steps=3", "run.seed=2"]
    big = run_pretrain(load_config("tiny", [*base, f"run.out_dir={tmp_path / 'big'}", "optim.batch_size=4"]))
    acc = run_pretrain(load_config("tiny", [*base, f"run.out_dir={tmp_path / 'acc'}", "optim.batch_size=2",
                                            "optim.accum_steps=2"]))
    assert [h["lr"] for h in big["history"]] == [h["lr"] for h in acc["history"]]
    for a, b in zip(big["history"], acc["history"]):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-4, abs=1e-5)


def test_multiview_eval_two_processes_matches_single(synth, tmp_path):
    """7 videos x 3 views = 21 items over 2 ranks: one padded position must not count twice."""
    from mgm.models import build_classifier, save_checkpoint

    lines = (synth / "val.txt").read_text().splitlines()[:7]
    (tmp_path / "test7.txt").write_text("\n".join(lines) + "\n")
    torch.manual_seed(0)
    clf = build_classifier("vit_tiny", num_classes=8, num_frames=8, img_size=64)
    ckpt = save_checkpoint(clf, tmp_path / "clf.safetensors")
    common = ["eval", "--config", "tiny_finetune", f"data.test={tmp_path / 'test7.txt'}",
              f"data.root={synth}", *SMALL, "data.test_clips=3", "data.test_crops=1",
              "optim.batch_size=2", f"model.init={ckpt}"]
    one = run_cli([*common, f"run.out_dir={tmp_path / 'one'}"])
    assert one.returncode == 0, one.stderr[-3000:]
    two = run_cli([*common, f"run.out_dir={tmp_path / 'two'}"], nproc=2)
    assert two.returncode == 0, two.stderr[-3000:]
    a = (tmp_path / "one" / "predictions.csv").read_text().splitlines()
    b = (tmp_path / "two" / "predictions.csv").read_text().splitlines()
    assert len(a) == 8 and all(r.split(",")[-1] == "3" for r in a[1:])
    assert [r.split(",")[:6] + [r.split(",")[-1]] for r in a] == [r.split(",")[:6] + [r.split(",")[-1]] for r in b]
    ma = json.loads((tmp_path / "one" / "test_metrics.json").read_text())
    mb = json.loads((tmp_path / "two" / "test_metrics.json").read_text())
    assert ma["top1"] == mb["top1"] and ma["top5"] == mb["top5"] and ma["videos"] == mb["videos"] == 7


def test_repeated_augmentation_copies_differ_and_are_reproducible(synth):
    from mgm.data import build_dataset
    from mgm.engine.samplers import EpochItems

    cfg = load_config("tiny_finetune", [*data_args(synth), *SMALL])
    ds = build_dataset(cfg, "train", "finetune")
    rep = EpochItems(ds, 2)
    assert len(rep) == 2 * len(ds)
    a, b, again = rep[(1, 0)], rep[(1, 1)], rep[(1, 0)]
    assert a["index"] == b["index"] == 0 and a["label"] == b["label"]
    assert not torch.equal(a["video"], b["video"])          # its own augmentation
    assert torch.equal(a["video"], again["video"]) and ds.seed == cfg.run.seed
    # the epoch travels with the index: the same draw as ds[0] after set_epoch, another epoch's differs
    ds.set_epoch(1)
    assert torch.equal(a["video"], ds[0]["video"])
    assert not torch.equal(a["video"], rep[(2, 0)]["video"])


def test_corrupt_videos_are_named_in_the_epoch_report(synth, tmp_path):
    from mgm.engine.pretrain import run_pretrain

    (tmp_path / "broken.mp4").write_bytes(os.urandom(2000))
    good = (synth / "train.txt").read_text().splitlines()[:7]
    lst = tmp_path / "list.txt"
    lst.write_text("\n".join([f"{synth / g.split()[0]} {g.split()[1]}" for g in good]
                             + [f"{tmp_path / 'broken.mp4'} 0"]) + "\n")
    cfg = load_config("tiny", [f"data.train={lst}", *SMALL, f"run.out_dir={tmp_path / 'r'}",
                               "optim.batch_size=4", "optim.epochs=1", "optim.warmup_epochs=0"])
    res = run_pretrain(cfg)
    assert res["step"] == 2 and res["epoch"] == 1
    rep = read_log(tmp_path / "r" / "log.jsonl", "data")
    assert rep[0]["bad_videos"] == 1 and rep[0]["videos"][0].startswith(f"{tmp_path / 'broken.mp4'}: ")
    assert "(replaced by " in rep[0]["videos"][0]
    # 24-frame videos, clips of 8 frames x stride 4 span 29: used, counted as short
    assert rep[0]["short_videos"] == 7 and rep[0]["short"][0].endswith("24 frames, clip needs 29 (the last frame repeats)")
    line = json.loads((tmp_path / "r" / "bad_videos.jsonl").read_text())
    assert line["videos"][0]["path"] == str(tmp_path / "broken.mp4") and line["videos"][0]["replaced_by"]


def test_eval_leaves_an_unreadable_test_video_out(synth, tmp_path):
    """A stand-in is not a view of the unreadable video: 4 good + 1 broken -> 4 rows."""
    from mgm.engine.finetune import run_eval
    from mgm.models import build_classifier, save_checkpoint

    (tmp_path / "broken.mp4").write_bytes(os.urandom(3000))
    lines = (synth / "val.txt").read_text().splitlines()[:4]
    lst = tmp_path / "test5.txt"
    lst.write_text("".join(f"{synth / ln.split()[0]} {ln.split()[1]}\n" for ln in lines[:2])
                   + f"{tmp_path / 'broken.mp4'} 3\n"
                   + "".join(f"{synth / ln.split()[0]} {ln.split()[1]}\n" for ln in lines[2:]))
    torch.manual_seed(0)
    ckpt = save_checkpoint(build_classifier("vit_tiny", num_classes=8, num_frames=8, img_size=64),
                           tmp_path / "clf.safetensors")
    cfg = load_config("tiny_finetune", [f"data.test={lst}", *SMALL, "data.test_clips=2", "data.test_crops=1",
                                        "optim.batch_size=2", f"model.init={ckpt}", f"run.out_dir={tmp_path / 'ev'}"])
    m = run_eval(cfg)
    assert m["videos"] == 4 and m["unreadable"] == 1
    rows = (tmp_path / "ev" / "predictions.csv").read_text().splitlines()[1:]
    assert [r.split(",")[0] for r in rows] == ["0", "1", "3", "4"] and all(r.endswith(",2") for r in rows)
