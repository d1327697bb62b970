"""Synthetic datasets: deterministic bytes, exact layouts, class coverage, sizes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from hrseg.data import DatasetError, get_spec, read_label
from hrseg.data.synth import SYNTH_DATASETS, generate_synthetic


def digest(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes(synth_root, tmp_path):
    report = generate_synthetic(tmp_path / "again", seed=0)
    assert digest(tmp_path / "again") == digest(synth_root)
    assert set(report) == set(SYNTH_DATASETS)
    total = sum(r["bytes"] for r in report.values())
    assert total < 6_000_000, total  # "a few MB"
    assert sum(r["files"] for r in report.values()) == len(digest(synth_root))


def test_other_seed_other_bytes(synth_root, tmp_path):
    generate_synthetic(tmp_path / "s1", seed=1, datasets=["lip"])
    assert digest(tmp_path / "s1" / "lip").keys() == digest(synth_root / "lip").keys()
    assert digest(tmp_path / "s1" / "lip") != digest(synth_root / "lip")


def test_unknown_dataset(tmp_path):
    with pytest.raises(DatasetError, match="unknown synthetic dataset.*'voc'.*expected some of cityscapes, lip, pascal_ctx, cocostuff, ade20k"):
        generate_synthetic(tmp_path, datasets=["lip", "voc"])
    assert not any(tmp_path.iterdir())


def test_layouts_and_sizes(synth_root):
    cs = synth_root / "cityscapes"
    assert sorted(p.name for p in (cs / "leftImg8bit").iterdir()) == ["test", "train", "val"]
    assert sorted(p.name for p in (cs / "leftImg8bit" / "train").iterdir()) == ["aachen", "bremen"]
    images = sorted(cs.glob("leftImg8bit/*/*/*_leftImg8bit.png"))
    assert len(images) == 36 and all(cv2.imread(str(p)).shape == (128, 256, 3) for p in images)
    assert len(list(cs.glob("gtFine/*/*/*_gtFine_labelIds.png"))) == 32 and not (cs / "gtFine" / "test").exists()
    for name in ("cocostuff", "ade20k"):
        for image in (synth_root / name).glob("*/image/*.jpg"):
            h, w = cv2.imread(str(image)).shape[:2]
            assert 96 <= h <= 200 and 96 <= w <= 200
            assert read_label(image.parent.parent / "label" / f"{image.stem}.png").shape == (h, w)
    assert len(list((synth_root / "lip" / "TrainVal_images" / "train_images").glob("*.jpg"))) == 18
    voc = synth_root / "pascal_ctx" / "VOCdevkit" / "VOC2010"
    data = json.loads((voc / "trainval_merged.json").read_text())
    assert {"images", "annos_segmentation", "categories", "parts", "annos_occlusion", "annos_boundary", "annos_joints", "info"} <= set(data)
    assert [i["phase"] for i in data["images"]].count("train") == 20
    for record in data["images"]:
        assert cv2.imread(str(voc / "JPEGImages" / record["file_name"])).shape[:2] == (record["height"], record["width"])
    assert all(isinstance(a["segmentation"]["counts"], str) for a in data["annos_segmentation"])


def test_raw_labels_include_values_that_map_to_ignore(synth_root):
    cs_values = set()
    for p in (synth_root / "cityscapes" / "gtFine").glob("train/*/*.png"):
        cs_values |= set(np.unique(read_label(p)).tolist())
    lut = get_spec("cityscapes").lut()
    assert {v for v in cs_values if lut[v] == 255} >= {0, 1, 3, 4, 5}
    assert {int(lut[v]) for v in cs_values} - {255} == set(range(19))
    coco = set()
    for p in (synth_root / "cocostuff").glob("*/label/*.png"):
        coco |= set(np.unique(read_label(p)).tolist())
    assert {0, 12, 26, 29, 30, 45, 66, 68, 69, 71, 83, 91} <= coco and max(coco) == 182


def test_images_are_learnable_by_colour(synth_root):
    """Each class has its own look: the mean colour of a class is nearly constant across
    images and differs between classes (what a small network picks up first)."""
    spec = get_spec("cityscapes")
    sums: dict[int, list[np.ndarray]] = {}
    for label_path in sorted((synth_root / "cityscapes" / "gtFine" / "train").glob("*/*.png"))[:8]:
        image_path = Path(str(label_path).replace("gtFine", "leftImg8bit", 1).replace("_gtFine_labelIds", "_leftImg8bit"))
        image, label = cv2.imread(str(image_path)).astype(np.float32), spec.lut()[read_label(label_path)]
        for cls in np.unique(label):
            if cls != 255 and (label == cls).sum() > 100:
                sums.setdefault(int(cls), []).append(image[label == cls].mean(0))
    means = {c: np.mean(v, 0) for c, v in sums.items()}
    for c, values in sums.items():
        assert max(np.abs(v - means[c]).max() for v in values) < 30, c  # stable within a class
    classes = sorted(means)
    gaps = [np.abs(means[a] - means[b]).max() for i, a in enumerate(classes) for b in classes[i + 1 :]]
    assert min(gaps) > 15


def _images_per_class(label_files) -> dict[int, int]:
    counts: dict[int, int] = {}
    for path in label_files:
        for value in np.unique(read_label(path)).tolist():
            counts[value] = counts.get(value, 0) + 1
    return counts


@pytest.mark.parametrize("name", ["cocostuff", "ade20k", "pascal_ctx"])
def test_long_tail_train_shows_every_class_and_val_only_learnable_ones(synth_root, name):
    """The long-tailed datasets: every raw class value appears in the training split; every
    class of the validation split appears in at least four training images (a class seen once
    cannot be learnt, so it would only add a zero to the mean over the classes in val)."""
    if name == "pascal_ctx":
        data = json.loads((synth_root / "pascal_ctx" / "VOCdevkit" / "VOC2010" / "trainval_merged.json").read_text())
        phase = {i["image_id"]: i["phase"] for i in data["images"]}
        per_split: dict[str, dict[int, set[int]]] = {"train": {}, "val": {}}
        for a in data["annos_segmentation"]:
            per_split[phase[a["image_id"]]].setdefault(a["category_id"], set()).add(a["image_id"])
        train = {c: len(ids) for c, ids in per_split["train"].items()}
        val = set(per_split["val"])
        everything = {c["category_id"] for c in data["categories"]}
    else:
        train = _images_per_class(sorted((synth_root / name / "train" / "label").glob("*.png")))
        val = set(_images_per_class(sorted((synth_root / name / "val" / "label").glob("*.png")))) - {0}
        everything = set(range(1, 183 if name == "cocostuff" else 151))
    assert everything <= set(train)
    assert len(val) >= 10 and all(train[c] >= 4 for c in val), {c: train.get(c, 0) for c in val}
