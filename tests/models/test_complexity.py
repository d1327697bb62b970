"""``hrseg.models.complexity``: the two-probe extrapolation equals a direct count."""

from __future__ import annotations

import pytest
import torch

from hrseg.models import build_model
from hrseg.models.complexity import count, count_model


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
