"""Data-parallel training under torchrun (``torchrun --nproc-per-node N apotflow train ...``).

The GPU trainer (sw/fasttrain.py) reads the world from ``current()``; with one process (no process
group) every function here is a no-op and training is exactly the single-process code. With N ranks:

- the global batch stays ``cfg.batch_size``; each rank trains on ``batch_size / N`` images of every
  batch (``per_rank_batch`` refuses a batch that does not divide). All ranks draw the same epoch
  permutation and augmentation parameters from the same generator; rank r takes the r-th slice of every
  global batch (``rank_share``), so the union over ranks is exactly the single-process batch;
- gradients: one flat buffer, all-reduced and averaged right after backward (``average_gradients``),
  inside the CUDA graph of the step (NCCL collectives can be captured; not yet run on GPUs, see
  docs/training.md) or eagerly (CPU, gloo);
- BatchNorm: synchronised (``sync_batchnorm``): batch statistics over the global batch, as in the
  single-process recipe. Per-rank statistics over ``batch_size / N`` images would change the recipe
  (noisier statistics, at N = 8 over 16 images) and let the running statistics drift apart per rank;
- what is computed once per phase or epoch (GM pruning masks, calibrated APoT clipping thresholds) is
  computed on every rank and then broadcast from rank 0 (``broadcast_masks``, ``broadcast_alphas``):
  identical on every rank by construction, whatever the float rounding of each rank;
- rank 0 writes the checkpoint and the results; the checkpoint holds nothing rank-specific, so a run
  resumes on any number of ranks (rank 0 reads it and broadcasts it, ``broadcast_object``).
"""

from __future__ import annotations

import contextlib
import datetime
import os
import types
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn

# rank 0 alone runs the integer evaluation at the end (minutes on 10,000 images) while the other ranks
# wait at a barrier: the default NCCL timeout (10 min) would be too short
TIMEOUT = datetime.timedelta(minutes=90)


@dataclass(frozen=True)
class World:
    """This process's place among the data-parallel ranks (size 1: a plain single-process run)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.size > 1


SINGLE = World()


def from_env() -> World:
    """The world torchrun describes in RANK / WORLD_SIZE / LOCAL_RANK (size 1 without them)."""
    try:
        size = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise ValueError("WORLD_SIZE, RANK and LOCAL_RANK must be integers (set by torchrun)") from None
    if size < 1 or not 0 <= rank < size:
        raise ValueError(f"rank {rank} of world size {size}: not a valid torchrun environment")
    return World(rank, size, local)


def current() -> World:
    """The initialised process group's world, or the single-process world."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return SINGLE
    return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", dist.get_rank())))


def init(world: World) -> bool:
    """Start the process group of `world` (NCCL with one GPU per local rank if CUDA is there, else gloo).
    Returns whether it started one (the caller then ends it with ``dist.destroy_process_group()``)."""
    if not world.active or dist.is_initialized():
        return False
    if torch.cuda.is_available():
        if world.local_rank >= torch.cuda.device_count():
            raise ValueError(f"local rank {world.local_rank} but only {torch.cuda.device_count()} GPU(s)")
        torch.cuda.set_device(world.local_rank)
        dist.init_process_group("nccl", rank=world.rank, world_size=world.size, timeout=TIMEOUT,
                                device_id=torch.device("cuda", world.local_rank))
    else:
        dist.init_process_group("gloo", rank=world.rank, world_size=world.size, timeout=TIMEOUT)
    return True


def device(world: World) -> torch.device:
    if not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", world.local_rank) if world.active else torch.device("cuda")


def per_rank_batch(batch: int, size: int) -> int:
    if batch % size:
        raise ValueError(f"batch size {batch} does not divide among {size} ranks (the global batch is split evenly)")
    return batch // size


def rank_share(perm: Tensor, steps: int, batch: int, world: World) -> Tensor:
    """Rank r's indices for an epoch: the r-th of `size` equal slices of each of `steps` global batches of
    ``perm`` (in order), concatenated."""
    b = batch // world.size
    return perm[:steps * batch].view(steps, world.size, b)[:, world.rank].reshape(-1)


# ----------------------------------------------------------------------------- collectives
def barrier(world: World) -> None:
    if world.active:
        dist.barrier()


def average_gradients(params: list[nn.Parameter], world: World) -> None:
    """All-reduce the gradients of `params` as ONE flat buffer and divide by the world size (capturable in
    a CUDA graph with NCCL). Params without a gradient (the same on every rank) are left out."""
    if not world.active:
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat.mul_(1.0 / world.size)
    torch._foreach_copy_(grads, [v.view(g.shape) for v, g in zip(flat.split([g.numel() for g in grads]), grads)])


def mean_(t: Tensor, world: World) -> Tensor:
    """In place: the mean of `t` over the ranks."""
    if world.active:
        dist.all_reduce(t)
        t.mul_(1.0 / world.size)
    return t


def broadcast_(tensors: list[Tensor], world: World) -> None:
    """In place: every rank gets rank 0's values (bool tensors travel as uint8: gloo has no bool)."""
    if not world.active:
        return
    with torch.no_grad():
        for t in tensors:
            if t.dtype == torch.bool:
                u = t.to(torch.uint8)
                dist.broadcast(u, 0)
                t.copy_(u.bool())
            else:
                dist.broadcast(t, 0)


