"""Pre-emption and resume: SIGTERM / SIGUSR1 stop after the step with a checkpoint and exit 75,
`--resume auto` continues exactly; checkpoints by the clock; a corrupted or refused newest
checkpoint is skipped (named, with the reason) for the newest one that loads."""
import json
import os

import pytest
import torch

from engine_helpers import SMALL, TABLE6_MACHINERY, data_args, losses, make_synth, run_cli, run_signalled_after
from mgm.config import load_config
from mgm.engine.logging import read_log
from mgm.engine.preemption import EXIT_PREEMPTED
from mgm.provenance import installation


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return make_synth(tmp_path_factory)


def test_sigterm_mid_epoch_checkpoints_exits_75_and_resumes_exactly(synth, tmp_path):
    """SIGTERM to the whole process group (DataLoader workers too, as SLURM does) right after
    step 3 of a fine-tuning run (drop path, mixup/cutmix, repeated aug) with no periodic
    checkpoints: the step finishes, step_3 is written, exit 75; resuming gives exactly the
    uninterrupted loss curve, and the log holds every step once."""
    common = ["finetune", "--config", "tiny_finetune", *data_args(synth), *SMALL, *TABLE6_MACHINERY,
              "optim.batch_size=4", "run.max_steps=6", "run.eval_every=0", "run.seed=3"]
    full = run_cli([*common, f"run.out_dir={tmp_path / 'full'}"])
    assert full.returncode == 0, full.stderr[-3000:]
    out = tmp_path / "term"
    stopped = run_signalled_after("finetune", "SIGTERM", 3, [*common[3:], f"run.out_dir={out}",
                                                             "data.num_workers=1"], tmp_path, rank=-1)
    assert stopped.returncode == EXIT_PREEMPTED == 75, stopped.stderr[-3000:]
    assert (f"interrupted by SIGTERM: stopped after step 3 (checkpoint {out / 'checkpoints' / 'step_00000003'}); "
            "continue with --resume auto") in stopped.stderr
    assert "Traceback" not in stopped.stderr
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step_00000003"]
    assert sorted(losses(out)) == [1, 2, 3]
    resumed = run_cli([*common, f"run.out_dir={out}", "--resume", "auto"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a, b = losses(tmp_path / "full"), losses(out)
    assert sorted(b) == [1, 2, 3, 4, 5, 6]
    assert [b[s] for s in range(1, 7)] == [a[s] for s in range(1, 7)]     # exact
    assert [(m["step"], m["dropped"]) for m in read_log(out / "log.jsonl", "resume")] == [(3, 0)]


def test_sigusr1_on_one_of_two_processes_stops_both_and_resumes_exactly(synth, tmp_path):
    """Only rank 1 gets the signal: the ranks agree (all-reduce) and both stop after step 2,
    none is left waiting in a collective; the resumed 2-process run follows the uninterrupted
    curve (compared with one process x the same global batch, as the torchrun test does)."""
    from mgm.engine.pretrain import run_pretrain

    common = [*data_args(synth), *SMALL, "optim.batch_size=2", "run.max_steps=4", "run.seed=5"]
    # uninterrupted: 1 process x batch 4 trains on the same clips and masks as 2 x 2
    full = run_pretrain(load_config("tiny", [*common, "optim.batch_size=4", f"run.out_dir={tmp_path / 'full'}"]))
    out = tmp_path / "usr1"
    stopped = run_signalled_after("pretrain", "SIGUSR1", 2, [*common, f"run.out_dir={out}"], tmp_path,
                                  rank=1, nproc=2)
    assert stopped.returncode != 0, stopped.stderr[-3000:]
    assert stopped.stderr.count("stopped after step 2") == 2, stopped.stderr[-3000:]     # both ranks
    assert "interrupted by SIGUSR1" in stopped.stderr and "on another process" in stopped.stderr
    assert "exitcode  : 75" in stopped.stderr                        # torchrun's report of the workers
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step_00000002"]
    resumed = run_cli(["pretrain", "--config", "tiny", *common, f"run.out_dir={out}", "--resume", "auto"],
                      nproc=2)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    b = losses(out)
    assert sorted(b) == [1, 2, 3, 4]
    for h in full["history"]:
        assert b[h["step"]] == pytest.approx(h["loss"], rel=1e-4, abs=1e-5)


def test_checkpoints_by_the_clock(synth, tmp_path):
    from mgm.engine.pretrain import run_pretrain

    cfg = load_config("tiny", [*data_args(synth), *SMALL, f"run.out_dir={tmp_path}", "optim.batch_size=4",
                               "run.max_steps=3", "run.keep_last=10", "run.ckpt_every_minutes=1e-9"])
    run_pretrain(cfg)          # every step is "1e-9 minutes after the last checkpoint"
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [
        "step_00000001", "step_00000002", "step_00000003"]
    for name in ("pretrain_k400", "pretrain_ssv2_vit_s", "finetune_ucf101", "finetune_ssv2"):
        assert load_config(name).run.ckpt_every_minutes == 30
    assert load_config("tiny").run.ckpt_every_minutes == 0


class RunsCode:
    """Unpickling this would call os.system: weights_only=True must refuse it."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_corrupted_and_refused_newest_checkpoints_are_skipped(synth, tmp_path, capsys):
    from mgm.cli import main
    from mgm.engine.pretrain import run_pretrain

    base = [*data_args(synth), *SMALL, f"run.out_dir={tmp_path}", "optim.batch_size=4",
            "run.ckpt_every_steps=1", "run.keep_last=3", "run.seed=7"]
    full = run_pretrain(load_config("tiny", [*base, "run.max_steps=5", f"run.out_dir={tmp_path / 'full'}"]))
    run_pretrain(load_config("tiny", [*base, "run.max_steps=4"]))
    ck = tmp_path / "checkpoints"
    assert sorted(p.name for p in ck.iterdir()) == ["step_00000002", "step_00000003", "step_00000004"]
    seconds_at_2 = torch.load(ck / "step_00000002" / "trainer.pt", weights_only=True)["timing"]["seconds"]
    newest = ck / "step_00000004" / "trainer.pt"
    newest.write_bytes(newest.read_bytes()[:1000])                      # truncated
    marker = tmp_path / "code_ran"
    torch.save({"step": RunsCode(marker)}, ck / "step_00000003" / "trainer.pt")   # would run code
    # an explicit checkpoint that is refused: one line, exit 2, nothing run
    capsys.readouterr()
    rc = main(["pretrain", "--config", "tiny", *base, "run.max_steps=5", "--resume", str(ck / "step_00000003")])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("mgm pretrain: error: ") and err.count("\n") == 1
    assert "refusing to unpickle it" in err and not marker.exists()
    # auto: steps 4 and 3 are skipped with their reasons, the run continues from step 2 (written,
    # as the test says, with another installation: continued, with a warning naming what differs)
    st2 = ck / "step_00000002" / "trainer.pt"
    state = torch.load(st2, weights_only=True)
    assert state["installation"] == installation()
    state["installation"] = {**state["installation"], "torch_cpu": "OTHER"}
    torch.save(state, st2)
    res = run_pretrain(load_config("tiny", [*base, "run.max_steps=5", "run.resume=auto"]))
    assert res["step"] == 5 and not marker.exists()
    assert f"warning: {ck / 'step_00000002'} was written with another installation (torch_cpu OTHER)" \
        in capsys.readouterr().err
    assert json.loads((tmp_path / "pretrained.json").read_text())["installation"] == installation()
    msgs = [r["text"] for r in read_log(tmp_path / "log.jsonl", "message")]
    assert any(m.startswith("resume: skipped step_00000004: ") and "not a readable checkpoint" in m for m in msgs)
    assert any(m.startswith("resume: skipped step_00000003: ") and "refusing to unpickle" in m for m in msgs)
    assert any(m.startswith(f"resumed from {ck / 'step_00000002'} at step 2") for m in msgs)
    got = losses(tmp_path)
    assert sorted(got) == [1, 2, 3, 4, 5]
    assert [got[s] for s in range(1, 6)] == [h["loss"] for h in full["history"]]   # exact
    # the checkpoint carries the curve so far: the resumed run's result has every step's loss
    assert [(h["step"], h["loss"]) for h in res["history"]] == [(h["step"], h["loss"]) for h in full["history"]]
    assert res["timing"]["steps"] == 5
    # wall seconds: the first process's until its step-2 checkpoint, then the resumed one's
    assert 0 < seconds_at_2 < res["timing"]["seconds"]
    # nothing loads: one line naming every checkpoint and why
    for d in ck.iterdir():
        (d / "trainer.pt").write_bytes(b"")
    capsys.readouterr()
    assert main(["pretrain", "--config", "tiny", *base, "run.max_steps=6", "--resume", "auto"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"mgm pretrain: error: no checkpoint in {ck} can be resumed from (resume: skipped")
    assert err.count("\n") == 1


def test_a_resumed_epoch_still_reports_the_bad_video_seen_before_the_stop(synth, tmp_path):
    """The bad-video counts of an epoch in progress travel in trainer.pt (plain types only)."""
    from mgm.engine.checkpoint import load_trainer_state
    from mgm.engine.pretrain import run_pretrain

    (tmp_path / "broken.mp4").write_bytes(b"\0" * 100)
    good = (synth / "train.txt").read_text().splitlines()[:11]
    lst = tmp_path / "list.txt"
    lst.write_text(f"{tmp_path / 'broken.mp4'} 0\n" + "".join(f"{synth / g.split()[0]} {g.split()[1]}\n" for g in good))
    # a seed whose first step (4 of the 12 entries) draws the broken entry 0
    seed = next(s for s in range(100) if 0 in torch.randperm(12, generator=torch.Generator().manual_seed(s))[:4])
    common = [f"data.train={lst}", *SMALL, "optim.batch_size=4", "optim.epochs=1", f"run.seed={seed}",
              f"run.out_dir={tmp_path / 'r'}"]
    run_pretrain(load_config("tiny", [*common, "run.max_steps=1"]))
    st = load_trainer_state(tmp_path / "r" / "checkpoints" / "step_00000001")
    assert st["bad_videos"]["log"]["times"] == {str(tmp_path / "broken.mp4"): 1}
    res = run_pretrain(load_config("tiny", [*common, "run.resume=auto"]))
    assert res["step"] == 3
    rep = read_log(tmp_path / "r" / "log.jsonl", "data")
    assert len(rep) == 1 and rep[0]["bad_videos"] == 1 and rep[0]["replacements"] == 1
