"""``prepare_dataset`` on the synthetic datasets: list formats, summaries, and every error path."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from hrseg.data import (
    DatasetCheckError,
    DatasetError,
    LayoutError,
    get_spec,
    pascal_ctx,
    prepare_dataset,
    read_label,
)

# pycocotools' decode trips a NumPy 2 DeprecationWarning inside its Cython code
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def test_cityscapes_lists(lists_root, synth_root):
    out = lists_root / "cityscapes"
    train, val, test, trainval = (lines(out / f"{s}.lst") for s in ("train", "val", "test", "trainval"))
    assert (len(train), len(val), len(test)) == (24, 8, 4) and trainval == train + val
    image, label = train[0].split("\t")
    assert image == "leftImg8bit/train/aachen/aachen_000000_000019_leftImg8bit.png"
    assert label == "gtFine/train/aachen/aachen_000000_000019_gtFine_labelIds.png"
    assert all("\t" not in line and line.startswith("leftImg8bit/test/") for line in test)
    for line in train + val + test:
        for path in line.split("\t"):
            assert (synth_root / "cityscapes" / path).is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["lists"] == {"test.lst": 4, "train.lst": 24, "trainval.lst": 32, "val.lst": 8}
    assert summary["splits"]["train"]["image_sizes"] == {"128x256": 24}
    values = summary["splits"]["train"]["label_values"]
    lut = get_spec("cityscapes").lut()
    assert {int(lut[v]) for v in values} == set(range(19)) | {255}  # every trainId + ignored ids
    assert {0, 1} <= set(values)


def test_lip_lists(lists_root):
    train, val = lines(lists_root / "lip" / "train.lst"), lines(lists_root / "lip" / "val.lst")
    image, label, name = train[0].split(" ")
    assert image.startswith("TrainVal_images/train_images/") and image.endswith(f"/{name}.jpg")
    assert label == f"TrainVal_parsing_annotations/train_segmentations/{name}.png"
    assert all(len(line.split()) == 2 for line in val)
    assert val[0].split()[0].startswith("TrainVal_images/val_images/")
    summary = json.loads((lists_root / "lip" / "summary.json").read_text())
    assert summary["splits"]["train"]["label_values"] == list(range(20))


def test_cocostuff_and_ade20k_lists(lists_root):
    for name, prefix in (("cocostuff", "COCO_train2014_"), ("ade20k", "ADE_train_")):
        train = lines(lists_root / name / "train.lst")
        image, label = train[0].split(" ")
        assert image.startswith(f"train/image/{prefix}") and label == image.replace("/image/", "/label/").replace(".jpg", ".png")
        assert lines(lists_root / name / "val.lst")[0].startswith("val/image/")
    coco = json.loads((lists_root / "cocostuff" / "summary.json").read_text())["splits"]["train"]["label_values"]
    assert coco == list(range(183))  # unlabeled, every class and the unused ids
    ade = json.loads((lists_root / "ade20k" / "summary.json").read_text())["splits"]["train"]["label_values"]
    assert ade == list(range(151))


def test_pascal_lists_and_generated_labels(lists_root, synth_root):
    out = lists_root / "pascal_ctx"
    train = lines(out / "train.lst")
    image, label = train[0].split(" ")
    assert image.startswith("VOCdevkit/VOC2010/JPEGImages/") and label == f"labels/train/{Path(image).stem}.png"
    assert (synth_root / "pascal_ctx" / image).is_file() and (out / label).is_file()  # label: relative to the list dir
    assert not (out / ".labels.staging").exists()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["splits"]["train"]["label_values"] == list(range(60))
    # the PNGs hold what detail-api getMask + the official mapping give for the JSON
    voc = synth_root / "pascal_ctx" / "VOCdevkit" / "VOC2010"
    data = json.loads((voc / "trainval_merged.json").read_text())
    image_record = next(i for i in data["images"] if Path(i["file_name"]).stem == Path(image).stem)
    expected = np.zeros((image_record["height"], image_record["width"]), np.int64)
    from pycocotools import mask as mask_utils

    for ann in data["annos_segmentation"]:
        if ann["image_id"] == image_record["image_id"]:
            expected[np.nonzero(mask_utils.decode(ann["segmentation"]))] = ann["category_id"]
    index = np.searchsorted(np.array(pascal_ctx.MAPPING_IDS), expected)
    np.testing.assert_array_equal(read_label(out / label), index)


def test_ade20k_original_layout(synth_root, tmp_path):
    src = synth_root / "ade20k"
    for split, original in (("train", "training"), ("val", "validation")):
        for kind, target in (("image", "images"), ("label", "annotations")):
            shutil.copytree(src / split / kind, tmp_path / "ADEChallengeData2016" / target / original)
    summary = prepare_dataset("ade20k", tmp_path, tmp_path / "lists")
    assert summary["splits"]["train"]["count"] == 20
    first = lines(tmp_path / "lists" / "train.lst")[0].split()
    assert first == ["ADEChallengeData2016/images/training/ADE_train_00000001.jpg", "ADEChallengeData2016/annotations/training/ADE_train_00000001.png"]
    # the ADEChallengeData2016 folder itself as the root works too
    prepare_dataset("ade20k", tmp_path / "ADEChallengeData2016", tmp_path / "lists2")
    assert lines(tmp_path / "lists2" / "val.lst")[0].startswith("images/validation/ADE_val_")


# --- error paths ------------------------------------------------------------------------------


@pytest.fixture
def lip_copy(synth_root, tmp_path) -> Path:
    return Path(shutil.copytree(synth_root / "lip", tmp_path / "lip"))


def check_error(name: str, root: Path, out: Path, *patterns: str) -> DatasetCheckError:
    with pytest.raises(DatasetCheckError) as info:
        prepare_dataset(name, root, out)
    message = str(info.value)
    for pattern in patterns:
        assert pattern in message, message
    assert not out.exists() or not any(out.iterdir()), "nothing may be written on failure"
    return info.value


def first_pair(root: Path, split: str = "train") -> tuple[Path, Path]:
    image = min((root / "TrainVal_images" / f"{split}_images").glob("*.jpg"))
    return image, root / "TrainVal_parsing_annotations" / f"{split}_segmentations" / f"{image.stem}.png"


def test_missing_label(lip_copy, tmp_path):
    image, label = first_pair(lip_copy)
    label.unlink()
    check_error("lip", lip_copy, tmp_path / "out", f"TrainVal_images/train_images/{image.name}: missing label file", "1 problem(s)")


def test_corrupt_png_and_jpeg(lip_copy, tmp_path):
    _, label = first_pair(lip_copy)
    label.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    image2, _ = first_pair(lip_copy, "val")
    image2.write_bytes(b"not a jpeg")
    error = check_error("lip", lip_copy, tmp_path / "out", "cannot decode label image", label.name, "cannot decode image", image2.name)
    assert len(error.problems) == 2


def test_size_mismatch(lip_copy, tmp_path):
    _, label = first_pair(lip_copy)
    small = read_label(label)[:-3]
    Image.fromarray(small).save(label)
    check_error("lip", lip_copy, tmp_path / "out", f"{label.name}: label is {small.shape[0]}x{small.shape[1]} but image")


def test_out_of_domain_labels(synth_root, tmp_path):
    root = Path(shutil.copytree(synth_root / "cocostuff", tmp_path / "coco"))
    label_path = min((root / "val" / "label").glob("*.png"))
    label = read_label(label_path)
    label[0, :3] = [183, 200, 255]
    cv2.imwrite(str(label_path), label)
    check_error("cocostuff", root, tmp_path / "out", f"{label_path.name}: label values [183, 200, 255] are outside the cocostuff domain (expected 0..182)")


def test_colour_label_is_rejected(lip_copy, tmp_path):
    _, label = first_pair(lip_copy)
    Image.fromarray(np.stack([read_label(label)] * 3, axis=-1)).save(label)
    check_error("lip", lip_copy, tmp_path / "out", "expected a single-channel (grayscale or palette) label image, got mode 'RGB'")


def test_empty_split(lip_copy, tmp_path):
    for image in (lip_copy / "TrainVal_images" / "val_images").glob("*.jpg"):
        image.unlink()
    error = check_error("lip", lip_copy, tmp_path / "out", "split 'val' is empty: no image matches TrainVal_images/val_images/*.jpg")
    assert len(error.problems) == 1


def test_many_problems_are_listed_then_counted(synth_root, tmp_path):
    root = Path(shutil.copytree(synth_root / "cityscapes", tmp_path / "cs"))
    labels = sorted((root / "gtFine").glob("*/*/*_gtFine_labelIds.png"))
    assert len(labels) == 32
    for label in labels[:25]:
        label.write_bytes(b"garbage")
    error = check_error("cityscapes", root, tmp_path / "out", "25 problem(s)", "... and 5 more (25 in total)")
    assert str(error).count("cannot decode label image") == 20


def test_previous_lists_survive_a_failed_run(lip_copy, tmp_path):
    out = tmp_path / "out"
    prepare_dataset("lip", lip_copy, out)
    before = (out / "train.lst").read_bytes()
    first_pair(lip_copy)[1].unlink()
    with pytest.raises(DatasetCheckError):
        prepare_dataset("lip", lip_copy, out)
    assert (out / "train.lst").read_bytes() == before


def test_unknown_dataset_and_wrong_root(synth_root, tmp_path):
    with pytest.raises(DatasetError, match="unknown dataset 'voc' for prepare; expected one of cityscapes, lip, pascal_ctx, cocostuff, ade20k"):
        prepare_dataset("voc", synth_root, tmp_path / "out")
    with pytest.raises(LayoutError, match=r"does not look like cityscapes: missing leftImg8bit/, gtFine/\. Expected layout:\n.*_leftImg8bit\.png"):
        prepare_dataset("cityscapes", synth_root / "lip", tmp_path / "out")
    with pytest.raises(LayoutError, match="does not exist"):
        prepare_dataset("lip", tmp_path / "nowhere", tmp_path / "out")
    with pytest.raises(LayoutError, match="found neither layout"):
        prepare_dataset("ade20k", synth_root / "lip", tmp_path / "out")
    with pytest.raises(LayoutError, match="trainval_merged.json"):
        prepare_dataset("pascal_ctx", synth_root / "lip", tmp_path / "out")
    assert not (tmp_path / "out").exists()


# --- PASCAL-Context Detail JSON ---------------------------------------------------------------


def rle(mask: np.ndarray) -> dict:
    from pycocotools import mask as mask_utils

    encoded = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": encoded["size"], "counts": encoded["counts"].decode()}


def write_pascal(root: Path, annotations: list[tuple[int, np.ndarray]], *, shape=(20, 30), json_shape=None, phases=("train", "val")) -> Path:
    voc = root / "VOCdevkit" / "VOC2010"
    (voc / "JPEGImages").mkdir(parents=True)
    images, anns = [], []
    for n, phase in enumerate(phases):
        name = f"2008_{n:06d}"
        cv2.imwrite(str(voc / "JPEGImages" / f"{name}.jpg"), np.full((*shape, 3), 90, np.uint8))
        height, width = json_shape or shape
        images.append({"image_id": 2008000000 + n, "file_name": f"{name}.jpg", "height": height, "width": width, "phase": phase})
        for category, mask in annotations:
            anns.append({"id": len(anns) + 1, "image_id": 2008000000 + n, "category_id": category, "segmentation": rle(mask)})
    (voc / "trainval_merged.json").write_text(json.dumps({"images": images, "annos_segmentation": anns}))
    return voc


def test_pascal_overlapping_annotations_follow_file_order(tmp_path):
    everything = np.ones((20, 30), np.uint8)
    corner = np.zeros((20, 30), np.uint8)
    corner[:5, :7] = 1
    image = {"image_id": 1, "file_name": "x.jpg", "height": 20, "width": 30}
    mask, problems = pascal_ctx.semantic_mask(image, [{"category_id": 2, "segmentation": rle(everything)}, {"category_id": 9, "segmentation": rle(corner)}])
    assert problems == [] and (mask[:5, :7] == 9).all() and (mask == 2).sum() == 600 - 35
    mask, _ = pascal_ctx.semantic_mask(image, [{"category_id": 9, "segmentation": rle(corner)}, {"category_id": 2, "segmentation": rle(everything)}])
    assert (mask == 2).all()
    # uncompressed RLE (counts as a list) decodes too
    uncompressed = {"size": [20, 30], "counts": [0, 600]}
    mask, problems = pascal_ctx.semantic_mask(image, [{"category_id": 18, "segmentation": uncompressed}])
    assert problems == [] and (mask == 18).all()


def test_pascal_prepare_on_a_handmade_json(tmp_path):
    half = np.zeros((20, 30), np.uint8)
    half[:, 15:] = 1
    write_pascal(tmp_path / "ds", [(284, half)])  # person on the right half
    prepare_dataset("pascal_ctx", tmp_path / "ds", tmp_path / "lists")
    label = read_label(tmp_path / "lists" / "labels" / "val" / "2008_000001.png")
    assert (label[:, :15] == 0).all() and (label[:, 15:] == pascal_ctx.MAPPING_IDS.index(284)).all()
    assert lines(tmp_path / "lists" / "val.lst") == ["VOCdevkit/VOC2010/JPEGImages/2008_000001.jpg labels/val/2008_000001.png"]


def test_pascal_unknown_category_is_out_of_domain(tmp_path):
    mask = np.zeros((20, 30), np.uint8)
    mask[2:4, 2:4] = 1
    write_pascal(tmp_path / "ds", [(2, mask), (7, mask)])
    expected = "2008_000000.jpg (image_id 2008000000): mask values [7] are not among the 60 PASCAL-Context category ids"
    error = check_error("pascal_ctx", tmp_path / "ds", tmp_path / "lists", expected)
    assert len(error.problems) == 2  # one per image


def test_pascal_size_problems(tmp_path):
    mask = np.ones((10, 10), np.uint8)
    write_pascal(tmp_path / "ds", [(2, mask)], json_shape=(20, 30))
    check_error("pascal_ctx", tmp_path / "ds", tmp_path / "lists", "annotation 1 mask is 10x10, image is 20x30")
    write_pascal(tmp_path / "ds2", [(2, np.ones((21, 30), np.uint8))], shape=(20, 30), json_shape=(21, 30))
    check_error("pascal_ctx", tmp_path / "ds2", tmp_path / "lists2", "image is 20x30 but trainval_merged.json says 21x30")


def test_pascal_empty_phase_and_bad_json(tmp_path):
    write_pascal(tmp_path / "ds", [(2, np.ones((20, 30), np.uint8))], phases=("train",))
    check_error("pascal_ctx", tmp_path / "ds", tmp_path / "lists", "split 'val' is empty: no image with phase 'val'")
    voc = write_pascal(tmp_path / "ds2", [])
    (voc / "trainval_merged.json").write_text('{"images": [}')
    with pytest.raises(DatasetError, match=r"trainval_merged.json: not valid JSON \(line 1, column 13"):
        prepare_dataset("pascal_ctx", tmp_path / "ds2", tmp_path / "lists2")
    (voc / "trainval_merged.json").write_text('{"images": []}')
    with pytest.raises(DatasetError, match="missing list 'annos_segmentation'"):
        prepare_dataset("pascal_ctx", tmp_path / "ds2", tmp_path / "lists2")


def test_pascal_agrees_with_detail_api_when_installed(synth_root, lists_root):
    detail = pytest.importorskip("detail")
    voc = synth_root / "pascal_ctx" / "VOCdevkit" / "VOC2010"
    api = detail.Detail(str(voc / "trainval_merged.json"), str(voc / "JPEGImages"), "train")
    ids = np.array(pascal_ctx.MAPPING_IDS)
    for record in api.getImgs():
        expected = np.searchsorted(ids, api.getMask(record).astype(np.int64))
        ours = read_label(lists_root / "pascal_ctx" / "labels" / "train" / f"{Path(record['file_name']).stem}.png")
        np.testing.assert_array_equal(ours, expected)
