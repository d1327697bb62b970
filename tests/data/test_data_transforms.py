"""Augmentation and validation sizing: equal to a transcription of the official code for
scripted random draws, plus invariants (label domain, crop size, determinism, LIP swap)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from hrseg.data import EvalTransform, TrainTransform, get_spec, normalize
from hrseg.data.transforms import long_side_size, short_side_size

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


class ScriptedRng:
    """Stands in for numpy's Generator: ``integers`` returns scripted values (range-checked)."""

    def __init__(self, values):
        self.values = list(values)

    def integers(self, low, high=None, size=None, endpoint=False):
        value = self.values.pop(0)
        assert low <= value <= (high if endpoint else high - 1), (value, low, high)
        return value


# --- a transcription of the official (HRNet-OCR) base_dataset / lip / cocostuff code ---------

def official_multi_scale_crop(image, label, base_size, crop_size, k, x, y, ignore=255):
    long_size = int(base_size * (0.5 + k / 10.0) + 0.5)
    h, w = image.shape[:2]
    if h > w:
        new_h, new_w = long_size, int(w * long_size / h + 0.5)
    else:
        new_w, new_h = long_size, int(h * long_size / w + 0.5)
    image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    label = cv2.resize(label, (new_w, new_h), interpolation=cv2.INTER_NEAREST)
    pad_h, pad_w = max(crop_size[0] - new_h, 0), max(crop_size[1] - new_w, 0)
    if pad_h > 0 or pad_w > 0:
        image = cv2.copyMakeBorder(image, 0, pad_h, 0, pad_w, cv2.BORDER_CONSTANT, value=(0.0, 0.0, 0.0))
        label = cv2.copyMakeBorder(label, 0, pad_h, 0, pad_w, cv2.BORDER_CONSTANT, value=(ignore,))
    return image[y : y + crop_size[0], x : x + crop_size[1]], label[y : y + crop_size[0], x : x + crop_size[1]]


def official_input_transform(image):
    image = image.astype(np.float32)[:, :, ::-1]
    image = image / 255.0
    image -= MEAN
    image /= STD
    return image.transpose((2, 0, 1))


def official_gen_sample(image, label, base_size, crop_size, k, x, y, flip):
    image, label = official_multi_scale_crop(image, label, base_size, crop_size, k, x, y)
    image = official_input_transform(image)
    if flip:
        image, label = image[:, :, ::-1], label[:, ::-1]
    return image, label


def official_short_side(image, label, short_length):
    h, w = image.shape[:2]
    if h < w:
        new_h, new_w = short_length, int(w * short_length / h + 0.5)
    else:
        new_w, new_h = short_length, int(h * short_length / w + 0.5)
    return cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR), cv2.resize(label, (new_w, new_h), interpolation=cv2.INTER_NEAREST)


def sample_pair(height, width, seed=0, classes=19):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    label = rng.integers(0, classes, (height, width), dtype=np.uint8)
    label[:3] = 255
    return image, label


def crop_offsets(height, width, base_size, crop_size, k, fx, fy):
    new_h, new_w = long_side_size(height, width, int(base_size * (0.5 + k / 10.0) + 0.5))
    return int(fx * (max(new_w, crop_size[1]) - crop_size[1])), int(fy * (max(new_h, crop_size[0]) - crop_size[0]))


@pytest.mark.parametrize("k,fx,fy,flip", [(0, 0.0, 0.0, 0), (5, 0.3, 0.9, 1), (16, 1.0, 0.5, 1), (11, 0.7, 0.0, 0)])
def test_generic_training_pipeline_equals_official(k, fx, fy, flip):
    image, label = sample_pair(60, 100)
    base, crop = 120, (64, 96)
    x, y = crop_offsets(60, 100, base, crop, k, fx, fy)
    transform = TrainTransform.from_spec(get_spec("cityscapes"), crop_size=crop, base_size=base, scale_factor=16, flip=True)
    out = transform(image, label, ScriptedRng([k, x, y, flip]))
    ref_image, ref_label = official_gen_sample(image, label, base, crop, k, x, y, flip)
    assert out["image"].dtype == torch.float32 and out["label"].dtype == torch.int64
    assert out["image"].shape == (3, *crop) and out["label"].shape == crop
    np.testing.assert_allclose(out["image"].numpy(), ref_image, atol=1e-5)
    np.testing.assert_array_equal(out["label"].numpy(), ref_label)


