"""Every user-facing command answers representative bad input with one line naming the file or
key and the reason, and exit code 2 — never a traceback."""
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file

from data_fixtures import broken_files

RAND = "rand.safetensors"


class RunsCode:
    def __reduce__(self):
        return (print, ("this must never run",))


@pytest.fixture(scope="module")
def bad(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad_input")
    (d / "text.mp4").write_text("this is not a video\n" * 20)
    (d / RAND).write_bytes(bytes(range(256)) * 12)
    (d / "a_file").write_text("x")
    (d / "notes.pth").write_text("not a checkpoint\n" * 8)
    (d / "broken.yaml").write_text("model:\n  depth: [4\n")
    (d / "broken.json").write_text("{videos: 1")
    (d / "hf").mkdir()
    (d / "hf" / "config.json").write_text("{model_type: videomae")
    save_file({"w": torch.zeros(1)}, str(d / "hf" / "model.safetensors"))
    torch.save({"model": RunsCode()}, d / "unsafe.pth")
    files = broken_files(d / "broken", d / "text.mp4")
    (d / "all_bad.txt").write_text("".join(f"{files[k]} 0\n" for k in ("empty", "random", "text", "missing")))
    return d


TINY = ["model.num_frames=8", "data.num_frames=8", "model.img_size=64", "data.size=64", "run.tensorboard=false"]

# command -> (argv, what the one line must say)
CASES = {
    "pretrain": (["pretrain", "--config", "tiny", "data.train=LIST", "mask.strategy=mgmm"],
                 "mask.strategy='mgmm' is not one of random, tube, block, smm, smm-sparse, mgm, mgm-sparse"),
    "pretrain-bad-data": (["pretrain", "--config", "tiny", "data.train={d}/all_bad.txt", *TINY,
                           "data.num_workers=1", "optim.batch_size=2", "run.out_dir={d}/run_bad"],
                          "no readable video stands in for index"),
    "finetune": (["finetune", "--config", "tiny_finetune", "data.train={d}/no_such_list.txt"],
                 "{d}/no_such_list.txt: no such file or folder"),
    "linprobe": (["linprobe", "--config", "tiny_linprobe", "model.arch=vit_tinyy"],
                 "model.arch='vit_tinyy' is not one of vit_tiny, vit_small"),
    "linprobe-init": (["linprobe", "--config", "tiny_linprobe", "model.init={d}/notes.pth",
                       "data.train={d}/all_bad.txt", "run.out_dir={d}/lp"],
                      "{d}/notes.pth: not a PyTorch checkpoint (neither a zip archive nor a pickle)"),
    "eval": (["eval", "--config", "tiny_finetune", "model.init={d}/" + RAND, "run.out_dir={d}/ev"],
             "{d}/rand.safetensors: not a readable safetensors file"),
    "export-hf": (["export", "{d}/hf", "--to", "mgm", "{d}/out.safetensors"],
                  "{d}/hf/config.json: not valid JSON (Expecting property name"),
    "configs": (["configs", "{d}/broken.yaml"], "{d}/broken.yaml: not valid YAML (expected ',' or ']', but got"),
    "saliency": (["saliency", "{d}/all_bad.txt", "--boxes", "{d}/broken.json"],
                 "{d}/broken.json: not valid JSON (Expecting property name"),
    "data check": (["data", "check", "{d}/no_such_list.txt"], "{d}/no_such_list.txt: no such file or folder"),
    "data transcode": (["data", "transcode", "{d}/no_such_list.txt", "{d}/tc"],
                       "{d}/no_such_list.txt: no such file or folder"),
    "data synth": (["data", "synth", "{d}/s", "--videos", "0"], "need --videos >= 1"),
    "data synth-option": (["data", "synth", "{d}/s", "--num-videos", "3"],   # with synth's usage, not mgm's
                          "mgm data synth: error: unrecognized arguments: --num-videos 3"),
    "pretrain-option": (["pretrain", "--config", "tiny", "--bogus"], "mgm pretrain: error: unrecognized arguments: --bogus"),
    "export": (["export", "{d}/unsafe.pth", "--to", "hf", "{d}/hf"], "{d}/unsafe.pth: refusing to unpickle it"),
    "motion": (["motion", "{d}/text.mp4"], "{d}/text.mp4: not a readable video container"),
    "masks": (["masks", "{d}/broken/empty.mp4"], "{d}/broken/empty.mp4: empty file"),
    "demo": (["demo", "--quick", "--out", "{d}/a_file"], "{d}/a_file: not a directory"),
    "study": (["study", "--out", "{d}/st", "--draws", "0"], "--draws must be at least 1, got 0"),
    "study-labels": (["study", "--out", "{d}/st", "--labels", "4", "0"],
                     "--labels must be at least 1 clip per class, got 4 0"),
}


@pytest.mark.parametrize("argv,expected", CASES.values(), ids=CASES.keys())
def test_bad_input_gives_one_line_and_exit_2(bad, argv, expected):
    argv = [a.replace("{d}", str(bad)) for a in argv]
    r = subprocess.run([sys.executable, "-m", "mgm", *argv], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "OMP_NUM_THREADS": "1"}, cwd=bad)
    assert r.returncode == 2, r.stderr[-3000:]
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    # the error is the last line, and one line (a training run may have printed progress first)
    errors = [line for line in r.stderr.splitlines() if ": error: " in line]
    assert len(errors) == 1 and r.stderr.endswith(errors[0] + "\n"), r.stderr[-3000:]
    command = argv[:2] if argv[0] in ("data", "bench") else argv[:1]      # the errors name the subcommand
    assert errors[0].startswith(f"mgm {' '.join(command)}: error: "), errors[0]
    assert expected.replace("{d}", str(bad)) in errors[0], errors[0]


def test_preemption_is_exit_75_with_one_line(monkeypatch, capsys):
    """The CLI side of a pre-empted run (the engine side: tests/test_engine_resume.py)."""
    import mgm.engine.pretrain
    from mgm.cli import main
    from mgm.engine.preemption import TrainingInterrupted

    def interrupted(cfg):
        raise TrainingInterrupted("SIGTERM: stopped after step 7 (checkpoint runs/x/checkpoints/step_00000007); "
                                  "continue with --resume auto", 7, "runs/x/checkpoints/step_00000007")

    monkeypatch.setattr(mgm.engine.pretrain, "run_pretrain", interrupted)
    assert main(["pretrain", "--config", "tiny", "data.train=x.txt"]) == 75
    assert capsys.readouterr().err == ("mgm pretrain: interrupted by SIGTERM: stopped after step 7 (checkpoint "
                                       "runs/x/checkpoints/step_00000007); continue with --resume auto\n")
