"""torch.distributed plumbing for torchrun (env RANK / WORLD_SIZE / LOCAL_RANK).

Data parallelism is done by averaging gradients with one coalesced ``all_reduce`` per
model after each backward, rather than wrapping modules in ``DistributedDataParallel``:
the critic step runs several forward passes (real, fake, interpolates) and a double
backward for the gradient penalty, and the generator step runs the critics again with
their parameters frozen. DDP's reducer hooks, in-place buffer broadcasts (spectral-norm
``u`` vectors, BN stats) and ``autograd.grad`` do not mix reliably; an explicit
all-reduce is exactly equivalent for the parameters and has no such corner cases.
BatchNorm statistics stay per-rank (as with DDP without SyncBatchNorm); rank 0's copy is
what gets checkpointed and exported.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def init_from_env(device_type: str) -> DistInfo:
    """Join the process group when launched by torchrun; a no-op for a plain run."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device_type == "cuda" else "gloo")
    return DistInfo(rank, world, local)


def shutdown(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def broadcast_module(module: nn.Module, info: DistInfo) -> None:
    """Start every rank from rank 0's parameters and buffers."""
    if info.enabled:
        for t in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(t.data, 0)


def average_gradients(optimizer: torch.optim.Optimizer, info: DistInfo) -> None:
    """Average, across ranks, the gradients of every parameter ``optimizer`` steps: whatever
    learns (heads that only training uses included) stays identical on every rank."""
    if not info.enabled:
        return
    grads = [p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
    if not grads:
        return
    flat = _flatten_dense_tensors(grads)
    dist.all_reduce(flat)
    flat /= info.world
    for g, synced in zip(grads, _unflatten_dense_tensors(flat, grads)):
        g.copy_(synced)


def any_rank(flag: bool, info: DistInfo, device: torch.device) -> bool:
    """True on every rank when ``flag`` is true on any: all ranks stop at the same step."""
    if not info.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t)
    return bool(t.item() > 0)
