"""`mgm recon`: the masked-patch loss of a pretrainer on the real clip, on the clip blanked to its
mean colour (the mask's shape alone), and of predicting 0."""
from __future__ import annotations

import json

import pytest
import torch

from engine_helpers import SMALL, data_args, make_synth
from mgm.cli import main
from mgm.config import load_config
from mgm.experiments.recon import load_batches, reconstruction_losses, run_recon, strategy_masks
from mgm.models.checkpoint import load_checkpoint, save_checkpoint


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    from mgm.engine.pretrain import run_pretrain

    synth = make_synth(tmp_path_factory, videos=16)
    out = tmp_path_factory.mktemp("pre")
    cfg = load_config("tiny", [*data_args(synth), *SMALL, f"run.out_dir={out}", "optim.batch_size=4",
                               "run.max_steps=3", "mask.strategy=mgm"])
    res = run_pretrain(cfg)
    return synth, res["weights"], cfg


def test_losses_are_the_training_loss_the_blank_clip_and_nothing(pretrained):
    synth, weights, cfg = pretrained
    model = load_checkpoint(weights, kind="pretrainer")
    cfg.data.val = str(synth / "train.txt")     # 13 clips
    batches = load_batches(cfg, clips=8, batch=4, guidance=True)
    grid = (4, 8, 8)
    masks = strategy_masks("mgm", batches, grid, 0.75, seed=3)
    assert [len(m) for m in masks] == [4, 4]
    assert all(bool((m.sum(1) == 192).all()) for m in masks)           # 75 % of 256 tokens, every clip
    again = strategy_masks("mgm", batches, grid, 0.75, seed=3)
    assert all(torch.equal(a, b) for a, b in zip(masks, again))         # every checkpoint gets the same masks
    other = strategy_masks("random", batches, grid, 0.75, seed=4)
    assert not all(torch.equal(a, b) for a, b in zip(strategy_masks("random", batches, grid, 0.75, seed=3), other))
    got = reconstruction_losses(model, batches, masks)
    with torch.no_grad():
        clip = sum(float(model(b["video"], m)[0]) * len(m) for b, m in zip(batches, masks)) / 8
        blank_videos = [torch.ones_like(b["video"]) * b["video"].mean(dim=(2, 3, 4), keepdim=True) for b in batches]
        preds = [model(v, m)[1] for v, m in zip(blank_videos, masks)]
    assert got["clip"] == pytest.approx(clip, rel=1e-6)                 # the training objective's loss
    # blank: the model saw only the mean colour, and is scored against the real clip's patches
    from mgm.models.vit import visible_and_masked_ids

    blank = sum(float(((p - model.targets(b["video"], visible_and_masked_ids(m)[1])) ** 2).mean()) * len(m)
                for b, m, p in zip(batches, masks, preds)) / 8
    assert got["blank"] == pytest.approx(blank, rel=1e-6)
    # learnt nothing = predicting 0 against targets normalised per patch and channel over
    # m = 2*8*8 values: (m-1)/m (unbiased variance), less only for flat patches
    assert 0.97 < got["nothing"] <= 127 / 128 + 1e-6
    both = run_recon(model, cfg, ["random", "mgm"], clips=8, batch=4, seed=3)
    assert both["mgm"] == pytest.approx(got) and set(both["random"]) == {"nothing", "clip", "blank"}


def test_learnt_nothing_with_pixel_targets_is_the_visible_mean_colour():
    """Pixel targets: the know-nothing prediction is the clip's visible mean colour, not 0, so a
    clip of one colour scores 0 and a two-colour clip the mean square to that mean."""
    from mgm.experiments.recon import trivial_prediction
    from mgm.models import build_pretrainer
    from mgm.models.vit import visible_and_masked_ids

    m = build_pretrainer("vit_tiny", num_frames=4, img_size=32, patch=8, depth=1, decoder_depth=1,
                         norm_pix_loss=False).eval()
    mask = torch.zeros(2, 32, dtype=torch.bool)
    mask[:, 8:] = True              # grid (2, 4, 4): visible = the top two patch rows of t' = 0
    video = torch.zeros(2, 3, 4, 32, 32)
    video[1, :, :, 16:] = 1.0                            # clip 1: top half one colour, bottom another
    ids = visible_and_masked_ids(mask)[1]
    err = (trivial_prediction(m, video, mask) - m.targets(video, ids)) ** 2
    assert float(err[0].max()) < 1e-10
    # clip 1: visible all top colour c0; of the 24 hidden tokens 16 are bottom colour c1
    c0 = 0.0 * m.pixel_std.flatten() + m.pixel_mean.flatten()
    c1 = 1.0 * m.pixel_std.flatten() + m.pixel_mean.flatten()
    assert float(err[1].mean()) == pytest.approx(float(((c1 - c0) ** 2).mean()) * 2 / 3, rel=1e-5)


def test_the_mask_settings_of_the_config_reach_the_masks(pretrained):
    synth, weights, cfg = pretrained
    model = load_checkpoint(weights, kind="pretrainer")
    cfg.data.val = str(synth / "train.txt")     # 13 clips
    a = run_recon(model, cfg, ["mgm"], clips=4, batch=4)
    cfg.mask.ratio = 0.5
    b = run_recon(model, cfg, ["mgm"], clips=4, batch=4)
    assert a["mgm"]["clip"] != b["mgm"]["clip"]


def test_cli_prints_a_table_or_json_and_one_line_errors(pretrained, tmp_path, capsys):
    synth, weights, _ = pretrained
    lst = str(synth / "train.txt")
    assert main(["recon", weights, lst, "--clips", "4", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"random", "mgm"} and set(out["mgm"]) == {"nothing", "clip", "blank"}
    assert main(["recon", weights, lst, "--clips", "4", "--strategies", "tube"]) == 0
    assert "| tube |" in capsys.readouterr().out
    # no saved config: say so and how to give one
    bare = save_checkpoint(load_checkpoint(weights, kind="pretrainer"), tmp_path / "bare.safetensors")
    assert main(["recon", str(bare), lst]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no saved config" in err and "--config" in err
    # encoder-only weights: no decoder to reconstruct with
    enc = save_checkpoint(load_checkpoint(weights, kind="classifier"), tmp_path / "enc.safetensors")
    assert main(["recon", str(enc), lst]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a pretrainer" in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cli_cuda_without_cuda_is_one_line(pretrained, capsys):
    synth, weights, _ = pretrained
    assert main(["recon", weights, str(synth / "train.txt"), "--clips", "2", "--device", "cuda"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("mgm recon: error: --device cuda: ")
