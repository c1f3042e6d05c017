"""Write a copy of a pretraining checkpoint whose encoder tensors get Gaussian noise of EPS times
each tensor's RMS (seeded), to ask how steep fine-tuning is around an encoder (docs/results.md).
Usage: python benchmarks/perturb_encoder.py SRC.safetensors DST.safetensors EPS SEED"""
import shutil, sys
import torch
from safetensors import safe_open
from safetensors.torch import save_file
src, dst, eps, seed = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
g = torch.Generator().manual_seed(seed)
with safe_open(src, "pt") as f:
    meta = f.metadata(); sd = {k: f.get_tensor(k) for k in f.keys()}
num = den = 0.0
for k in sorted(sd):
    t = sd[k]
    if k.startswith("encoder") and t.is_floating_point():
        noise = torch.randn(t.shape, generator=g) * t.pow(2).mean().sqrt() * eps
        num += noise.pow(2).sum().item(); den += t.pow(2).sum().item()
        sd[k] = t + noise
save_file(sd, dst, metadata=meta)
shutil.copy(src.replace(".safetensors", ".json"), dst.replace(".safetensors", ".json"))
print(f"{dst}: encoder relative L2 change {100 * (num / den) ** 0.5:.2f} %")
