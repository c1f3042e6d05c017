"""One-process NCCL check, run by ``torchrun --standalone --nproc_per_node 1``: a process group on
the GPU, an all_reduce and a barrier. Prints one JSON line. (``mgm pretrain`` with one process
runs without a process group, so its NCCL path needs this check or two GPUs.)"""
import json
import os
import time

import torch
import torch.distributed as dist

t0 = time.perf_counter()
torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
dist.init_process_group("nccl")
x = torch.full((1 << 20,), float(dist.get_rank() + 1), device="cuda")
dist.all_reduce(x)
dist.barrier()
torch.cuda.synchronize()
ok = bool(torch.all(x == dist.get_world_size() * (dist.get_world_size() + 1) / 2))
print(json.dumps({"backend": dist.get_backend(), "world_size": dist.get_world_size(), "all_reduce_ok": ok,
                  "nccl_version": ".".join(map(str, torch.cuda.nccl.version())), "seconds": round(time.perf_counter() - t0, 2)}))
dist.destroy_process_group()
