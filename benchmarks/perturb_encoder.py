"""Write a copy of a pretraining checkpoint whose encoder tensors get Gaussian noise of EPS times
each tensor's RMS (seeded), to ask how steep fine-tuning is around an encoder (docs/results.md).
Usage: python benchmarks/perturb_encoder.py SRC.safetensors DST.safetensors EPS SEED"""
import shutil
import sys
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

src, dst, eps, seed = Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
torch.set_num_threads(1)                  # reductions in one order: the same bytes on every call
g = torch.Generator().manual_seed(seed)
with safe_open(str(src), "pt") as f:
    meta = f.metadata()
    sd = {k: f.get_tensor(k) for k in f.keys()}
noise_sq = weight_sq = 0.0
for k in sorted(sd):                      # sorted: the same noise per tensor for the same seed
    t = sd[k]
    if k.startswith("encoder") and t.is_floating_point():
        noise = torch.randn(t.shape, generator=g) * t.pow(2).mean().sqrt() * eps
        noise_sq += noise.pow(2).sum().item()
        weight_sq += t.pow(2).sum().item()
        sd[k] = t + noise
save_file(sd, str(dst), metadata=meta)
shutil.copy(src.with_suffix(".json"), dst.with_suffix(".json"))    # the sidecar: config, spec
print(f"{dst}: encoder relative L2 change {100 * (noise_sq / weight_sq) ** 0.5:.2f} %")
