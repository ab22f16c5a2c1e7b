r"""Data-parallel training on ``torch.distributed``, with the MMD of the global batch.

Under ``torchrun`` (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK`` in the environment) K workers
train one GMMN. The objective is exactly the single-process one: with global batches
X (B generated) and Y (M data) split into K equal shards X_r, Y_r,

    L = MMD(X, Y),   X = [X_0; ...; X_{K-1}],   Y = [Y_0; ...; Y_{K-1}].

Worker r generates X_r = G(Z_r) and loads Y_r, all-gathers both, and computes L on the
gathered batches (the full (B+M)^2 Gram matrix, in tiles; see docs/distributed.md). The
gradient reaches G's parameters only through X_r, so:

* :func:`all_gather` is an autograd op whose backward SUMS the upstream gradient over the
  workers and keeps worker r's rows. Every worker computes the same L, so worker r receives
  K * dL/dX_r (each worker's copy of L contributes dL/dX_r once).
* :func:`average_gradients` all-reduces the parameter gradients and divides by K:
  (1/K) sum_r K * (dL/dX_r)(dX_r/dtheta) = sum_r (dL/dX_r)(dX_r/dtheta) = dL/dtheta,
  the single-process gradient. These are DDP's conventions (sum in the gather's backward,
  mean over workers), so the same hooks also give the right gradient for a loss that is
  the mean of per-worker losses.

Randomness: every worker draws the GLOBAL prior batch Z and the global data indices from the
same seeded streams and keeps its own contiguous rows (:func:`shard`). The prior costs B x 10
uniforms per worker, negligible beside the generator. So the workers' noise and data are
disjoint and deterministic, the gathered batches are exactly those of a single process with
the same seed, and the random state is the same on every worker: rank 0's checkpoint holds
all of it, and a run may resume on another number of workers.

Autoencoder stages (GMMN+AE) are not data-parallel: their batch of 100 is too small to split,
so every worker runs them whole, identically (same seed, same batches, no communication).
The GAN and the DBN, CAE and GSN baselines have no data-parallel stage: :func:`check_config`
refuses them under torchrun.
Every stage starts from worker 0's weights (:func:`broadcast_module`), which also removes any
drift from non-deterministic GPU kernels before the code-space GMMN encodes its data.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from gmmn.config import TrainConfig
from gmmn.errors import ConfigError
from gmmn.families import family_of
from gmmn.training.loop import Hooks

log = logging.getLogger(__name__)

T = TypeVar("T")

# torch >= 2.12 renamed the tensor collectives; the old names still work with a warning.
_gather_single = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
_reduce_scatter_single = getattr(dist, "reduce_scatter_single", None) or \
    dist.reduce_scatter_tensor


def env_world(env: Mapping[str, str] | None = None) -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from torchrun's variables; (0, 1, 0) outside it."""
    env = os.environ if env is None else env
    try:
        world = int(env.get("WORLD_SIZE", "1"))
        rank = int(env.get("RANK", "0"))
        local = int(env.get("LOCAL_RANK", str(rank)))
    except ValueError as exc:
        raise ConfigError(f"WORLD_SIZE, RANK and LOCAL_RANK must be integers ({exc}); "
                          f"launch with torchrun") from None
    if world < 1 or not 0 <= rank < world:
        raise ConfigError(f"RANK={rank} is not in [0, WORLD_SIZE={world}); launch with torchrun")
    return rank, world, local


@contextlib.contextmanager
def launch(env: Mapping[str, str] | None = None) -> Iterator[Hooks]:
    """Hooks for this process: data-parallel under torchrun, the identity otherwise.

    Under torchrun (WORLD_SIZE > 1) this initialises the default process group from the
    environment (``MASTER_ADDR``/``MASTER_PORT`` or torchrun's rendezvous): gloo for CPU
    tensors, and NCCL for CUDA tensors when CUDA is present, with the current CUDA device set
    to ``LOCAL_RANK``. The group is destroyed on exit, also after an error.
    """
    rank, world, local = env_world(env)
    if world == 1:
        yield Hooks()
        return
    backend = "gloo"
    if torch.cuda.is_available():
        backend = "cpu:gloo,cuda:nccl"  # each collective goes to its tensors' device
        if local < torch.cuda.device_count():
            torch.cuda.set_device(local)
    dist.init_process_group(backend, rank=rank, world_size=world)
    log.info("worker %d of %d (local rank %d), backend %s", rank, world, local, backend)
    try:
        yield data_parallel_hooks()
    finally:
        dist.destroy_process_group()


