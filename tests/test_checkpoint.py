"""Strict checkpoint loading: the four formats, In-Place ABN conversion, and every error path."""

from __future__ import annotations

import os

import pytest
import torch

from hrseg.io import torch_save
from hrseg.models import ModelConfig, build_model, build_model_from_config
from hrseg.models.checkpoint import (
    CheckpointError,
    infer_model_config,
    load_checkpoint,
    make_checkpoint,
    model_config_from_file,
    read_checkpoint,
)

TINY = ModelConfig(backbone="hrnetv2_w18_small_v1", head="ocr", num_classes=4, ocr_mid_channels=16, ocr_key_channels=8)


def _tiny(cfg: ModelConfig = TINY):
    model = build_model_from_config(cfg)
    # give every tensor a distinctive value so that a wrong load cannot pass by accident
    with torch.no_grad():
        for t in model.state_dict().values():
            if t.is_floating_point():
                t.copy_(torch.randn_like(t).abs() + 0.5)
    return model


def _assert_same_state(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def _official_file(model, path, loss_weight=True):
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    if loss_weight:
        state["loss.criterion.weight"] = torch.ones(model.num_classes)
    torch_save(state, path)
    return path


def test_released_segmentation_checkpoint(tmp_path, parity):
    model = build_model("hrnetv2_w18_small_v2", "ocr", 19)
    report = load_checkpoint(model, parity / "w18s2_ocr_k19.pth")
    assert report.kind == "segmentation" and report.bn_format == "standard"
    assert report.dropped == ["loss.criterion.weight"]
    assert len(report.loaded) == 924
    raw = torch.load(parity / "w18s2_ocr_k19.pth", weights_only=True)
    assert torch.equal(model.cls_head.weight, raw["model.cls_head.weight"])


def test_official_resume_file_with_state_dict(tmp_path):
    src = _tiny()
    state = {f"model.{k}": v for k, v in src.state_dict().items()}
    torch_save({"epoch": 3, "best_mIoU": 0.5, "state_dict": state}, tmp_path / "checkpoint.pth.tar")
    dst = build_model_from_config(TINY)
    assert load_checkpoint(dst, tmp_path / "checkpoint.pth.tar").kind == "segmentation"
    _assert_same_state(src, dst)


def test_imagenet_checkpoint_loads_backbone_and_keeps_head(tmp_path):
    src = _tiny()
    state = {k: v for k, v in src.state_dict().items() if not k.startswith(src.head_prefixes)}
    state["incre_modules.0.0.conv1.weight"] = torch.zeros(2, 2, 1, 1)
    state["classifier.weight"] = torch.zeros(1000, 2048)
    state["final_layer.0.weight"] = torch.zeros(2048, 1024, 1, 1)
    path = tmp_path / "hrnetv2_w18_small_v1_imagenet_pretrained.pth"
    torch_save(state, path)
    dst = build_model_from_config(TINY)
    head_before = {k: v.clone() for k, v in dst.state_dict().items() if k.startswith(dst.head_prefixes)}
    report = load_checkpoint(dst, path)
    assert report.kind == "imagenet"
    assert sorted(report.dropped) == ["classifier.weight", "final_layer.0.weight", "incre_modules.0.0.conv1.weight"]
    assert set(report.kept_init) == set(head_before)
    assert "head keeps its initialisation" in report.summary()
    for k, v in dst.state_dict().items():
        expected = head_before[k] if k in head_before else src.state_dict()[k]
        assert torch.equal(v, expected), k


def test_imagenet_checkpoint_missing_backbone_key_is_an_error(tmp_path):
    src = _tiny()
    state = {k: v for k, v in src.state_dict().items() if not k.startswith(src.head_prefixes) and k != "conv2.weight"}
    state["classifier.weight"] = torch.zeros(10, 10)
    torch_save(state, tmp_path / "in.pth")
    with pytest.raises(CheckpointError, match=r"missing from the checkpoint \(1\):\n    conv2.weight"):
        load_checkpoint(build_model_from_config(TINY), tmp_path / "in.pth")


def test_own_checkpoint_round_trip(tmp_path):
    src = _tiny()
    torch_save(make_checkpoint(src, TINY, epoch=2, best_miou=0.25), tmp_path / "best.pth")
    dst = build_model_from_config(TINY)
    assert load_checkpoint(dst, tmp_path / "best.pth").kind == "hrseg"
    _assert_same_state(src, dst)
    cfg, kind = model_config_from_file(tmp_path / "best.pth")
    assert cfg == TINY and kind == "hrseg"


def test_inplace_abn_torch04_conversion(tmp_path):
    """A _torch04 file stores In-Place ABN scales s with |s| + 1e-5 = standard BN weight."""
    torch.manual_seed(3)
    ref = build_model_from_config(TINY).eval()
    with torch.no_grad():  # finite, well-scaled random weights (like the parity fixture's)
        for m in ref.modules():
            if isinstance(m, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(m.weight)
            elif isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
    bn_names = [n for n, m in ref.named_modules() if isinstance(m, torch.nn.BatchNorm2d)]
    state = {}
    for k, v in ref.state_dict().items():
        if k.endswith("num_batches_tracked"):
            continue  # In-Place ABN has no such buffer
        if k.rsplit(".", 1)[0] in bn_names and k.endswith(".weight"):
            sign = torch.where(torch.rand_like(v) < 0.5, -1.0, 1.0)
            v = sign * (v - 1e-5)  # the ABN parameter
        state[f"model.{k}"] = v
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = ref(x)["out"]
    for name, kwargs in [("hrnet_ocr_lip_5648_torch04.pth", {}), ("renamed.pth", {}), ("explicit.pth", {"bn_format": "inplace_abn"})]:
        torch_save(state, tmp_path / name)
        model = build_model_from_config(TINY).eval()
        report = load_checkpoint(model, tmp_path / name, **kwargs)
        assert report.bn_format == "inplace_abn"
        with torch.no_grad():
            assert torch.allclose(model(x)["out"], expected, atol=1e-5, rtol=1e-5)
    # asking for standard BN explicitly keeps the stored values
    model = build_model_from_config(TINY)
    assert load_checkpoint(model, tmp_path / "renamed.pth", bn_format="standard").bn_format == "standard"


def test_missing_unexpected_and_mismatched_keys_are_listed(tmp_path):
    src = _tiny()
    state = {f"model.{k}": v for k, v in src.state_dict().items() if k != "conv1.weight"}
    state["model.extra_head.weight"] = torch.zeros(1)
    _path = tmp_path / "bad.pth"
    torch_save(state, _path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(build_model_from_config(TINY), _path)
    msg = str(info.value)
    assert str(_path) in msg
    assert "missing from the checkpoint (1):\n    conv1.weight" in msg
    assert "unexpected in the checkpoint (1):\n    extra_head.weight" in msg

    other = ModelConfig(**{**TINY.__dict__, "num_classes": 7})
    _official_file(_tiny(other), tmp_path / "k7.pth")
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(build_model_from_config(TINY), tmp_path / "k7.pth")
    msg = str(info.value)
    assert "cls_head.weight: checkpoint (7, 16, 1, 1) vs model (4, 16, 1, 1)" in msg
    assert "looks like hrnetv2_w18_small_v1_ocr with 7 classes" in msg


def test_unreadable_files_name_the_file(tmp_path, parity):
    cases = {
        "missing.pth": None,
        "empty.pth": b"",
        "text.pth": b"this is not a checkpoint\n",
        "truncated.pth": (parity / "w18s2_ocr_k19.pth").read_bytes()[:100_000],
    }
    for name, content in cases.items():
        if content is not None:
            (tmp_path / name).write_bytes(content)
        with pytest.raises(CheckpointError, match=str(tmp_path / name)):
            read_checkpoint(tmp_path / name)
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        read_checkpoint(tmp_path / "truncated.pth")
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint"):
        read_checkpoint(tmp_path / "text.pth")


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("echo this must never run",))


@pytest.mark.parametrize(
    "payload,blocked",
    [(lambda: torch.nn.Linear(2, 2), "torch.nn.modules.linear.Linear"), (_RunsCode, "posix.system" if os.name == "posix" else "nt.system")],
)
def test_pickled_objects_are_refused_as_unsafe_naming_the_global(tmp_path, capfd, payload, blocked):
    torch.save({"model": payload()}, tmp_path / "pickle.pth")
    with pytest.raises(CheckpointError) as info:
        read_checkpoint(tmp_path / "pickle.pth")
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'pickle.pth'}: refused as unsafe: it contains the pickled global {blocked},"), message
    assert "weights_only=False" not in message and "weights_only` set to `False" not in message
    assert "must never run" not in capfd.readouterr().out


def test_infer_model_config_from_official_file(parity):
    cfg, kind = model_config_from_file(parity / "w18s2_ocr_k19.pth")
    assert kind == "segmentation"
    assert (cfg.backbone, cfg.head, cfg.num_classes, cfg.ocr_mid_channels, cfg.ocr_key_channels) == ("hrnetv2_w18_small_v2", "ocr", 19, 512, 256)
    fcn = build_model("hrnetv2_w18_small_v1", "fcn", 6)
    assert infer_model_config(fcn.state_dict()).backbone == "hrnetv2_w18_small_v1"
