"""Label maps checked value by value against the official tables and label functions."""

from __future__ import annotations

import numpy as np
import pytest

from hrseg.data import DATASETS, DatasetError, cocostuff, get_layout, get_spec, pascal_ctx
from hrseg.data.catalog import datasets_of_layout

ALL_VALUES = np.arange(256, dtype=np.uint8)


def test_catalogue_names_and_sizes():
    assert list(DATASETS) == ["cityscapes", "lip", "pascal_ctx", "pascal_ctx60", "cocostuff", "ade20k"]
    sizes = {name: spec.num_classes for name, spec in DATASETS.items()}
    assert sizes == {"cityscapes": 19, "lip": 20, "pascal_ctx": 59, "pascal_ctx60": 60, "cocostuff": 171, "ade20k": 150}
    for spec in DATASETS.values():
        assert spec.ignore_label == 255
        assert len(spec.class_names) == len(spec.palette) == spec.num_classes
        assert len(set(spec.class_names)) == spec.num_classes
        assert spec.mean == (0.485, 0.456, 0.406) and spec.std == (0.229, 0.224, 0.225)


def test_pascal_ctx60_reads_the_pascal_ctx_lists():
    assert {name: spec.layout for name, spec in DATASETS.items() if spec.layout != name} == {"pascal_ctx60": "pascal_ctx"}
    assert datasets_of_layout("pascal_ctx") == ["pascal_ctx", "pascal_ctx60"]
    with pytest.raises(DatasetError, match=r"unknown dataset 'pascal_ctx60' for prepare; .* \(pascal_ctx lists serve both pascal_ctx and pascal_ctx60\)$"):
        get_layout("pascal_ctx60")


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(DatasetError, match=r"unknown dataset 'kitti'.*cityscapes, lip, pascal_ctx, pascal_ctx60, cocostuff, ade20k"):
        get_spec("kitti")


def test_cityscapes_against_cityscapesscripts():
    from cityscapesscripts.helpers.labels import labels

    lut = get_spec("cityscapes").lut()
    for label in labels:
        if label.id < 0:
            continue  # license plate (-1) never occurs in labelId PNGs
        expected = label.trainId if 0 <= label.trainId < 255 else 255
        assert lut[label.id] == expected, label.name
    assert (lut[34:] == 255).all()
    names = [lab.name for lab in sorted((lab for lab in labels if 0 <= lab.trainId < 255), key=lambda lab: lab.trainId)]
    assert list(get_spec("cityscapes").class_names) == names


def test_cityscapes_against_the_official_hrnet_table():
    # lib/datasets/cityscapes.py label_mapping (official.md section 8)
    official = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}
    lut = get_spec("cityscapes").lut()
    for value in range(256):
        assert lut[value] == official.get(value, 255), value


def test_lip_is_identity_with_left_right_pairs():
    spec = get_spec("lip")
    lut = spec.lut()
    assert (lut[:20] == np.arange(20)).all() and (lut[20:] == 255).all()
    assert spec.flip_pairs == ((14, 15), (16, 17), (18, 19))
    swap = spec.flip_lut()
    assert [int(swap[v]) for v in range(20)] == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 15, 14, 17, 16, 19, 18]
    assert spec.train_resize == "lip" and spec.eval_resize == "crop_size"


def official_cocostuff(labelmap: np.ndarray) -> np.ndarray:
    """HRNet-OCR ``cocostuff.py``: encode_label then reduce_zero_label, in uint8."""
    mapping = [
        0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 27, 28,
        31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55,
        56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84,
        85, 86, 87, 88, 89, 90,
    ] + list(range(92, 183))  # fmt: skip
    assert len(mapping) == 172
    ret = np.ones_like(labelmap) * 255
    for idx, label in enumerate(mapping):
        ret[labelmap == label] = idx
    return ret - np.uint8(1)  # uint8 arithmetic: 0 -> 255, 255 -> 254


def test_cocostuff_against_the_official_functions():
    lut = get_spec("cocostuff").lut()
    official = official_cocostuff(ALL_VALUES)
    for value in range(256):
        if official[value] == 254:  # the official "unmapped" result; hrseg maps it to ignore
            assert lut[value] == 255, value
            assert value in cocostuff.UNUSED_IDS or value > 182
        else:
            assert lut[value] == official[value], value
    assert lut[0] == 255  # unlabeled -> ignore
    assert sorted(set(lut.tolist()) - {255}) == list(range(171))
    assert [v for v in range(183) if lut[v] == 255] == [0, 12, 26, 29, 30, 45, 66, 68, 69, 71, 83, 91]


def test_ade20k_reduce_zero_label():
    lut = get_spec("ade20k").lut()
    official = ALL_VALUES - np.uint8(1)  # base_dataset.reduce_zero_label on uint8
    for value in range(151):
        assert lut[value] == official[value], value
    assert lut[0] == 255 and (lut[151:] == 255).all()


def official_pascal_index(mask: np.ndarray) -> np.ndarray:
    """Release-time ``pascal_ctx.py`` ``_class_to_index`` with key = arange(60)."""
    mapping = np.sort(np.array([
        0, 2, 259, 260, 415, 324, 9, 258, 144, 18, 19, 22, 23, 397, 25, 284, 158, 159, 416, 33, 162, 420,
        454, 295, 296, 427, 44, 45, 46, 308, 59, 440, 445, 31, 232, 65, 354, 424, 68, 326, 72, 458, 34,
        207, 80, 355, 85, 347, 220, 349, 360, 98, 187, 104, 105, 366, 189, 368, 113, 115,
    ]))  # fmt: skip
    for value in np.unique(mask):
        assert value in mapping
    index = np.digitize(mask.ravel(), mapping, right=True)
    return np.arange(60)[index].reshape(mask.shape)


def test_pascal_mapping_against_the_official_digitize():
    ids = np.array(pascal_ctx.MAPPING_IDS)
    mask = np.tile(ids, (3, 1))
    ours, bad = pascal_ctx.to_index(mask)
    assert bad == []
    assert (ours == official_pascal_index(mask)).all()
    assert (ours[0] == np.arange(60)).all()


def test_pascal_unknown_ids_are_reported():
    mask = np.array([[0, 2, 1], [459, 7, -3]])
    index, bad = pascal_ctx.to_index(mask)
    assert bad == [-3, 1, 7, 459]
    assert index.tolist() == [[0, 1, 255], [255, 255, 255]]


def test_pascal_59_and_60_class_label_transforms():
    index = np.arange(60, dtype=np.uint8)
    lut59, lut60 = get_spec("pascal_ctx").lut(), get_spec("pascal_ctx60").lut()
    # official label_transform: K=59 -> label - 1 (background -> -1 = ignore); K=60 -> as is
    official59 = index.astype(np.int32) - 1
    assert [255 if v == -1 else v for v in official59.tolist()] == lut59[index].tolist()
    assert lut60[index].tolist() == list(range(60))
    assert (lut59[60:] == 255).all() and (lut60[60:] == 255).all()
    assert get_spec("pascal_ctx").class_names[0] == "aeroplane" and get_spec("pascal_ctx60").class_names[0] == "background"
