"""Every GPU check of the project in one run, written to one JSON file.

    bash benchmarks/gpu_check.sh [OUT.json]        # default: gpu_check.json; work files in gpu_check_work/

Needs ``pip install -e .`` with a CUDA build of torch. The parts run in this order, each with a
time cap, all together within BUDGET_S (8 minutes; the last part gets what is left):

  env       torch, CUDA, device name, CPU count
  synth     ``mgm data synth``: 480 videos, 224x224, 48 frames (CPU; 12 without CUDA)
  model     ``mgm bench model --device cuda --compile off``: ViT-B 16x224^2 bf16, the largest batch
            that fits and 32, mask ratio 0.75 and 0.9: step time, clips/s, TFLOP/s, MFU, SDPA kernel
  masks     ``mgm bench masks --device cuda --json``: whether CUDA masks equal CPU masks (recorded
            as printed, with the exit status)
  nccl      ``torchrun --nproc_per_node 1 benchmarks/nccl_check.py``: an NCCL process group of one,
            all_reduce and barrier
  pretrain  ``torchrun --nproc_per_node 1 -m mgm pretrain --config pretrain_k400``: 40 bf16 steps on the synthetic
            set with N loader workers; from its log: clips/s the step computes vs clips/s delivered
            and the share of step time spent waiting for data
  pretrain_compiled  the same run with ``run.compile=true`` (and the inductor variables below)
  loader    ``mgm bench loader`` on the same set with N workers: clips/s the loader sustains
  compile   ``mgm bench model --device cuda --compile on``: the same table with torch.compile

Without CUDA the CPU parts run, each CUDA part prints one line ``gpu_check: <part>: skipped, CUDA
is not available`` and the exit status is 1 (2 if a part that ran failed).
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

BUDGET_S = 480
CAPS = {"synth": 45, "model": 150, "masks": 40, "nccl": 40, "pretrain": 110, "pretrain_compiled": 200, "loader": 60,
        "compile": 240}
CUDA_PARTS = ("model", "masks", "nccl", "pretrain", "pretrain_compiled", "compile")
# Inductor's loop reindexing and coalescing analysis off: with them, torch 2.11's inductor stops on an
# assertion in get_pw_red_splits while compiling the pretrainer (pytorch/pytorch#197077; the same
# check without these two variables is recorded in docs/models.md)
INDUCTOR_ENV = {"TORCHINDUCTOR_LOOP_REINDEXING_AFTER_FUSION": "0", "TORCHINDUCTOR_COALESCE_TILING_ANALYSIS": "0"}


def main(argv: list[str]) -> int:
    only = None
    if argv[:1] == ["--parts"]:                    # e.g. --parts synth,pretrain: rerun some parts only
        only, argv = set(argv[1].split(",")), argv[2:]
    out_path = Path(argv[0] if argv else "gpu_check.json")
    work = out_path.with_name(out_path.stem + "_work")
    work.mkdir(parents=True, exist_ok=True)
    t_start = time.monotonic()
    env = _env()
    cuda = env.get("cuda_available", False)
    workers = max(1, min(16, (os.cpu_count() or 2) - 1))
    report = {"check": "gpu", "budget_s": BUDGET_S, "env": env, "loader_workers": workers, "parts": {}}
    synth = work / "synth"

    def left() -> float:
        return BUDGET_S - (time.monotonic() - t_start)

    def part(name, cmd, json_file=None, json_stdout=False, extra_env=None):
        if only is not None and name not in only:
            return None
        if name in CUDA_PARTS and not cuda:
            print(f"gpu_check: {name}: skipped, CUDA is not available", flush=True)
            report["parts"][name] = {"skipped": "CUDA is not available"}
            return None
        cap = min(CAPS[name], max(5.0, left()))
        print(f"gpu_check: {name} (cap {cap:.0f} s): {' '.join(map(str, cmd))}", flush=True)
        t0 = time.monotonic()
        e = dict(os.environ, PYTHONUNBUFFERED="1", **(extra_env or {}))
        try:
            p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=cap, env=e)
            rc, out, err = p.returncode, p.stdout, p.stderr
        except subprocess.TimeoutExpired as ex:
            rc, out, err = "timeout", _text(ex.stdout), _text(ex.stderr)
        res = {"cmd": [str(c) for c in cmd], "rc": rc, "seconds": round(time.monotonic() - t0, 1),
               "stdout_tail": out[-3000:], "stderr_tail": err[-2000:]}
        if extra_env:
            res["extra_env"] = extra_env
        if json_file is not None and Path(json_file).exists():
            res["result"] = json.loads(Path(json_file).read_text())
        elif json_stdout:
            res["result"] = _last_json(out)
        report["parts"][name] = res
        print(f"gpu_check: {name}: exit {rc} after {res['seconds']} s", flush=True)
        return res

    mgm = [sys.executable, "-m", "mgm"]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1"]
    # without CUDA only the CPU parts run: a smaller set, so that they fit a small machine too
    # 480 videos: 12 steps of 32 per epoch, so that the pretrain part's data wait is the steady
    # state's and not the epoch boundary's (with 96, two steps per epoch, it was 78 %: the first
    # batch of every epoch waited for one worker to decode all of its 32 clips)
    videos, clips, batch = (480, 256, 32) if cuda else (12, 24, 8)
    part("synth", mgm + ["data", "synth", synth, "--videos", str(videos), "--size", "224", "--frames", "48",
                         "--workers", str(workers), "--json"])
    part("model", mgm + ["bench", "model", "--device", "cuda", "--compile", "off", "--rounds", "5",
                         "--warmup", "2", "--json", work / "model.json"], json_file=work / "model.json")
    part("masks", mgm + ["bench", "masks", "--device", "cuda", "--json"], json_stdout=True)
    part("nccl", torchrun + [Path(__file__).with_name("nccl_check.py")], json_stdout=True)
    # the paper's K400 preset (ViT-B, 2x16x16 tubelets, decoder depth 4): until 2026-12-04 this part
    # used the tiny preset with ViT-B's width, i.e. depth 4 and 8-px patches (6272 tokens a clip),
    # and its 162 ms per step was not comparable with the model part's 55 ms
    for name, extra, extra_env in (("pretrain", [], None), ("pretrain_compiled", ["run.compile=true"], INDUCTOR_ENV)):
        run_dir = work / f"{name}_run"
        res = part(name, torchrun + ["-m", "mgm", "pretrain", "--config", "pretrain_k400",
                                     f"data.train={synth / 'train.txt'}", f"data.num_workers={workers}",
                                     "optim.batch_size=32", "optim.global_batch=32", "run.max_steps=40",
                                     "run.log_every=1", "run.device=cuda", "run.precision=bf16",
                                     f"run.out_dir={run_dir}", "run.tensorboard=false", *extra],
                   extra_env=extra_env)
        if res is not None:
            res.update(_pretrain_log(run_dir / "log.jsonl"))
    part("loader", mgm + ["bench", "loader", synth / "train.txt", "--workers", str(workers), "--batch-size", str(batch),
                          "--clips", str(clips), "--rounds", "1", "--size", "224", "--json"], json_stdout=True)
    # batch 32 only: each new shape is another compilation
    part("compile", mgm + ["bench", "model", "--device", "cuda", "--compile", "on", "--batch", "32",
                           "--rounds", "5", "--warmup", "2", "--json", work / "compile.json"],
         json_file=work / "compile.json", extra_env=INDUCTOR_ENV)
    report["loader_vs_step"] = _loader_vs_step(report["parts"])
    report["seconds"] = round(time.monotonic() - t_start, 1)
    out_path.write_text(json.dumps(_finite(report), indent=2, default=str))
    print(f"gpu_check: wrote {out_path} ({report['seconds']} s)")
    failed = [n for n, r in report["parts"].items() if "rc" in r and r["rc"] != 0]
    if failed:
        print(f"gpu_check: failed parts: {', '.join(failed)}")
        return 2
    return 0 if cuda else 1


def _finite(x):
    """NaN / inf -> None, so that the file is strict JSON."""
    if isinstance(x, float):
        return x if x == x and abs(x) != float("inf") else None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_finite(v) for v in x]
    return x


def _text(x) -> str:
    return x.decode(errors="replace") if isinstance(x, bytes) else (x or "")


def _last_json(text: str):
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                continue
    return None


def _env() -> dict:
    env = {"python": sys.version.split()[0], "cpu_count": os.cpu_count()}
    try:
        import torch

        env.update(torch=torch.__version__, torch_cuda=torch.version.cuda, cuda_available=torch.cuda.is_available())
        if torch.cuda.is_available():
            env.update(device=torch.cuda.get_device_name(0), capability=list(torch.cuda.get_device_capability(0)),
                       memory_gib=round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1))
    except Exception as e:  # torch missing or broken: every part will say so
        env["torch_error"] = f"{e.__class__.__name__}: {e}"
    return env


def _pretrain_log(path: Path) -> dict:
    """Per-step clips/s from the run's log: computed (excluding the wait for data) vs delivered."""
    if not path.exists():
        return {}
    recs = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    steps = [r for r in recs if r.get("kind") == "train" and "step_time" in r][2:]  # first steps warm up
    if not steps:
        return {"log_records": len(recs)}
    clips = [r["clips_per_s"] * r["step_time"] for r in steps]
    compute = [c / max(r["step_time"] - r["data_time"], 1e-9) for c, r in zip(clips, steps)]
    # medians describe the steady state; the overall rate and the longest wait show what the
    # medians hide (until 2026-12-04 every epoch start waited 10-14 s at batch 128)
    return {"steps_logged": len(steps) + 2, "loss_last": steps[-1].get("loss"),
            "clips_per_s_delivered": round(statistics.median(r["clips_per_s"] for r in steps), 1),
            "clips_per_s_compute": round(statistics.median(compute), 1),
            "data_wait_fraction": round(statistics.median(r["data_time"] / r["step_time"] for r in steps), 3),
            "clips_per_s_overall": round(sum(clips) / sum(r["step_time"] for r in steps), 1),
            "data_wait_max_s": round(max(r["data_time"] for r in steps), 3)}


def _loader_vs_step(parts: dict) -> dict:
    out = {}
    loader = (parts.get("loader") or {}).get("result") or {}
    if loader.get("clips_per_s"):
        out["loader_clips_per_s"] = loader["clips_per_s"]
    rows = ((parts.get("model") or {}).get("result") or {}).get("rows", [])
    step = [r for r in rows if r.get("ratio") == 0.75 and "clips_per_s" in r]
    if step:
        out["step_clips_per_s"] = {f"batch {r['batch']}": round(r["clips_per_s"], 1) for r in step}
    for name in ("pretrain", "pretrain_compiled"):
        pre = parts.get(name) or {}
        for k in ("clips_per_s_compute", "clips_per_s_delivered", "data_wait_fraction", "clips_per_s_overall",
                  "data_wait_max_s"):
            if k in pre:
                out[f"{name}_{k}"] = pre[k]
    if "loader_clips_per_s" in out and step:
        best = max(r["clips_per_s"] for r in step)
        out["loader_over_step"] = {s: round(v / best, 3) for s, v in out["loader_clips_per_s"].items()}
    return out


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
