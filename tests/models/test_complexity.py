"""``hrseg.models.complexity``: the two-probe extrapolation equals a direct count, and the
shipped table (``hrseg.complexity_table``) equals both."""

from __future__ import annotations

import json

import pytest
import torch

from hrseg.complexity_table import TABLE_FILE, read_table
from hrseg.models import MODELS, build_model
from hrseg.models.complexity import complexity_table, count, count_model, count_named


@pytest.mark.parametrize("backbone, head", [("hrnetv2_w18_small_v1", "ocr"), ("hrnetv2_w18_small_v2", "fcn")])
def test_probe_extrapolation_equals_a_direct_count(backbone, head):
    height, width = 192, 320  # multiples of 32: count() extrapolates from two tiny passes
    fast = count(backbone, head, 7, height, width)
    model = build_model(backbone, head, 7)
    direct = count_model(model, height, width, name=f"{backbone}_{head}")
    assert fast == direct
    assert fast.conv_macs > 0 and (fast.matmul_macs > 0) == (head == "ocr")


def test_other_sizes_are_counted_directly_on_meta():
    c = count("hrnetv2_w18_small_v1", "ocr", 19, 97, 131)
    with torch.device("meta"):
        model = build_model("hrnetv2_w18_small_v1", "ocr", 19)
    assert c == count_model(model, 97, 131, name="hrnetv2_w18_small_v1_ocr")
    assert c.params == sum(p.numel() for p in model.parameters())


def test_the_shipped_table_is_what_torch_counts_now():
    """Every model regenerated with torch at two other class counts than the file was made
    with: equal, so the counts are linear in the classes and the file is current (if this
    fails after a model change: python -m hrseg.models.complexity)."""
    assert complexity_table(class_counts=(7, 171)) == json.loads(TABLE_FILE.read_text(encoding="utf-8"))


def test_table_lookup_equals_a_live_count():
    table = read_table()
    assert table.model_names() == sorted(MODELS)
    for name, k, height, width in [("hrnetv2_w18_small_v1_ocr", 7, 192, 320), ("hrnetv2_w18_small_v2", 171, 1024, 2048)]:
        assert table.lookup(name, k, height, width) == count_named(name, k, height, width)
    assert table.lookup("hrnetv2_w18_small_v2", 19, 64, 64).name == "hrnetv2_w18_small_v2_fcn"  # a bare backbone: FCN
    assert table.lookup("hrnetv2_w18_ocr", 19, 97, 128) is None  # not a multiple of 32: counted live
    assert table.lookup("hrnetv2_w18_ocr", 0, 64, 64) is None and table.lookup("resnet50", 19, 64, 64) is None
