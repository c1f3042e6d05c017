"""optim.ema: the run ends with the moving average of its weights (mgm.engine.ema) — the exact
average of the trained weights, carried through checkpoints so a resumed run ends with the same
average, handed on by pretraining and fine-tuning alike, refused when a checkpoint lacks it."""
import pytest
import torch
from safetensors.torch import load_file

from engine_helpers import SMALL, data_args, make_synth
from mgm.config import ConfigError, load_config
from mgm.config_checks import validate_config
from mgm.engine.finetune import run_finetune
from mgm.engine.pretrain import run_pretrain
from mgm.engine.run_context import RunError
from mgm.experiments.study import SCRATCH, Study, eval_args, pretrain_run, task_key


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return make_synth(tmp_path_factory, videos=24)


def pretrain_cfg(synth, out, *extra):
    return load_config("tiny", [*data_args(synth), *SMALL, f"run.out_dir={out}", "optim.batch_size=4",
                                "optim.base_lr=0.5", "optim.warmup_epochs=0", *extra])


def checkpoint(out, step, name="model.safetensors"):
    return load_file(str(out / "checkpoints" / f"step_{step:08d}" / name))


def test_average_of_the_trained_weights_is_what_pretraining_hands_on(synth, tmp_path):
    """A(1) = W(1), A(s) = d·A(s-1) + (1-d)·W(s) over the per-step checkpoints' weights, equal to
    pretrained.safetensors; without optim.ema that file is the last trained weights."""
    d = 0.7
    run_pretrain(pretrain_cfg(synth, tmp_path / "ema", "run.max_steps=4", "run.ckpt_every_steps=1",
                              "run.keep_last=10", f"optim.ema={d}"))
    trained = [checkpoint(tmp_path / "ema", s) for s in range(1, 5)]
    expected = dict(trained[0])
    for w in trained[1:]:
        expected = {k: d * expected[k] + (1 - d) * w[k] for k in expected}
    handed_on = load_file(str(tmp_path / "ema" / "pretrained.safetensors"))
    assert set(handed_on) == set(expected)
    for k in expected:
        torch.testing.assert_close(handed_on[k], expected[k], rtol=1e-5, atol=1e-6)
    moved = max(float((handed_on[k] - trained[-1][k]).abs().max()) for k in expected)
    assert moved > 1e-3                      # the average is not the last weights
    assert checkpoint(tmp_path / "ema", 4, "ema.safetensors").keys() == handed_on.keys()

    run_pretrain(pretrain_cfg(synth, tmp_path / "plain", "run.max_steps=4"))
    plain = load_file(str(tmp_path / "plain" / "pretrained.safetensors"))
    last = checkpoint(tmp_path / "plain", 4)
    assert all(torch.equal(plain[k], last[k]) for k in last)
    assert not (tmp_path / "plain" / "checkpoints" / "step_00000004" / "ema.safetensors").exists()


def test_a_resumed_run_ends_with_the_same_average(synth, tmp_path):
    """Stopped after step 2 (run.max_steps) and continued to step 4: the same average, to the bit,
    as a run that did not stop (the checkpoint carries the average and its update count)."""
    run_pretrain(pretrain_cfg(synth, tmp_path / "full", "run.max_steps=4", "optim.ema=0.6"))
    run_pretrain(pretrain_cfg(synth, tmp_path / "cut", "run.max_steps=2", "optim.ema=0.6"))
    half = load_file(str(tmp_path / "cut" / "pretrained.safetensors"))
    run_pretrain(pretrain_cfg(synth, tmp_path / "cut", "run.max_steps=4", "optim.ema=0.6", "run.resume=auto"))
    full = load_file(str(tmp_path / "full" / "pretrained.safetensors"))
    resumed = load_file(str(tmp_path / "cut" / "pretrained.safetensors"))
    assert all(torch.equal(full[k], resumed[k]) for k in full)
    assert any(not torch.equal(full[k], half[k]) for k in full)