@pytest.mark.parametrize("flip", [0, 1])
def test_lip_training_pipeline_equals_official(flip):
    image, label = sample_pair(90, 50, seed=1, classes=20)
    crop, k = (47, 47), 7
    x, y = crop_offsets(*crop, 47, crop, k, 0.4, 0.6)
    transform = TrainTransform.from_spec(get_spec("lip"), crop_size=crop, base_size=47, scale_factor=11, flip=True)
    out = transform(image, label, ScriptedRng([flip, k, x, y]))
    # official lip.py __getitem__: flip + swap on the raw pair, resize to the crop size, gen_sample(no flip)
    ref_image, ref_label = image.copy(), label.copy()
    if flip:
        ref_image, ref_label = ref_image[:, ::-1], ref_label[:, ::-1].copy()
        for right, left in ((15, 14), (17, 16), (19, 18)):
            right_pos, left_pos = np.where(ref_label == right), np.where(ref_label == left)
            ref_label[right_pos] = left
            ref_label[left_pos] = right
    ref_image = cv2.resize(np.ascontiguousarray(ref_image), crop, interpolation=cv2.INTER_LINEAR)
    ref_label = cv2.resize(np.ascontiguousarray(ref_label), crop, interpolation=cv2.INTER_NEAREST)
    ref_image, ref_label = official_gen_sample(ref_image, ref_label, 47, crop, k, x, y, False)
    np.testing.assert_allclose(out["image"].numpy(), ref_image, atol=1e-5)
    np.testing.assert_array_equal(out["label"].numpy(), ref_label)


def test_short_side_training_pipeline_equals_official():
    image, label = sample_pair(70, 130, seed=2, classes=171)
    base, crop, k = 52, (52, 52), 9
    short_h, short_w = short_side_size(70, 130, base)
    x, y = crop_offsets(short_h, short_w, base, crop, k, 0.8, 0.2)
    transform = TrainTransform.from_spec(get_spec("cocostuff"), crop_size=crop, base_size=base, scale_factor=11, flip=True)
    out = transform(image, label, ScriptedRng([k, x, y, 1]))
    ref_image, ref_label = official_short_side(image, label, base)
    ref_image, ref_label = official_gen_sample(ref_image, ref_label, base, crop, k, x, y, True)
    np.testing.assert_allclose(out["image"].numpy(), ref_image, atol=1e-5)
    np.testing.assert_array_equal(out["label"].numpy(), ref_label)


@pytest.mark.parametrize("name", ["cityscapes", "lip", "pascal_ctx", "cocostuff", "ade20k"])
def test_training_invariants(name):
    spec = get_spec(name)
    raw = np.random.default_rng(3).integers(0, 256, (40, 70), dtype=np.uint8)
    label = spec.lut()[raw]
    image = np.random.default_rng(4).integers(0, 256, (40, 70, 3), dtype=np.uint8)
    transform = TrainTransform.from_spec(spec, crop_size=(32, 48), base_size=64, scale_factor=16, flip=True)
    allowed = set(np.unique(label).tolist()) | {255}
    for seed in range(12):
        out = transform(image, label, np.random.default_rng(seed))
        assert out["image"].shape == (3, 32, 48) and out["label"].shape == (32, 48)
        assert set(out["label"].unique().tolist()) <= allowed
    a = transform(image, label, np.random.default_rng([0, 1, 2]))
    b = transform(image, label, np.random.default_rng([0, 1, 2]))
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["label"], b["label"])
    others = [transform(image, label, np.random.default_rng([0, e, 2]))["label"] for e in range(2, 8)]
    assert any(not torch.equal(a["label"], o) for o in others)


