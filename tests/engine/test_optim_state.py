"""Optimizer groups, checkpoint RNG state, resume checks and the distributed helpers."""

from __future__ import annotations

import io
import logging
import random

import numpy as np
import pytest
import torch

from hrseg.config import ConfigError
from hrseg.engine.optim import build_optimizer, set_lr
from hrseg.engine.state import ResumeError, check_resumable, recipe_differences, rng_state, set_rng_state
from hrseg.models import build_model
from hrseg.recipe import Recipe, TrainConfig
from hrseg.runtime.distributed import DistributedError, RankFilter, init_distributed, select_device, unwrap_model, wrap_model


@pytest.fixture(scope="module")
def ocr_model():
    return build_model("hrnetv2_w18_small_v1", "ocr", 5, ocr_mid_channels=32, ocr_key_channels=16)


def test_single_group_weight_decay_on_everything(ocr_model):
    opt = build_optimizer(ocr_model, TrainConfig(lr=0.01, weight_decay=5e-4))
    assert len(opt.param_groups) == 1
    group = opt.param_groups[0]
    assert group["weight_decay"] == 5e-4 and group["momentum"] == 0.9 and group["nesterov"] is False
    assert len(group["params"]) == len(list(ocr_model.parameters()))  # BN and biases included


def test_head_group_gets_lr_multiplier(ocr_model):
    cfg = TrainConfig(lr=0.001, weight_decay=1e-4, head_keywords=("cls", "aux", "ocr"), head_lr_mult=10.0)
    opt = build_optimizer(ocr_model, cfg)
    base, head = opt.param_groups
    assert base["lr"] == 0.001 and head["lr"] == pytest.approx(0.01)
    names = {id(p): n for n, p in ocr_model.named_parameters()}
    head_prefixes = {names[id(p)].split(".")[0] for p in head["params"]}
    assert head_prefixes == {"cls_head", "aux_head", "conv3x3_ocr", "ocr_distri_head"}
    assert all(not names[id(p)].startswith(("cls_head", "aux_head", "conv3x3_ocr", "ocr_distri")) for p in base["params"])
    assert head["weight_decay"] == base["weight_decay"] == 1e-4
    set_lr(opt, 0.0005, 10.0)
    assert (base["lr"], head["lr"]) == (0.0005, pytest.approx(0.005))


def test_unknown_head_keyword_is_an_error(ocr_model):
    with pytest.raises(ConfigError, match=r"train\.head_keywords.*last_layer"):
        build_optimizer(ocr_model, TrainConfig(head_keywords=("last_layer",)))


def test_rng_state_survives_weights_only_checkpoint():
    random.seed(3), np.random.seed(3), torch.manual_seed(3)
    buffer = io.BytesIO()
    torch.save({"rng": [rng_state()]}, buffer)
    expected = (random.random(), np.random.rand(), torch.rand(3))
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    buffer.seek(0)
    set_rng_state(torch.load(buffer, weights_only=True)["rng"][0])
    got = (random.random(), np.random.rand(), torch.rand(3))
    assert got[0] == expected[0] and got[1] == expected[1] and torch.equal(got[2], expected[2])


def test_recipe_differences_ignore_harmless_keys():
    a = Recipe().to_dict()
    b = Recipe().to_dict()
    b["train"]["log_every"] = 1
    b["data"]["num_workers"] = 0
    b["eval"]["scales"] = [0.5, 1.0]
    assert recipe_differences(a, b) == []
    b["train"]["lr"] = 0.02
    assert recipe_differences(a, b) == ["train.lr: 0.01 -> 0.02"]


def test_check_resumable_names_the_problem():
    recipe = Recipe().to_dict()
    ckpt = {"position": {}, "optimizer": {}, "world_size": 4, "recipe": recipe}
    with pytest.raises(ResumeError, match="4 process.*this run has 1"):
        check_resumable(ckpt, recipe, 1, "out/checkpoint.pth")
    changed = Recipe().to_dict()
    changed["train"]["epochs"] = 3
    with pytest.raises(ResumeError, match=r"out/checkpoint.pth: the recipe differs.*train\.epochs: 484 -> 3.*--no-resume"):
        check_resumable({**ckpt, "world_size": 1}, changed, 1, "out/checkpoint.pth")
    with pytest.raises(ResumeError, match="not a training checkpoint"):
        check_resumable({"model": {}}, recipe, 1, "out/best.pth")


def test_plain_process_is_a_world_of_one(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    info = init_distributed("cpu")
    assert (info.rank, info.world_size, info.distributed, info.device.type) == (0, 1, False, "cpu")
    model = torch.nn.Linear(2, 2)
    assert wrap_model(model, info) is model and unwrap_model(model) is model


def test_unwrap_model_takes_the_module_out_of_a_wrapper():
    model = torch.nn.Linear(2, 2)
    assert unwrap_model(torch.nn.DataParallel(model)) is model  # DistributedDataParallel: the same attribute, needs a process group


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA message")
def test_cuda_without_gpu_is_a_clear_error():
    with pytest.raises(DistributedError, match="CUDA is not available; use --device cpu"):
        select_device("cuda")
    with pytest.raises(DistributedError, match="unknown device 'tpu'"):
        select_device("tpu")


def test_rank_filter_keeps_warnings_of_other_ranks():
    def record(level):
        return logging.LogRecord("hrseg", level, __file__, 1, "message", None, None)

    assert RankFilter(0).filter(record(logging.INFO))
    assert not RankFilter(1).filter(record(logging.INFO))
    warning = record(logging.WARNING)
    assert RankFilter(1).filter(warning) and warning.getMessage() == "[rank 1] message"
