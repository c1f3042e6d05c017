"""`mgm bench model`: FLOP accounting, batch search, SDPA kernel and peak lookup, CLI."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mgm.cli import main
from mgm.models import build_pretrainer
from mgm.masking import make_masks
from mgm.models.bench import largest_batch, model_flops, peak_tflops, sdpa_kernel


@pytest.mark.parametrize("arch,size,frames,ratio", [("vit_tiny", 64, 4, 0.75), ("vit_small", 96, 8, 0.9)])
def test_model_flops_linear_layers_match_what_autograd_runs(arch, size, frames, ratio):
    """The matmuls torch's FLOP counter sees in forward + backward are exactly the analytic count
    minus attention (n^2 terms) and the tubelet embedding (a convolution)."""
    from torch.utils.flop_counter import FlopCounterMode

    m = build_pretrainer(arch, num_frames=frames, img_size=size, decoder_depth=2)
    mask = make_masks("tube", m.spec.grid, ratio, batch_size=2, generator=torch.Generator().manual_seed(0)).flatten(1)
    with FlopCounterMode(display=False) as fc:
        loss, _ = m(torch.randn(2, 3, frames, size, size), mask)
        loss.backward()
    linear = sum(v for k, v in fc.get_flop_counts()["Global"].items() if "mm" in str(k))
    s, nv, N = m.spec, int((~mask[0]).sum()), m.spec.num_patches
    attn = s.depth * 4 * nv * nv * s.embed_dim + s.decoder_depth * 4 * N * N * s.decoder_dim
    embed = 2 * nv * s.embed_dim * s.patch_dim
    assert model_flops(s, nv, 2) - 3 * 2 * (attn + embed) == linear


def test_largest_batch_search():
    calls = []

    def fits_200(b):
        calls.append(b)
        return b <= 200

    b = largest_batch(fits_200)
    assert 176 <= b <= 200 and b % 8 == 0 and len(calls) < 12
    assert 88 <= largest_batch(lambda b: True, limit=100) <= 100
    assert largest_batch(lambda b: b <= 3) == 2
    assert largest_batch(lambda b: False) == 0


def test_sdpa_kernel_and_peak_lookup():
    assert sdpa_kernel(["aten::linear", "aten::_scaled_dot_product_flash_attention"]) == "flash"
    assert sdpa_kernel(["aten::_scaled_dot_product_flash_attention_for_cpu"]) == "flash (CPU)"
    assert sdpa_kernel(["aten::_scaled_dot_product_efficient_attention"]) == "mem_efficient"
    assert sdpa_kernel(["aten::_scaled_dot_product_cudnn_attention"]) == "cudnn"
    assert sdpa_kernel(["aten::scaled_dot_product_attention", "aten::bmm", "aten::softmax"]) == "math"
    assert peak_tflops("NVIDIA H200", "bf16") == peak_tflops("NVIDIA H100 80GB HBM3", "bf16") == 989.0
    assert peak_tflops("NVIDIA H100 PCIe", "bf16") == 756.0
    assert peak_tflops("NVIDIA A100-SXM4-80GB", "fp16") == 312.0
    assert peak_tflops("NVIDIA H100 80GB HBM3", "fp32") == 0.0 and peak_tflops("Some GPU", "bf16") == 0.0


def test_bench_model_cpu_json(tmp_path, capsys):
    out = tmp_path / "model.json"
    assert main(["bench", "model", "--archs", "vit_tiny", "--sizes", "64", "--frames", "4", "--rounds", "1",
                 "--warmup", "0", "--threads", "1", "--peak-tflops", "1", "--json", str(out)]) == 0
    d = json.loads(out.read_text())
    assert [r["ratio"] for r in d["rows"]] == [0.75, 0.9]
    for r in d["rows"]:
        assert r["ms_per_step"] > 0 and r["tflops"] > 0 and r["mfu"] == pytest.approx(r["tflops"])
        assert r["sdpa"] not in ("", "none seen") and r["activations_mib"] > 0
    assert d["rows"][0]["gflop_per_step"] > d["rows"][1]["gflop_per_step"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message without CUDA")
def test_bench_model_cuda_without_cuda_is_one_clear_line(capsys):
    assert main(["bench", "model", "--device", "cuda"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "CUDA is not available" in err[0]


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA behaviour")
def test_gpu_check_without_cuda_runs_the_cpu_parts(tmp_path):
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.sh"
    out = tmp_path / "gpu.json"
    p = subprocess.run(["bash", str(script), str(out)], capture_output=True, text=True, timeout=600,
                       env={**os.environ, "PYTHON": sys.executable})
    assert p.returncode == 1, p.stdout + p.stderr
    skipped = [x for x in p.stdout.splitlines() if "skipped, CUDA is not available" in x]
    assert len(skipped) == 6
    d = json.loads(out.read_text())
    assert d["parts"]["synth"]["rc"] == 0 and d["parts"]["loader"]["rc"] == 0
    assert d["parts"]["loader"]["result"]["clips_per_s"]["mgm"] > 0
    cuda_parts = ("model", "masks", "nccl", "pretrain", "pretrain_compiled", "compile")
    assert all(d["parts"][k] == {"skipped": "CUDA is not available"} for k in cuda_parts)
