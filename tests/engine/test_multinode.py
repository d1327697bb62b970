"""Two torchrun launchers as two "nodes" on this machine give the weights of one node with two
processes (gloo, CPU, one process per node)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest
import torch

from hrseg.models.checkpoint import read_checkpoint
from hrseg.runtime.launch import DistributedError, LaunchConfig, torchrun_args


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _weights(path):
    return read_checkpoint(path)["model"]


@pytest.mark.parametrize("backend", ["c10d", "static"])
def test_two_nodes_train_the_weights_of_one_node_with_two_processes(backend, tiny_recipe_file, tmp_path, run_env):
    recipe = tiny_recipe_file(**{"train.epochs": 1, "train.batch_size": 1})
    train = ["-m", "hrseg.cli", "train", str(recipe), "--no-track", "--device", "cpu", "--out"]
    torchrun = [sys.executable, "-m", "torch.distributed.run"]
    endpoint = f"127.0.0.1:{_free_port()}"
    nodes = [LaunchConfig(nnodes=2, node_rank=r, rdzv_endpoint=endpoint, rdzv_id=f"test-{backend}", rdzv_backend=backend) for r in (1, 0)]
    commands = [[*torchrun, *torchrun_args(node), *train, str(tmp_path / "nodes")] for node in nodes]  # one --out: a shared filesystem
    commands.append([*torchrun, *torchrun_args(LaunchConfig(nproc_per_node=2)), *train, str(tmp_path / "one")])
    runs = [subprocess.Popen(c, env=run_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for c in commands]
    errors = [run.communicate(timeout=420)[1] for run in runs]
    for run, err in zip(runs, errors):
        assert run.returncode == 0, err[-3000:]

    two_nodes, one_node = tmp_path / "nodes" / "final.pth", tmp_path / "one" / "final.pth"
    assert [json.loads((tmp_path / d / "metrics.json").read_text())["world_size"] for d in ("nodes", "one")] == [2, 2]
    a, b = _weights(two_nodes), _weights(one_node)
    assert a.keys() == b.keys()
    assert [k for k in a if not torch.equal(a[k], b[k])] == []  # same ranks, data and sums: bit-identical


def test_torchrun_arguments():
    assert torchrun_args(LaunchConfig()) == ["--standalone", "--nproc-per-node=1"]
    assert torchrun_args(LaunchConfig(nproc_per_node=4, max_restarts=3)) == ["--standalone", "--nproc-per-node=4", "--max-restarts=3"]
    c10d = LaunchConfig(nproc_per_node=4, nnodes=2, node_rank=1, rdzv_endpoint="node0:29400", rdzv_id="cs")
    assert torchrun_args(c10d) == ["--nnodes=2", "--nproc-per-node=4", "--rdzv-backend=c10d", "--rdzv-endpoint=node0:29400", "--rdzv-id=cs"]
    static = LaunchConfig(nnodes=2, node_rank=1, rdzv_endpoint="10.0.0.1:29500", rdzv_backend="static")
    assert torchrun_args(static) == ["--nnodes=2", "--nproc-per-node=1", "--node-rank=1", "--master-addr=10.0.0.1", "--master-port=29500"]
    assert c10d.world_size == 8 and c10d.needs_launcher and not LaunchConfig().needs_launcher


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        (LaunchConfig(nnodes=2), r"endpoint None must be host:port"),
        (LaunchConfig(nnodes=2, rdzv_endpoint="node0"), r"endpoint 'node0' must be host:port"),
        (LaunchConfig(nnodes=2, rdzv_endpoint="node0:99999"), r"must be host:port"),
        (LaunchConfig(nnodes=2, node_rank=2, rdzv_endpoint="node0:1"), r"node_rank 2 must be between 0 and nnodes - 1 = 1"),
        (LaunchConfig(nproc_per_node=0), r"nproc_per_node must be at least 1"),
        (LaunchConfig(nnodes=2, rdzv_endpoint="node0:1", rdzv_backend="etcd"), r"unknown rendezvous backend 'etcd'"),
    ],
)
def test_bad_launch_settings_are_clear_errors(cfg, message):
    with pytest.raises(DistributedError, match=message):
        torchrun_args(cfg)
