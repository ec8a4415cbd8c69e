"""Data-parallel training under torchrun (DistributedDataParallel).

Choices, stated once:
* `batch_size` is the global batch: each of N ranks trains on batch_size / N images per step,
  and the learning rate means what it means for one process with that batch.
* BatchNorm statistics are synchronised across ranks (SyncBatchNorm2d below), so N ranks
  compute what one process computes with the same global batch, up to float rounding.
* Rank 0 alone logs and writes checkpoints, metrics and figures; evaluation sums over ranks.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands among the ranks of a run (one rank when not under torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(use_cuda: bool) -> DistributedContext:
    """Join the process group torchrun describes in the environment: nccl on GPUs, gloo on CPU."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistributedContext()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistributedContext(dist.get_rank(), world_size, local_rank)


@contextlib.contextmanager
def main_rank_first(context: DistributedContext) -> Iterator[None]:
    """Rank 0 runs the block first (a download, a cache it writes); the other ranks wait for
    it, then run the block and find its work done, instead of all writing one folder at once.
    If rank 0 fails inside, torchrun stops the waiting ranks."""
    if context.enabled and not context.is_main:
        dist.barrier()
    yield
    if context.enabled and context.is_main:
        dist.barrier()


def close_distributed() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


class _SumOverRanks(torch.autograd.Function):
    """All-reduce (sum) whose gradient is the all-reduced gradient: the global batch's."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor, group) -> torch.Tensor:
        ctx.group = group
        tensor = tensor.clone()
        dist.all_reduce(tensor, group=group)
        return tensor

    @staticmethod
    def backward(ctx, gradient: torch.Tensor):
        gradient = gradient.clone()
        dist.all_reduce(gradient, group=ctx.group)
        return gradient, None


class SyncBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics cover the global batch of all ranks.

    torch's nn.SyncBatchNorm runs on GPUs only; this one uses differentiable all-reduces, so it
    runs on CPU (gloo) too and its gradients are those of the global batch. Its all-reduces go
    through their own process group: on DDP's group they could interleave with DDP's gradient
    all-reduces, which run asynchronously during the backward pass, and mix up the tensors.
    """

    process_group = None  # set by convert_batchnorm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        # torch.full fills on the device; torch.tensor would copy from the host and wait.
        local_count = torch.full((1,), x.numel() / x.shape[1], device=x.device, dtype=x.dtype)
        sums = _SumOverRanks.apply(torch.cat([x.sum((0, 2, 3)), local_count]), self.process_group)
        count = sums[-1]
        mean = sums[:-1] / count
        centred = x - mean[None, :, None, None]
        var = _SumOverRanks.apply((centred * centred).sum((0, 2, 3)), self.process_group) / count
        with torch.no_grad():
            self.num_batches_tracked += 1
            self.running_mean.lerp_(mean.detach(), self.momentum)
            self.running_var.lerp_(var.detach() * count / (count - 1), self.momentum)
        scale = self.weight / torch.sqrt(var + self.eps)
        return centred * scale[None, :, None, None] + self.bias[None, :, None, None]


def convert_batchnorm(module: nn.Module, process_group=None) -> nn.Module:
    """Replace every BatchNorm2d in `module` by SyncBatchNorm2d, keeping parameters and stats.
    Every rank must call it (it creates the process group the statistics travel on)."""
    if process_group is None:
        process_group = dist.new_group()
    for name, child in module.named_children():
        if type(child) is nn.BatchNorm2d:
            synced = SyncBatchNorm2d(child.num_features, child.eps, child.momentum)
            synced.load_state_dict(child.state_dict())
            synced.process_group = process_group
            setattr(module, name, synced.to(child.weight.device))
        else:
            convert_batchnorm(child, process_group)
    return module


def wrap_for_training(network: nn.Module, context: DistributedContext,
                      device: torch.device) -> nn.Module:
    """The module to train: `network` itself, or a DDP wrapper around its synced-BN form."""
    if not context.enabled:
        return network
    convert_batchnorm(network)
    device_ids = [device.index if device.index is not None else context.local_rank] \
        if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(network, device_ids=device_ids)


def sum_over_ranks(values: torch.Tensor, context: DistributedContext) -> torch.Tensor:
    """Element-wise sum of a tensor over all ranks (itself when there is one rank)."""
    if context.enabled:
        values = values.clone()
        dist.all_reduce(values)
    return values
