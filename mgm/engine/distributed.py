"""Process groups for runs launched by ``torchrun`` (one node or many, ``env://`` init).

A plain ``python``/``mgm`` launch is a world of one and creates no process group. Under
torchrun (``WORLD_SIZE``/``RANK``/``LOCAL_RANK``/``MASTER_ADDR``/``MASTER_PORT`` in the
environment) the backend is NCCL on GPU and gloo on CPU.
"""
from __future__ import annotations

import functools
import gc
import os
import traceback
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: str = ""

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def pick_device(pref: str = "auto", local_rank: int = 0) -> torch.device:
    if pref == "cpu":
        return torch.device("cpu")
    if pref.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"run.device={pref} but CUDA is not available")
        return torch.device(pref if ":" in pref else f"cuda:{local_rank}")
    return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")


def init_distributed(device_pref: str = "auto") -> DistInfo:
    """Initialise from the torchrun environment (or return a world of one)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(device_pref, local_rank)
    if world <= 1:
        return DistInfo(0, 1, 0, device, "")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, init_method="env://")
    return DistInfo(rank, world, local_rank, device, backend)


def is_dist() -> bool:
    return dist.is_available() and dist.is_initialized()


def barrier() -> None:
    if is_dist():
        dist.barrier()


def releases_process_group(run):
    """Decorator of the ``run_*`` entry points: when ``run`` returns or raises, free what it left
    and destroy the process group while the interpreter is whole.

    A DDP wrapper sits in reference cycles (its hooks refer to it) and holds the gloo/NCCL group,
    so it outlives ``destroy_process_group`` until the cyclic collector runs. Left to interpreter
    shutdown, the group's destructor runs with Python half torn down: a 2-process CPU test run
    once died with SIGABRT ("terminate called without an active exception") after finishing.
    So: drop the locals of the run's frames (also those a raised exception's traceback keeps; the
    traceback itself still prints), collect, then destroy the group.
    """
    @functools.wraps(run)
    def wrapper(*args, **kwargs):
        try:
            return run(*args, **kwargs)
        except BaseException as e:
            traceback.clear_frames(e.__traceback__)
            raise
        finally:
            gc.collect()
            if is_dist():
                dist.destroy_process_group()
    return wrapper


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    if is_dist():
        t = t.clone()
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def all_reduce_mean(t: torch.Tensor) -> torch.Tensor:
    if is_dist():
        return all_reduce_sum(t) / dist.get_world_size()
    return t


def any_flag(flag: bool, device: torch.device) -> bool:
    """True when ``flag`` is true on any rank (every rank must call it)."""
    if not is_dist():
        return bool(flag)
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def all_gather_object(obj) -> list:
    """Every rank's ``obj``, in rank order (a list of one without a process group)."""
    if not is_dist():
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj, src: int = 0):
    if not is_dist():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]