def test_resuming_a_checkpoint_without_the_average_is_refused(synth, tmp_path):
    run_pretrain(pretrain_cfg(synth, tmp_path, "run.max_steps=2"))
    with pytest.raises(RunError, match=r"step_00000002: written without optim.ema, this run has optim.ema=0.9"):
        run_pretrain(pretrain_cfg(synth, tmp_path, "run.max_steps=4", "optim.ema=0.9", "run.resume=auto"))


def test_resuming_a_checkpoint_with_the_average_without_it_says_so(synth, tmp_path, capsys):
    run_pretrain(pretrain_cfg(synth, tmp_path, "run.max_steps=2", "optim.ema=0.9"))
    capsys.readouterr()
    run_pretrain(pretrain_cfg(synth, tmp_path, "run.max_steps=3", "run.resume=auto"))
    err = capsys.readouterr().err
    assert "step_00000002 carries a weight average (optim.ema) that this run, with optim.ema=0, drops" in err
    trained = checkpoint(tmp_path, 3)
    handed_on = load_file(str(tmp_path / "pretrained.safetensors"))
    assert all(torch.equal(handed_on[k], trained[k]) for k in trained)


def test_fine_tuning_hands_on_the_average(synth, tmp_path):
    """finetuned.safetensors (and the test after training, which runs on the same model) is the
    average, not the last checkpoint's weights."""
    common = [*data_args(synth), *SMALL, "optim.batch_size=4", "run.max_steps=3", "run.eval_every=0",
              f"data.test={synth / 'val.txt'}", "data.test_clips=1", "data.test_crops=1"]
    res = run_finetune(load_config("tiny_finetune", [*common, f"run.out_dir={tmp_path / 'ema'}", "optim.ema=0.5"]))
    weights = load_file(res["weights"])
    average = checkpoint(tmp_path / "ema", 3, "ema.safetensors")
    last = checkpoint(tmp_path / "ema", 3)
    assert all(torch.equal(weights[k], average[k]) for k in average)
    assert any(not torch.equal(weights[k], last[k]) for k in last)
    assert "top1" in res["test"]


@pytest.mark.parametrize("decay", [-0.1, 1.0, 1.5])
def test_decay_outside_the_unit_interval_is_refused(decay):
    with pytest.raises(ConfigError, match="optim.ema must be in"):
        validate_config(load_config("tiny", [f"optim.ema={decay}"]))


def test_study_pretrain_ema_reaches_the_pretraining_and_keys_only_its_runs(monkeypatch, tmp_path):
    """--pretrain-ema sets optim.ema of the pretrainings (not of the fine-tunes), and enters the
    keys of pretrainings and pretrained evaluations only when set: runs made without it keep
    their keys, scratch's runs are shared."""
    seen = {}

    def fake_pretrain(cfg):
        seen["ema"] = cfg.optim.ema
        return {"weights": "w", "timing": {"seconds": 0.0}, "step": 1, "history": []}

    monkeypatch.setattr("mgm.engine.pretrain.run_pretrain", fake_pretrain)
    plain = Study(out_dir=str(tmp_path))
    averaged = Study(out_dir=str(tmp_path), pretrain_ema=0.998)
    pretrain_run(averaged, {"unlabeled": tmp_path}, "mgm", 0)
    assert seen["ema"] == 0.998
    pretrain_run(plain, {"unlabeled": tmp_path}, "mgm", 0)
    assert seen["ema"] == 0.0
    for kind, arm in (("pretrain", "mgm"), ("finetune", "mgm"), ("finetune", SCRATCH)):
        args = {"arm": arm, "seed": 0} if kind == "pretrain" else eval_args(arm, 4, 0)
        a, b = task_key(plain, kind, args), task_key(averaged, kind, args)
        assert "pretrain_ema" not in a
        assert (a == b) == (arm == SCRATCH)
