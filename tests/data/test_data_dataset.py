"""``SegmentationDataset`` / ``build_dataset`` on the synthetic datasets."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from hrseg.data import (
    DATASETS,
    DatasetError,
    SegmentationDataset,
    TrainTransform,
    build_dataset,
    get_spec,
    worker_init_fn,
)
from hrseg.recipe import DataConfig, EvalConfig


def data_config(name: str, synth_root: Path, lists_root: Path, **kw) -> DataConfig:
    layout = get_spec(name).layout  # the folder of its synthetic copy and lists
    return DataConfig(dataset=name, root=synth_root / layout, lists=lists_root / layout, crop_size=(48, 64), base_size=96, scale_factor=16, **kw)


@pytest.mark.parametrize("name", list(DATASETS))
def test_train_and_val_samples(name, synth_root, lists_root):
    cfg = data_config(name, synth_root, lists_root)
    spec = get_spec(name)
    train = build_dataset(cfg, "train", train=True, seed=3)
    sample = train[1]
    assert set(sample) == {"image", "label", "name", "index"} and sample["index"] == 1
    assert sample["image"].dtype == torch.float32 and sample["image"].shape == (3, 48, 64)
    assert sample["label"].dtype == torch.int64 and sample["label"].shape == (48, 64)
    values = set(sample["label"].unique().tolist())
    assert values <= set(range(spec.num_classes)) | {255}
    val = build_dataset(cfg, "val", train=False, eval_cfg=EvalConfig(crop_size=(64, 64), base_size=72))
    sample = val[0]
    assert set(sample) == {"image", "label", "name", "index", "orig_size", "pad"}
    height, width = sample["orig_size"].tolist()
    assert sample["label"].shape == (height, width)
    assert sample["name"] == Path(val.entries[0].image).stem
    if spec.eval_resize == "crop_size":
        assert sample["image"].shape[1:] == (64, 64)
    elif spec.eval_resize == "short_side":
        bottom, right = sample["pad"].tolist()
        h, w = sample["image"].shape[1:]
        assert min(h - bottom, w - right) == 72 and h % 8 == 0 and w % 8 == 0
    else:
        assert sample["image"].shape[1:] == (height, width) and sample["pad"].tolist() == [0, 0]


def test_pascal_59_is_60_shifted(synth_root, lists_root):
    cfg59 = data_config("pascal_ctx", synth_root, lists_root)
    cfg60 = data_config("pascal_ctx60", synth_root, lists_root)
    a = build_dataset(cfg59, "val", train=False)[2]["label"]
    b = build_dataset(cfg60, "val", train=False)[2]["label"]
    assert (b == 0).any()
    assert torch.equal(a, torch.where(b == 0, torch.tensor(255), b - 1))


def test_cityscapes_labels_are_train_ids(synth_root, lists_root):
    cfg = data_config("cityscapes", synth_root, lists_root)
    dataset = build_dataset(cfg, "val", train=False)
    from hrseg.data import read_label

    raw = read_label(dataset.entries[0].label)
    mapped = dataset[0]["label"].numpy()
    assert ((raw == 7) == (mapped == 0)).all() and ((raw == 1) <= (mapped == 255)).all()
    assert set(np.unique(mapped)) <= set(range(19)) | {255}


def test_unlabelled_test_list(synth_root, lists_root):
    cfg = data_config("cityscapes", synth_root, lists_root)
    test = build_dataset(cfg, "test", train=False)
    sample = test[0]
    assert "label" not in sample and sample["orig_size"].tolist() == [128, 256]
    with pytest.raises(DatasetError, match=r"test\.lst:1: training needs 'image label' lines; 4 line\(s\) have no label"):
        build_dataset(cfg, "test", train=True)


def test_augmentation_is_a_function_of_seed_epoch_index(synth_root, lists_root):
    cfg = data_config("lip", synth_root, lists_root)
    a, b = build_dataset(cfg, "train", train=True, seed=7), build_dataset(cfg, "train", train=True, seed=7)
    assert torch.equal(a[4]["image"], b[4]["image"]) and torch.equal(a[4]["label"], b[4]["label"])
    a.set_epoch(1)
    assert not torch.equal(a[4]["image"], b[4]["image"])
    b.set_epoch(1)
    assert torch.equal(a[4]["label"], b[4]["label"])
    c = build_dataset(cfg, "train", train=True, seed=8)
    c.set_epoch(1)
    assert any(not torch.equal(c[i]["image"], a[i]["image"]) for i in range(4))


def test_same_batches_with_any_worker_count(synth_root, lists_root):
    cfg = data_config("cityscapes", synth_root, lists_root)
    dataset = build_dataset(cfg, "train", train=True, seed=1, num_samples=6)
    assert len(dataset) == 6
    dataset.set_epoch(2)
    batches = {}
    for workers in (0, 2):
        loader = DataLoader(dataset, batch_size=3, num_workers=workers, worker_init_fn=worker_init_fn)
        batches[workers] = [(b["image"], b["label"], b["index"]) for b in loader]
    for (i0, l0, n0), (i2, l2, n2) in zip(batches[0], batches[2]):
        assert torch.equal(i0, i2) and torch.equal(l0, l2) and torch.equal(n0, n2)


def test_list_and_file_errors(synth_root, lists_root, tmp_path):
    spec = get_spec("lip")
    transform = TrainTransform.from_spec(spec, crop_size=(32, 32), base_size=32, scale_factor=11, flip=True)
    with pytest.raises(DatasetError, match=r"list file .*nothing\.lst not found \(write it with `hrseg prepare"):
        SegmentationDataset(spec, synth_root / "lip", tmp_path / "nothing.lst", transform)
    (tmp_path / "empty.lst").write_text("\n\n")
    with pytest.raises(DatasetError, match="empty.lst: empty list file"):
        SegmentationDataset(spec, synth_root / "lip", tmp_path / "empty.lst", transform)
    (tmp_path / "wide.lst").write_text("a.jpg b.png\na b c d e\n")
    with pytest.raises(DatasetError, match=r"wide.lst:2: expected 'image \[label\]' \(at most 4 fields\), got 5"):
        SegmentationDataset(spec, synth_root / "lip", tmp_path / "wide.lst", transform)
    good = (lists_root / "lip" / "val.lst").read_text().splitlines()
    label = good[0].split()[1]
    (tmp_path / "bad.lst").write_text(f"{good[1]}\nmissing/x.jpg {label}\n{good[2].split()[0]} {label}\n")
    dataset = SegmentationDataset(spec, synth_root / "lip", tmp_path / "bad.lst", transform)
    assert dataset[0]["label"].shape == (32, 32)
    with pytest.raises(DatasetError, match=r"bad\.lst:2: .*missing/x\.jpg: image file not found"):
        dataset[1]
    with pytest.raises(DatasetError, match=r"bad\.lst:3: image .* is \d+x\d+ but label .* is \d+x\d+ \(expected equal sizes\)"):
        dataset[2]
    with pytest.raises(IndexError):
        dataset[3]


def test_build_dataset_uses_eval_sizes(synth_root, lists_root):
    cfg = replace(data_config("lip", synth_root, lists_root), crop_size=(40, 40))
    assert build_dataset(cfg, "val", train=False)[0]["image"].shape[1:] == (40, 40)
    assert build_dataset(cfg, "val", train=False, eval_cfg=EvalConfig(crop_size=(56, 48)))[0]["image"].shape[1:] == (56, 48)
    with pytest.raises(DatasetError, match="unknown dataset 'voc'"):
        build_dataset(replace(cfg, dataset="voc"), "val", train=False)
