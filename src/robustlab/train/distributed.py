"""Distributed data parallel set-up from the environment torchrun provides."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def dist_from_env() -> DistInfo:
    """Read RANK / WORLD_SIZE / LOCAL_RANK as set by `torchrun`; single process otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    return DistInfo(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))


def init_distributed(info: DistInfo, device: torch.device) -> None:
    """NCCL on CUDA, gloo on CPU; a no-op for one process or an existing group."""
    if info.enabled and not dist.is_initialized():
        if device.type == "cuda":  # NCCL collectives (all_gather_object too) use the current device
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")


def end_distributed() -> None:
    """Wait for every rank, then tear the process group down. Without it a rank that finishes
    first exits while gloo still holds its connections, and its threads can abort the process
    ("terminate called without an active exception") before the others are done."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def all_reduce_sum(values: torch.Tensor, info: DistInfo) -> torch.Tensor:
    if info.enabled and dist.is_initialized():
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def barrier(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.barrier()
