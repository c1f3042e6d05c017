"""Every enumerated config value is checked when the config is validated (before any data is
read), with one line naming the key, the bad value and the choices; the lists are the ones the
code that uses the names accepts."""
import subprocess
import sys

import pytest

from mgm.config import ConfigError, load_config
from mgm.config_checks import CHOICES, validate_config

TYPOS = {"task": "pretrian", "model.arch": "vit_tinyy", "model.attention": "jiont", "model.pool": "max",
         "mask.strategy": "mgmm", "mask.init": "motoin", "data.format": "csv", "data.sampling": "dens",
         "data.motion": "flw", "optim.name": "adam", "run.precision": "fp64", "run.device": "gpu"}


def test_every_enumerated_key_has_a_typo_case():
    assert set(TYPOS) == set(CHOICES) | {"run.device"}


@pytest.mark.parametrize("key", sorted(TYPOS))
def test_a_typo_names_the_key_the_value_and_the_choices(key):
    with pytest.raises(ConfigError) as e:
        validate_config(load_config("tiny", [f"{key}={TYPOS[key]}"]))
    msg = str(e.value)
    assert msg.startswith(f"{key}={TYPOS[key]!r} is not one of ") and "\n" not in msg
    choices = CHOICES.get(key, ("auto", "cpu", "cuda"))
    assert all(str(c) in msg for c in choices)


def test_near_misses_are_suggested_and_good_values_pass():
    with pytest.raises(ConfigError, match=r"did you mean vit_tiny\?"):
        validate_config(load_config("tiny", ["model.arch=vit_tinyy"]))
    with pytest.raises(ConfigError, match=r"did you mean flow\?"):
        validate_config(load_config("tiny", ["data.motion=flw"]))
    for key, choices in CHOICES.items():
        for c in choices:
            if key == "task" or (key == "mask.init" and c == "motion"):
                continue          # mask.init=motion is checked with the strategy's options
            validate_config(load_config("tiny", [f"{key}={c}"]))
    validate_config(load_config("tiny", ["run.device=cuda:1"]))


def test_the_choices_are_what_the_code_accepts():
    from mgm.data.sampling import clip_indices
    from mgm.models.spec import VideoMAESpec
    from mgm.video.decode import MOTION_MODES

    assert CHOICES["data.motion"] == MOTION_MODES          # two copies (mgm.video is PyAV-heavy)
    for s in CHOICES["data.sampling"]:
        assert len(clip_indices(40, 8, 2, s, "train", rng=__import__("numpy").random.default_rng(0))) == 8
    for arch in CHOICES["model.arch"]:
        for att in CHOICES["model.attention"]:
            for pool in CHOICES["model.pool"]:
                VideoMAESpec(arch=arch, attention=att, pool=pool)
    with pytest.raises(ValueError):
        VideoMAESpec(arch="vit_tiny", pool="max")


def test_numbers_in_e_notation_are_numbers():
    # YAML 1.1 reads 1e-3 (no dot) as a string; a float key takes it as the number
    cfg = load_config("tiny", ["optim.base_lr=1e-3", "run.ckpt_every_minutes=1e-9"])
    assert cfg.optim.base_lr == 1e-3 and cfg.run.ckpt_every_minutes == 1e-9
    with pytest.raises(ConfigError, match="optim.base_lr expects a number, got 'fast'"):
        load_config("tiny", ["optim.base_lr=fast"])


def test_config_imports_no_torch_numpy_or_av():
    code = ("import sys, mgm.config, mgm.config_checks; bad = {'torch', 'numpy', 'av', 'cv2'} & set(sys.modules); "
            "print(sorted(bad)); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def test_cli_gives_one_line_and_exit_2_before_reading_data(capsys):
    from mgm.cli import main

    # data.train does not exist: the typo must be reported first, not "every video is bad"
    assert main(["pretrain", "--config", "tiny", "data.train=/no/such/list.txt", "data.motion=flw"]) == 2
    err = capsys.readouterr().err
    assert err == ("mgm pretrain: error: data.motion='flw' is not one of auto, codec, flow, none "
                   "(did you mean flow?)\n")
    assert main(["finetune", "--config", "tiny_finetune", "model.arch=vit_tinyy"]) == 2
    assert capsys.readouterr().err.startswith("mgm finetune: error: model.arch='vit_tinyy' is not one of")
