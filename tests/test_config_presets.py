"""Every preset parses, validates, and matches the paper's Appendix A (Tables 5 and 6)."""
import pytest

from mgm.config import ConfigError, accum_steps_for, list_presets, load_config, preset_description
from mgm.config_checks import validate_config

# Table 5 (pretraining), the same for both datasets except flip; Sec. 4.2 for stride.
TABLE5 = {"optimizer": "adamw", "base_lr": 1.5e-4, "weight_decay": 0.05, "betas": [0.9, 0.95],
          "batch": 512, "warmup_epochs": 40}
PRETRAIN = {  # preset: (flip, stride)
    "pretrain_ssv2": (False, 2), "pretrain_k400": (True, 4),
    "pretrain_ssv2_vit_s": (False, 2), "pretrain_k400_vit_s": (True, 4),
}

# Table 6 (fine-tuning): lr, layer decay, repeated aug, warmup, epochs, flip, drop path.
# The repeated-augmentation row reads "2 1 2 2 2" under six columns (AVA is a detection
# column we do not ship); we read it as SSv2 2, K400 1, AVA blank, UCF101/HMDB51/Diving48 2.
TABLE6 = {
    "ssv2": (5e-4, 0.75, 2, 5, 30, False, 0.1),
    "k400": (1e-3, 0.75, 1, 5, 75, True, 0.1),
    "ucf101": (5e-4, 0.75, 2, 0, 100, True, 0.2),
    "hmdb51": (5e-4, 0.7, 2, 0, 100, True, 0.2),
    "diving48": (5e-4, 0.7, 2, 0, 100, True, 0.2),
}
TEST_VIEWS = {"ssv2": (2, 3), "k400": (5, 3), "ucf101": (5, 3), "hmdb51": (5, 3), "diving48": (5, 3)}


@pytest.mark.parametrize("name", list_presets())
def test_every_preset_parses_and_validates(name):
    cfg = load_config(name)
    validate_config(cfg)
    assert preset_description(name), f"{name}.yaml needs a first-line comment"
    assert cfg.run.out_dir != "runs/default"


@pytest.mark.parametrize("name", sorted(PRETRAIN))
def test_pretrain_presets_match_table5(name):
    cfg = load_config(name)
    o = cfg.optim
    assert cfg.task == "pretrain"
    assert o.name == TABLE5["optimizer"] and o.base_lr == TABLE5["base_lr"]
    assert o.weight_decay == TABLE5["weight_decay"] and o.betas == TABLE5["betas"]
    assert o.global_batch == TABLE5["batch"] and o.warmup_epochs == TABLE5["warmup_epochs"]
    assert o.layer_decay == 1.0
    flip, stride = PRETRAIN[name]
    assert cfg.data.flip is flip and cfg.data.stride == stride
    assert cfg.data.scales == [1.0, 0.875, 0.75, 0.66]          # MultiScaleCrop
    assert (cfg.data.num_frames, cfg.data.size, cfg.model.tubelet, cfg.model.patch) == (16, 224, 2, 16)
    assert cfg.mask.strategy == "mgm" and cfg.mask.ratio == 0.75
    assert cfg.model.arch == ("vit_small" if name.endswith("vit_s") else "vit_base")


@pytest.mark.parametrize("ds", sorted(TABLE6))
def test_finetune_presets_match_table6(ds):
    lr, ld, ra, warm, epochs, flip, dp = TABLE6[ds]
    names = [f"finetune_{ds}"] + ([f"finetune_{ds}_vit_s"] if ds in ("ssv2", "k400") else [])
    for name in names:
        cfg = load_config(name)
        o = cfg.optim
        assert cfg.task == "finetune"
        assert (o.base_lr, o.layer_decay, o.warmup_epochs, o.epochs) == (lr, ld, warm, epochs), name
        assert cfg.finetune.repeated_aug == ra and cfg.data.flip is flip and cfg.model.drop_path == dp
        assert o.name == "adamw" and o.betas == [0.9, 0.999] and o.weight_decay == 0.05
        assert o.global_batch == 128
        assert (cfg.data.test_clips, cfg.data.test_crops) == TEST_VIEWS[ds]
        assert cfg.data.sampling == ("segment" if ds == "ssv2" else "dense")


def test_global_batch_gives_accumulation():
    cfg = load_config("pretrain_ssv2")          # 512 with 32 per process
    assert accum_steps_for(cfg, 16) == 1 and accum_steps_for(cfg, 8) == 2 and accum_steps_for(cfg, 1) == 16
    with pytest.raises(ConfigError, match="global_batch"):
        accum_steps_for(cfg, 3)
    cfg = load_config("tiny", ["optim.accum_steps=3"])
    assert accum_steps_for(cfg, 2) == 3


def test_overrides_and_errors():
    cfg = load_config("tiny", ["mask.strategy=tube", "mask.ratio=0.9", "optim.betas=[0.9,0.98]"])
    assert cfg.mask.strategy == "tube" and cfg.mask.ratio == 0.9 and cfg.optim.betas == [0.9, 0.98]
    with pytest.raises(ConfigError, match="unknown config key"):
        load_config("tiny", ["optim.lrr=1"])
    with pytest.raises(ConfigError, match="no preset"):
        load_config("no_such_preset")
    with pytest.raises(ConfigError, match="num_frames"):
        validate_config(load_config("tiny", ["data.num_frames=16"]))


def test_tiny_presets_are_small_and_keep_an_8x8_mask_grid():
    for name in ("tiny", "tiny_finetune", "tiny_linprobe"):
        cfg = load_config(name)
        m = cfg.model
        assert m.arch == "vit_tiny" and m.depth == 4 and cfg.data.size <= 112 and m.pool == "time"
        assert (m.img_size // m.patch, m.num_frames // m.tubelet) == (8, 4)   # masks legible, 256 tokens
        assert cfg.optim.batch_size == 8 and not cfg.data.flip
    assert load_config("tiny_finetune").task == "finetune"
    assert load_config("tiny_linprobe").task == "linprobe"


def test_cli_configs_print_config_and_errors(capsys):
    from mgm.cli import main

    assert main(["configs"]) == 0
    out = capsys.readouterr().out
    assert "pretrain_ssv2" in out and "tiny_finetune" in out and "Table 5" in out
    assert main(["finetune", "--config", "finetune_ssv2", "--print-config", "optim.epochs=7",
                 "--resume", "auto"]) == 0
    out = capsys.readouterr().out
    assert "epochs: 7" in out and "resume: auto" in out and "task: finetune" in out
    assert main(["pretrain", "--config", "tiny", "optim.lrr=1"]) == 2
    assert "unknown config key" in capsys.readouterr().err
    # options may also follow the overrides
    assert main(["finetune", "optim.epochs=5", "--config", "tiny_finetune", "--out", "/x/y",
                 "model.init=ckpt", "--print-config"]) == 0
    out = capsys.readouterr().out
    assert "epochs: 5" in out and "out_dir: /x/y" in out and "init: ckpt" in out
    assert main(["pretrain", "--config", "tiny"]) == 2                 # no data.train
    assert "data.train" in capsys.readouterr().err
