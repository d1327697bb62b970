"""Process-group set-up from torchrun's environment, rank helpers, rank-0 logging, DDP wrapping.

A plain ``python``/``hrseg`` process is a world of one and never touches ``torch.distributed``.
Under ``torchrun`` (``WORLD_SIZE`` > 1) every process joins the default ``env://`` group:
NCCL when training on CUDA (one GPU per process, ``cuda:$LOCAL_RANK``), gloo on CPU.

BatchNorm: ``SyncBatchNorm`` is used only with CUDA *and* more than one process (the official
code built SyncBN into the model, which broke single-GPU training, and SyncBN cannot run on
CPU). Otherwise every process normalises over its own batch.

Launching (which ``torchrun`` options a run needs) is ``hrseg.runtime.launch``: it needs no torch.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import nn

from hrseg.runtime.launch import DistributedError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    """Where this process runs: rank, world size and its device."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    backend: str | None = None  # "nccl" / "gloo" when a process group is in use
    owns_group: bool = False  # True when init_distributed created the group (and must destroy it)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise DistributedError(f"environment variable {name}={value!r} is not an integer (set by torchrun)") from None


def select_device(requested: str | None, local_rank: int = 0) -> torch.device:
    """``"cpu"``, ``"cuda"`` (this process's GPU = ``cuda:LOCAL_RANK``) or None (CUDA if available)."""
    if requested in (None, "", "auto"):
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cpu":
        return torch.device("cpu")
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DistributedError(f"device {requested!r} requested but CUDA is not available; use --device cpu")
        index = int(requested.split(":", 1)[1]) if ":" in requested else local_rank
        if index >= torch.cuda.device_count():
            raise DistributedError(
                f"process with LOCAL_RANK={local_rank} needs cuda:{index} but only {torch.cuda.device_count()} GPU(s) are visible; "
                "start at most one process per GPU (torchrun --nproc-per-node)"
            )
        return torch.device("cuda", index)
    raise DistributedError(f"unknown device {requested!r}; expected cpu, cuda or auto")


def init_distributed(device: str | None = None, *, timeout_minutes: float = 30.0) -> DistInfo:
    """Read torchrun's ``RANK``/``LOCAL_RANK``/``WORLD_SIZE``; join the process group if > 1."""
    world_size = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    dev = select_device(device, local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if world_size <= 1:
        return DistInfo(rank=0, local_rank=0, world_size=1, device=dev)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    owns = False
    if not dist.is_initialized():
        kwargs = {"device_id": dev} if backend == "nccl" else {}
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(minutes=timeout_minutes), **kwargs)
        owns = True
    else:
        backend = dist.get_backend()
    log.info("process %d/%d (local rank %d) on %s, backend %s", rank, world_size, local_rank, dev, backend)
    return DistInfo(rank=rank, local_rank=local_rank, world_size=world_size, device=dev, backend=backend, owns_group=owns)


def cleanup(info: DistInfo) -> None:
    if info.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.distributed:
        if info.backend == "nccl":
            dist.barrier(device_ids=[info.device.index])
        else:
            dist.barrier()


def all_reduce_sum(tensor: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum ``tensor`` over all processes (in place; returned for convenience)."""
    if info.distributed:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast_object(obj: object, info: DistInfo) -> object:
    """Rank 0's ``obj`` on every process."""
    if not info.distributed:
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=0, device=info.device if info.backend == "nccl" else None)
    return holder[0]


def wrap_model(model: nn.Module, info: DistInfo, *, sync_bn: bool = True) -> nn.Module:
    """``model`` on its device; under DDP converted to SyncBatchNorm (CUDA only) and wrapped.

    Returns the model to call; ``unwrap_model`` of it is the ``model`` passed in."""
    if not info.distributed:
        return model
    if sync_bn and info.device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    elif sync_bn:
        log.info("SyncBatchNorm needs CUDA; on CPU every process normalises over its own batch")
    if info.device.type == "cuda":
        return nn.parallel.DistributedDataParallel(model, device_ids=[info.device.index], output_device=info.device.index)
    return nn.parallel.DistributedDataParallel(model)


def unwrap_model(model: nn.Module) -> nn.Module:
    """The bare model inside a ``DistributedDataParallel`` / ``DataParallel`` wrapper (``model``
    itself when it is not wrapped): the module whose ``state_dict`` keys have no ``module.``
    prefix, and whose attributes (``align_corners``, ``head_name``) are the model's."""
    return model.module if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)) else model


class RankFilter(logging.Filter):
    """Pass every record on rank 0; on other ranks only warnings and errors, prefixed by rank."""

    def __init__(self, rank: int) -> None:
        super().__init__()
        self.rank = rank

    def filter(self, record: logging.LogRecord) -> bool:
        if self.rank == 0:
            return True
        if record.levelno < logging.WARNING:
            return False
        if not getattr(record, "_hrseg_rank_tagged", False):
            record.msg = f"[rank {self.rank}] {record.msg}"
            record._hrseg_rank_tagged = True  # type: ignore[attr-defined]
        return True


@contextlib.contextmanager
def rank_zero_logging(rank: int) -> Iterator[None]:
    """Attach a ``RankFilter`` to the root logger's handlers for the duration of the block."""
    if rank == 0:
        yield
        return
    handlers = list(logging.getLogger().handlers)
    filt = RankFilter(rank)
    for handler in handlers:
        handler.addFilter(filt)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(filt)
