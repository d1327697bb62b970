"""Launching: the ``torchrun`` options for one node of a (multi-node) run, without torch.

``torchrun_args(LaunchConfig(...))`` gives the ``torchrun`` options for one node of a run
(``--standalone`` on one node; ``--nnodes`` + a c10d or static rendezvous on several). The
stage scripts read it before they decide whether to re-launch themselves under torchrun, so it
imports no torch; the processes that torchrun starts join their group through
``hrseg.runtime.distributed``.
"""

from __future__ import annotations

from dataclasses import dataclass

from hrseg.errors import HrsegError


class DistributedError(HrsegError):
    """A device or launcher setting that cannot work."""


RDZV_BACKENDS = ("c10d", "static")


@dataclass(frozen=True)
class LaunchConfig:
    """How many processes on how many nodes, and where they meet.

    ``nnodes == 1``: ``torchrun --standalone`` (a local rendezvous on a free port).
    ``nnodes > 1``: every node starts the same command with its own ``node_rank``;
    ``rdzv_endpoint`` (``host:port``, reachable from every node, the host normally the first
    node) is where they meet. ``rdzv_backend="c10d"`` (the default, elastic): the launcher on
    the endpoint's host serves the rendezvous store, node ranks are assigned by the
    rendezvous (torchrun ignores ``--node-rank`` there, so it is not passed) and
    ``max_restarts`` restarts all workers after a failure. ``"static"``: the node rank is
    used as given, the endpoint is ``MASTER_ADDR:MASTER_PORT`` of rank 0's node.
    """

    nproc_per_node: int = 1
    nnodes: int = 1
    node_rank: int = 0
    rdzv_endpoint: str | None = None
    rdzv_id: str = "hrseg"
    rdzv_backend: str = "c10d"
    max_restarts: int = 0

    @property
    def world_size(self) -> int:
        return self.nproc_per_node * self.nnodes

    @property
    def needs_launcher(self) -> bool:
        """True when the run needs torchrun (more than one process in all)."""
        return self.world_size > 1


def _endpoint(value: str | None) -> tuple[str, int]:
    host, sep, port = (value or "").rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise DistributedError(f"rendezvous endpoint {value!r} must be host:port (e.g. node0:29400), needed with more than one node")
    return host, int(port)


def torchrun_args(cfg: LaunchConfig) -> list[str]:
    """The ``torchrun`` options (before the script or ``-m module``) for this node."""
    for name in ("nproc_per_node", "nnodes"):
        if getattr(cfg, name) < 1:
            raise DistributedError(f"{name} must be at least 1, got {getattr(cfg, name)}")
    if not 0 <= cfg.node_rank < cfg.nnodes:
        raise DistributedError(f"node_rank {cfg.node_rank} must be between 0 and nnodes - 1 = {cfg.nnodes - 1}")
    if cfg.max_restarts < 0:
        raise DistributedError(f"max_restarts must be 0 or more, got {cfg.max_restarts}")
    args = [f"--nproc-per-node={cfg.nproc_per_node}"]
    if cfg.max_restarts:
        args.append(f"--max-restarts={cfg.max_restarts}")
    if cfg.nnodes == 1:
        return ["--standalone", *args]
    if cfg.rdzv_backend not in RDZV_BACKENDS:
        raise DistributedError(f"unknown rendezvous backend {cfg.rdzv_backend!r}; expected one of {', '.join(RDZV_BACKENDS)}")
    host, port = _endpoint(cfg.rdzv_endpoint)
    args.insert(0, f"--nnodes={cfg.nnodes}")
    if cfg.rdzv_backend == "static":
        return [*args, f"--node-rank={cfg.node_rank}", f"--master-addr={host}", f"--master-port={port}"]
    return [*args, "--rdzv-backend=c10d", f"--rdzv-endpoint={host}:{port}", f"--rdzv-id={cfg.rdzv_id}"]