def test_lip_flip_swaps_left_and_right():
    spec = get_spec("lip")
    label = np.zeros((20, 20), np.uint8)
    label[:, :5] = 14  # a left arm on the image's left only
    label[1, 6], label[1, 7] = 18, 19
    image = np.zeros((20, 20, 3), np.uint8)
    transform = TrainTransform.from_spec(spec, crop_size=(20, 20), base_size=20, scale_factor=10, flip=True)
    out = transform(image, label, ScriptedRng([1, 5, 0, 0]))["label"].numpy()  # flip, scale 1.0
    assert (out[:, 15:] == 15).all() and (out[:, :15] != 14).all()  # mirrored, and now a right arm
    assert out[1, 13] == 19 and out[1, 12] == 18
    kept = transform(image, label, ScriptedRng([0, 5, 0, 0]))["label"].numpy()
    np.testing.assert_array_equal(kept, label)


def test_normalize_is_rgb_imagenet():
    bgr = np.array([[[255, 0, 0], [0, 0, 0]]], np.uint8)  # pure blue, black
    out = normalize(bgr).numpy()
    expected_blue = [(0 - 0.485) / 0.229, (0 - 0.456) / 0.224, (1 - 0.406) / 0.225]
    np.testing.assert_allclose(out[:, 0, 0], expected_blue, rtol=1e-6)
    np.testing.assert_allclose(out[:, 0, 1], [-m / s for m, s in zip(MEAN, STD)], rtol=1e-6)


def test_eval_sizing_per_dataset():
    image, label = sample_pair(50, 70, seed=5)
    # Cityscapes / PASCAL-Context: original size, no padding
    out = EvalTransform.from_spec(get_spec("cityscapes"), crop_size=(32, 64), base_size=64)(image, label)
    assert out["image"].shape == (3, 50, 70) and out["orig_size"].tolist() == [50, 70] and out["pad"].tolist() == [0, 0]
    np.testing.assert_allclose(out["image"].numpy(), official_input_transform(image), atol=1e-6)
    # LIP: image resized to the crop size (aspect ignored), label untouched
    out = EvalTransform.from_spec(get_spec("lip"), crop_size=(40, 40), base_size=40)(image, label)
    assert out["image"].shape == (3, 40, 40) and out["label"].shape == (50, 70) and out["orig_size"].tolist() == [50, 70]
    # COCO-Stuff / ADE20K: short side -> base size, pad bottom/right to a multiple of 8 (mean colour)
    for name in ("cocostuff", "ade20k"):
        out = EvalTransform.from_spec(get_spec(name), crop_size=(52, 52), base_size=52)(image, label)
        assert short_side_size(50, 70, 52) == (52, 73)
        assert out["image"].shape == (3, 56, 80) and out["pad"].tolist() == [4, 7]
        np.testing.assert_array_equal(out["label"].numpy(), label)
        padded = out["image"][:, 52:, :].numpy()
        mean_bgr = np.array([[[round(m * 255) for m in MEAN[::-1]]]], np.uint8)  # cv2 rounds the float pad value
        np.testing.assert_allclose(padded[:, 0, 0], official_input_transform(mean_bgr)[:, 0, 0], atol=1e-6)
        resized = cv2.resize(image, (73, 52), interpolation=cv2.INTER_LINEAR)
        ref = cv2.copyMakeBorder(resized, 0, 4, 0, 7, cv2.BORDER_CONSTANT, value=tuple(x * 255 for x in MEAN[::-1]))
        np.testing.assert_allclose(out["image"].numpy(), official_input_transform(ref), atol=1e-5)


def test_eval_without_label_reports_image_size():
    image, _ = sample_pair(30, 40)
    out = EvalTransform.from_spec(get_spec("cityscapes"), crop_size=(30, 40), base_size=40)(image, None)
    assert "label" not in out and out["orig_size"].tolist() == [30, 40]


def test_official_resize_rounding():
    assert long_side_size(1024, 2048, 1024) == (512, 1024)
    assert long_side_size(375, 500, 260) == (int(375 * 260 / 500 + 0.5), 260)
    assert long_side_size(500, 375, 260) == (260, int(375 * 260 / 500 + 0.5))
    assert long_side_size(100, 100, 50) == (50, 50)
    assert short_side_size(375, 500, 520) == (520, int(500 * 520 / 375 + 0.5))
    assert short_side_size(100, 100, 50) == (50, 50)