def broadcast_object(obj, world: World):
    """Rank 0's picklable object on every rank."""
    if not world.active:
        return obj
    box = [obj if world.main else None]
    dist.broadcast_object_list(box, 0, device=device(world) if dist.get_backend() == "nccl" else None)
    return box[0]


def broadcast_state(model: nn.Module, world: World) -> None:
    """Every parameter and buffer of `model` from rank 0 (the start of training, as DDP does)."""
    broadcast_(list(model.state_dict().values()), world)


def broadcast_masks(model: nn.Module, world: World) -> None:
    """Rank 0's GM pruning masks, stored and enforced on every rank (sw.prune.set_masks)."""
    if not world.active or not hasattr(model, "prune_groups"):
        return
    from .prune import get_masks, set_masks

    masks = get_masks(model)
    broadcast_(masks, world)
    set_masks(model, masks)


def broadcast_alphas(model: nn.Module, world: World) -> None:
    """Rank 0's APoT clipping thresholds (every quantizer's alpha)."""
    from .quant import _QuantizerBase

    broadcast_([m.alpha.data for m in model.modules() if isinstance(m, _QuantizerBase)], world)


def same_on_every_rank(model: nn.Module, world: World) -> bool:
    """Whether every parameter and buffer of `model` is bit for bit rank 0's (a check, for tests)."""
    if not world.active:
        return True
    ok = torch.ones((), dtype=torch.int64, device=next(model.parameters()).device)
    for t in model.state_dict().values():
        ref = t.detach().clone()
        broadcast_([ref], world)
        ok &= torch.equal(ref, t.detach())
    dist.all_reduce(ok, op=dist.ReduceOp.MIN)
    return bool(ok)


# ----------------------------------------------------------------------------- BatchNorm over the global batch
class _AllReduceSum(torch.autograd.Function):
    """Sum over the ranks; its gradient is the sum over the ranks of the gradients."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        x = x.clone()
        dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx, g: Tensor) -> Tensor:
        g = g.contiguous().clone()
        dist.all_reduce(g)
        return g


def _momentum(bn: nn.modules.batchnorm._BatchNorm) -> float:
    """_BatchNorm.forward's exponential average factor (momentum None: the cumulative average)."""
    bn.num_batches_tracked.add_(1)
    return 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum


def _sync_bn_allreduce(bn: nn.modules.batchnorm._BatchNorm, x: Tensor, world: World) -> Tensor:
    """Training-mode BatchNorm over the global batch (any device, gloo included): one all-reduce of the
    per-channel sums of (x - c) and (x - c)^2 about c = the running mean (the same on every rank; it keeps
    the variance E[d^2] - E[d]^2 free of cancellation). Equal per-rank batches."""
    c = x.shape[1]
    shape = (1, c) + (1,) * (x.dim() - 2)
    xf = x.float()
    dims = [0] + list(range(2, x.dim()))
    n = xf.numel() // c * world.size
    shift = bn.running_mean.detach().view(shape)
    d = xf - shift
    s = _AllReduceSum.apply(torch.cat([d.sum(dims), (d * d).sum(dims)]))
    m1, m2 = s[:c] / n, s[c:] / n
    var = m2 - m1 * m1
    mean = bn.running_mean.detach() + m1
    with torch.no_grad():
        f = _momentum(bn)
        bn.running_mean.lerp_(mean.detach(), f)
        bn.running_var.lerp_(var.detach() * (n / (n - 1)), f)
    y = (xf - mean.view(shape)) * torch.rsqrt(var + bn.eps).view(shape)
    if bn.affine:
        y = y * bn.weight.view(shape) + bn.bias.view(shape)
    return y.to(x.dtype)


def _sync_bn_cuda(bn: nn.modules.batchnorm._BatchNorm, x: Tensor, world: World) -> Tensor:
    """The same on the GPU with PyTorch's fused SyncBatchNorm kernels (they are written to be captured in
    a CUDA graph), as nn.SyncBatchNorm.forward calls them."""
    from torch.nn.modules._functions import SyncBatchNorm

    f = _momentum(bn)
    return SyncBatchNorm.apply(x, bn.weight, bn.bias, bn.running_mean, bn.running_var, bn.eps, f,
                               dist.group.WORLD, world.size)


@contextlib.contextmanager
def sync_batchnorm(model: nn.Module, world: World):
    """While inside: every BatchNorm of `model` in training mode normalises with the statistics of the
    global batch (all ranks) and updates its running statistics with them, the same on every rank.
    Evaluation mode is untouched. A no-op for a single process."""
    if not world.active:
        yield
        return
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]

    @torch.compiler.disable  # collectives: run eagerly (captured as they are by the CUDA graph)
    def forward(self, x: Tensor) -> Tensor:
        if not self.training or not self.track_running_stats:
            return type(self).forward(self, x)
        if x.is_cuda:
            return _sync_bn_cuda(self, x, world)
        return _sync_bn_allreduce(self, x, world)

    for m in bns:
        m.__dict__["forward"] = types.MethodType(forward, m)
    try:
        yield
    finally:
        for m in bns:
            m.__dict__.pop("forward", None)

