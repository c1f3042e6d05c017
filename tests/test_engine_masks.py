"""The masks that reach the model in pretraining: every MaskConfig field changes them (or is
refused as meaningless for the strategy), and they do not depend on how the global batch is
split into processes / accumulation steps."""
import dataclasses

import pytest
import torch

from data_fixtures import tiny_synth
from mgm.config import ConfigError, MaskConfig, load_config
from mgm.config_checks import validate_config
from mgm.engine.pretrain import run_pretrain
from mgm.engine.run_context import model_from_config

# an 8x8 patch grid and ratio 0.5: room for the rectangles to move and change shape
FAST = ["model.num_frames=8", "data.num_frames=8", "model.img_size=64", "data.size=64", "model.patch=8",
        "mask.ratio=0.5", "data.motion_cell=8", "model.depth=1",
        "model.decoder_depth=1", "data.num_workers=0", "run.threads=1", "run.tensorboard=false",
        "optim.batch_size=4", "run.max_steps=2", "data.flip=false", "run.seed=5"]

# field -> (strategy that reads it, a value other than the default)
CHANGES = {
    "strategy": ("mgm", "tube"),
    "ratio": ("mgm", 0.75),
    "topk": ("mgm", 4),
    "jitter": ("mgm", False),
    "init": ("mgm", "motion"),
    "min_motion": ("mgm", 12.0),
    "velocity": ("smm", 2.5),
    "scale_step": ("smm", 0.25),
}


class RecordMasks(torch.nn.Module):
    """A real pretrainer that keeps every mask it is given."""

    def __init__(self, inner):
        super().__init__()
        self.module = inner            # mgm.models.checkpoint.unwrap finds the model here
        self.masks = []

    def forward(self, video, mask):
        self.masks.append(mask.detach().clone())
        return self.module(video, mask)


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return tiny_synth(tmp_path_factory.mktemp("synth_masks"), videos=8, size=64, frames=20)


def masks_of(synth, tmp_path, name, overrides):
    cfg = load_config("tiny", [f"data.train={synth / 'all.txt'}", *FAST, f"run.out_dir={tmp_path / name}",
                               *overrides])
    torch.manual_seed(0)
    model = RecordMasks(model_from_config(cfg, "pretrainer"))
    run_pretrain(cfg, model=model)
    return torch.cat(model.masks)


def test_every_mask_config_field_reaches_the_masks(synth, tmp_path):
    assert set(CHANGES) == {f.name for f in dataclasses.fields(MaskConfig)}, "a new MaskConfig field needs a row"
    base = {s: masks_of(synth, tmp_path, f"base_{s}", [f"mask.strategy={s}"]) for s in ("mgm", "smm")}
    for field, (strategy, value) in CHANGES.items():
        over = [f"mask.strategy={strategy}", f"mask.{field}={value}"] if field != "strategy" else [f"mask.strategy={value}"]
        got = masks_of(synth, tmp_path, field, over)
        assert got.shape[0] == base[strategy].shape[0]
        assert not torch.equal(got, base[strategy]), f"mask.{field}={value} did not change the masks"


def test_an_option_the_strategy_never_reads_is_refused():
    for strategy, over in [("tube", "mask.topk=3"), ("random", "mask.velocity=2.0"), ("smm", "mask.init=motion"),
                           ("block", "mask.jitter=false")]:
        with pytest.raises(ConfigError, match="has no effect"):
            validate_config(load_config("tiny", [f"mask.strategy={strategy}", over]))
    with pytest.raises(ConfigError, match="mask.strategy=.mgmm. is not one of random, tube"):
        validate_config(load_config("tiny", ["mask.strategy=mgmm"]))


def test_masks_do_not_depend_on_accumulation(synth, tmp_path):
    """One step of 4 clips, or 2 micro-batches of 2: the same clips get the same masks."""
    one = masks_of(synth, tmp_path, "b4", ["run.max_steps=1"])
    acc = masks_of(synth, tmp_path, "b2x2", ["run.max_steps=1", "optim.batch_size=2", "optim.accum_steps=2"])
    assert torch.equal(one, acc)
