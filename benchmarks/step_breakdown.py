"""Where a pretraining step's time goes on one GPU, piece by piece (no video decoding).

    python benchmarks/step_breakdown.py [--batch 32] [--workers 15] [--steps 12] [--json OUT]

`mgm bench model` times the model's forward + backward on a clip already on the GPU; a real
`mgm pretrain` step also moves the batch from the DataLoader to the GPU, computes the gradient
norm, steps AdamW and reads the loss. This adds those pieces one at a time, ViT-B 16x224^2 bf16,
mask ratio 0.75, the engine's decoder depth 4, and reports the median ms per step of each:

  model          forward + backward, clip on the GPU (what `mgm bench model` times)
  +optimizer     + zero_grad, clip_grad_norm_ (read on the host), AdamW step, loss.item()
  +h2d_pinned    + the float32 batch copied from pinned host memory (non_blocking)
  +h2d_pageable  + the same copy from ordinary (pageable) host memory
  +loader_f32    + a DataLoader (N workers, pin_memory) that hands over ready float32 clips,
                   as the project's loader does after decoding (3x16x224x224 float32 = 9.6 MB each)
  +loader_u8     + the same DataLoader handing over uint8 clips, normalised on the GPU (4x fewer bytes)

The differences between neighbouring rows are the costs of each piece.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from torch.utils.data import DataLoader, Dataset

from mgm.data.transforms import normalize
from mgm.models import build_pretrainer


class ReadyClips(Dataset):
    """Clips already decoded: what a worker hands over after its decode + transforms."""

    def __init__(self, n, frames, size, dtype):
        self.n, self.shape, self.dtype = n, (3, frames, size, size), dtype

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        if self.dtype == torch.uint8:
            return torch.randint(0, 256, self.shape, generator=g, dtype=torch.uint8)
        return torch.randn(self.shape, generator=g)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--workers", type=int, default=15)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--arch", default="vit_base")
    ap.add_argument("--json")
    a = ap.parse_args()
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cuda = dev.type == "cuda"
    torch.manual_seed(0)
    model = build_pretrainer(a.arch, num_frames=a.frames, img_size=a.size, decoder_depth=4).to(dev).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05)
    t, h, w = model.spec.grid
    keep = torch.zeros(a.batch, t, h * w, dtype=torch.bool)
    keep[:, :, : h * w // 4] = True                       # 25 % visible, the same count per clip
    mask = (~keep).reshape(a.batch, -1).to(dev)
    shape = (a.batch, 3, a.frames, a.size, a.size)
    on_dev = torch.randn(shape, device=dev)
    pageable = torch.randn(shape)
    pinned = pageable.pin_memory() if cuda else pageable
    sync = torch.cuda.synchronize if cuda else (lambda: None)

    def train(video, full):
        with torch.autocast(dev.type, dtype=torch.bfloat16):
            loss, _ = model(video, mask)
        loss.backward()
        if full:
            gn = float(torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0))
            opt.step()
            float(loss.detach())
            assert gn == gn
        model.zero_grad(set_to_none=True)

    def timed(name, get_video, full=True, loader=None):
        times, it = [], iter(loader) if loader is not None else None
        for i in range(a.steps + 2):
            sync()
            t0 = time.perf_counter()
            if it is not None:
                video = next(it).to(dev, non_blocking=True)
                if video.dtype == torch.uint8:
                    video = normalize(video)
            else:
                video = get_video()
            train(video, full)
            sync()
            if i >= 2:                                    # two warm-up steps
                times.append(time.perf_counter() - t0)
        ms = 1000 * statistics.median(times)
        print(f"  {name:<14} {ms:8.1f} ms/step  {a.batch / ms * 1000:8.1f} clips/s", flush=True)
        return round(ms, 2)

    def loader(dtype):
        return DataLoader(ReadyClips(a.batch * (a.steps + 2), a.frames, a.size, dtype), batch_size=a.batch,
                          num_workers=a.workers, pin_memory=cuda, prefetch_factor=2 if a.workers else None,
                          persistent_workers=False)

    name = torch.cuda.get_device_name(dev) if cuda else "CPU"
    print(f"step breakdown: {a.arch} {a.frames}x{a.size}^2 batch {a.batch}, bf16, {name}, {a.workers} workers")
    res = {"device": name, "torch": torch.__version__, "batch": a.batch, "workers": a.workers, "ms_per_step": {}}
    r = res["ms_per_step"]
    r["model"] = timed("model", lambda: on_dev, full=False)
    r["+optimizer"] = timed("+optimizer", lambda: on_dev)
    r["+h2d_pinned"] = timed("+h2d_pinned", lambda: pinned.to(dev, non_blocking=True))
    r["+h2d_pageable"] = timed("+h2d_pageable", lambda: pageable.to(dev))
    r["+loader_f32"] = timed("+loader_f32", None, loader=loader(torch.float32))
    r["+loader_u8"] = timed("+loader_u8", None, loader=loader(torch.uint8))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=2)


if __name__ == "__main__":
    main()