def data_parallel_hooks(group: dist.ProcessGroup | None = None) -> Hooks:
    """:class:`gmmn.training.loop.Hooks` over ``group`` (default: the default group)."""
    return Hooks(gather=lambda x: all_gather(x, group),
                 reduce_gradients=lambda params: average_gradients(params, group),
                 shard=lambda x: shard(x, group),
                 broadcast=lambda module: broadcast_module(module, group),
                 main=dist.get_rank(group) == 0,
                 from_main=lambda fn: from_main(fn, group))


def check_config(cfg: TrainConfig, world_size: int, *, local_rank: int = 0) -> None:
    """Refuse settings that cannot run on ``world_size`` workers, before any training."""
    if world_size == 1:
        return
    family_of(cfg).check_world(cfg, world_size)  # its stages say what splits over workers
    if cfg.device.startswith("cuda:"):
        raise ConfigError(f"--device {cfg.device} names one GPU, but each of the "
                          f"{world_size} workers uses GPU LOCAL_RANK; use --device cuda")
    wants_cuda = cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
    if wants_cuda and local_rank >= torch.cuda.device_count():
        raise ConfigError(f"worker with LOCAL_RANK {local_rank} has no GPU (this machine has "
                          f"{torch.cuda.device_count()}); start at most that many workers per "
                          f"machine (--nproc_per_node) or use --device cpu")


def shard(x: torch.Tensor, group: dist.ProcessGroup | None = None) -> torch.Tensor:
    """This worker's rows of a global batch: rows [r B/K, (r+1) B/K) of ``x`` (B, ...)."""
    world, rank = dist.get_world_size(group), dist.get_rank(group)
    if len(x) % world:
        raise ConfigError(f"a batch of {len(x)} does not split evenly over {world} workers; "
                          f"use a multiple of {world}")
    size = len(x) // world
    return x[rank * size:(rank + 1) * size]


class _AllGather(torch.autograd.Function):
    """(b, ...) per worker -> (K b, ...) in rank order; backward: sum over workers, own rows."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, group) -> torch.Tensor:
        ctx.group = group
        world = dist.get_world_size(group)
        out = x.new_empty((world * x.shape[0], *x.shape[1:]))
        _gather_single(out, x.contiguous(), group=group)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        world = dist.get_world_size(ctx.group)
        out = grad.new_empty((grad.shape[0] // world, *grad.shape[1:]))
        _reduce_scatter_single(out, grad.contiguous(), op=dist.ReduceOp.SUM, group=ctx.group)
        return out, None


def all_gather(x: torch.Tensor, group: dist.ProcessGroup | None = None) -> torch.Tensor:
    """Concatenate every worker's ``x`` (equal shapes) along dim 0, in rank order.

    The gradient flows back: worker r receives the sum over workers of the gradient with
    respect to its rows (see the module docstring for why that is K times a shared loss's).
    """
    return _AllGather.apply(x, group)


@torch.no_grad()
def average_gradients(params: list[torch.nn.Parameter],
                      group: dist.ProcessGroup | None = None) -> None:
    """Replace every gradient by its mean over the workers (one all-reduce per dtype/device)."""
    world = dist.get_world_size(group)
    buckets: dict[tuple, list[torch.Tensor]] = {}
    for p in params:
        if p.grad is not None:  # None on one worker is None on all: the same graph everywhere
            buckets.setdefault((p.grad.dtype, p.grad.device), []).append(p.grad)
    for grads in buckets.values():
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM, group=group)
        flat /= world
        torch._foreach_copy_(grads, [v.view_as(g) for v, g in
                                     zip(flat.split([g.numel() for g in grads]), grads,
                                         strict=True)])


@torch.no_grad()
def broadcast_module(module: torch.nn.Module, group: dist.ProcessGroup | None = None) -> None:
    """Copy worker 0's parameters and buffers into every worker's ``module``."""
    src = dist.get_global_rank(group, 0) if group is not None else 0
    for t in module.state_dict().values():
        dist.broadcast(t, src=src, group=group)


def from_main(fn: Callable[[], T], group: dist.ProcessGroup | None = None) -> T:
    """Run ``fn`` on worker 0 only and return its result on every worker.

    If ``fn`` raises, every worker raises the same exception, so a user error (a bad flag, an
    existing run directory) ends all workers with one message instead of leaving the others
    waiting in the next collective. Only worker 0 needs the files ``fn`` reads.
    """
    src = dist.get_global_rank(group, 0) if group is not None else 0
    box: list[Any] = [None]
    if dist.get_rank(group) == 0:
        try:
            box[0] = (True, fn())
        except Exception as exc:  # shipped to the others, re-raised below
            box[0] = (False, exc if _picklable(exc) else RuntimeError(repr(exc)))
    dist.broadcast_object_list(box, src=src, group=group, device=torch.device("cpu"))
    ok, value = box[0]
    if not ok:
        raise value
    return value


def _picklable(obj: object) -> bool:
    try:
        pickle.dumps(obj)
    except Exception:
        return False
    return True
