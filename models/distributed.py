"""Training across devices: ``station train`` under ``torchrun`` with DistributedDataParallel.

One device needs none of this: without torchrun's environment (``WORLD_SIZE`` unset or 1)
:func:`setup` returns a single-process :class:`Dist` and every helper here does nothing.
Under ``torchrun --nproc-per-node N .venv/bin/station train ...`` each of the N processes
runs the same training:

- :func:`setup` joins the process group (NCCL on CUDA, one GPU per process, ``cuda:LOCAL_RANK``;
  gloo on the CPU, the CPU threads shared out among the processes) and quiets the logs of
  every rank but 0 to errors;
- :class:`ShardedSampler`: every rank draws the *same* epoch (the ``ItemSampler`` is seeded
  alike on all of them, in the main process of each, so resume stays exact) and keeps every
  N-th item from its rank on, the epoch padded to a multiple of N so that all ranks take the
  same number of steps (a rank with one step more would wait for the others for ever);
- :func:`wrap`: the network in ``DistributedDataParallel`` (gradients averaged over ranks:
  ``batch_size`` is per process, the effective batch N times it);
- :func:`agree`: a decision (stop now) taken by rank 0 reaches every rank in the same step;
- :func:`share`: rank 0's result (the operating point it chose) is every rank's.

Rank 0 alone validates, writes checkpoints, history, plots and the summary, and chooses the
operating point at the end, the same way a single-device run does.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import structlog
import torch
import torch.distributed as tdist
from torch import nn
from torch.utils.data import Sampler

from config.errors import ModelError

log = structlog.get_logger(__name__)
T = TypeVar("T")
S = TypeVar("S", bound=Sampler[Any])

#: How long a collective waits for a slow rank (rank 0 validating, choosing the point) [min].
TIMEOUT_MIN = 120


@dataclass(frozen=True)
class Dist:
    """This process's place in the run: rank, world size, local rank (its GPU)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def active(self) -> bool:
        """More than one process."""
        return self.world > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that writes."""
        return self.rank == 0


def setup(device_name: str, threads: int | None = None) -> Dist:
    """Join torchrun's process group when there is one; single process otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return Dist()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    cuda = device_name != "cpu" and torch.cuda.is_available()
    if device_name.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError(f"device {device_name!r}: no CUDA device here; use --device cpu "
                         "(gloo) or run on a GPU machine")
    if cuda:
        if local >= torch.cuda.device_count():
            raise ModelError(
                f"torchrun started process {local} on this machine but it has "
                f"{torch.cuda.device_count()} CUDA device(s); give --nproc-per-node at most that")
        torch.cuda.set_device(local)
    elif not threads:  # the CPU's threads shared among the processes
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(
            os.environ.get("LOCAL_WORLD_SIZE", world))))
    backend = "nccl" if cuda else "gloo"
    if not tdist.is_initialized():
        tdist.init_process_group(backend, timeout=timedelta(minutes=TIMEOUT_MIN))
    if rank != 0:
        import logging

        structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    log.info("train.distributed", world=world, backend=backend)
    return Dist(rank, world, local, backend)


def device_of(dist: Dist, default: torch.device) -> torch.device:
    """The device of this rank: its GPU under NCCL, else ``default``."""
    if dist.backend == "nccl":
        return torch.device("cuda", dist.local_rank)
    if dist.active:
        return torch.device("cpu")
    return default


def shard(items: list[T], rank: int, world: int) -> list[T]:
    """``rank``'s share of ``items``: every ``world``-th item from ``rank`` on, after padding
    ``items`` (repeating from its start) to a multiple of ``world``; all shares equally long."""
    if world <= 1 or not items:
        return list(items)
    size = -(-len(items) // world) * world
    padded = (items * (-(-size // len(items))))[:size]
    return padded[rank::world]


class ShardedSampler(Sampler[T]):
    """This rank's share of each epoch another sampler draws (same draw on every rank)."""

    def __init__(self, sampler: Sampler[T], dist: Dist) -> None:
        self.sampler, self.dist = sampler, dist

    def __iter__(self) -> Iterator[T]:
        return iter(shard(list(self.sampler), self.dist.rank, self.dist.world))

    def __len__(self) -> int:
        n = len(self.sampler)  # type: ignore[arg-type]
        return -(-n // self.dist.world)


def sampler_for(sampler: S, dist: Dist) -> S | ShardedSampler[Any]:
    """``sampler`` itself on one process, else its shard."""
    return ShardedSampler(sampler, dist) if dist.active else sampler


def wrap(model: nn.Module, dist: Dist, find_unused: bool = False) -> nn.Module:
    """``model`` in DistributedDataParallel on several processes; itself on one."""
    if not dist.active:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [dist.local_rank] if dist.backend == "nccl" else None
    return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=find_unused)


def agree(flag: bool, dist: Dist, device: torch.device) -> bool:
    """True on every rank when it is true on any (rank 0 decides when to stop)."""
    if not dist.active:
        return flag
    t = torch.tensor([1 if flag else 0], device=device)
    tdist.all_reduce(t, op=tdist.ReduceOp.MAX)
    return bool(t.item())


def share(value: Any, dist: Dist) -> Any:
    """Rank 0's ``value`` on every rank (pickled through the process group)."""
    if not dist.active:
        return value
    box = [value if dist.is_main else None]
    tdist.broadcast_object_list(box, src=0)
    return box[0]


def cleanup(dist: Dist) -> None:
    """Leave the process group (every rank, also after an error)."""
    if dist.active and tdist.is_initialized():
        tdist.destroy_process_group()
