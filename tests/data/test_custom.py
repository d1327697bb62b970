"""Custom datasets: the classes file, the folder layout and list files, id and RGB masks,
``hrseg prepare custom`` and reading the prepared lists for training."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from hrseg.data import build_dataset, get_spec, prepare_dataset, read_label
from hrseg.data.custom import load_classes, parse_classes, rgb_to_index
from hrseg.data.errors import DatasetError
from hrseg.data.lists import read_list
from hrseg.data.synth import CUSTOM_NAMES, CUSTOM_PALETTE, generate_synthetic
from hrseg.recipe import DataConfig


def write_image(path: Path, h: int = 8, w: int = 10, value: int = 100) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((h, w, 3), value, np.uint8))


def write_mask(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, np.uint8)).save(path)


def write_classes(root: Path, text: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "classes.yaml").write_text(text)
    return root / "classes.yaml"


def mask(h: int = 8, w: int = 10, values=(0, 1)) -> np.ndarray:
    m = np.full((h, w), values[0], np.uint8)
    m[: h // 2] = values[1]
    return m


@pytest.fixture(scope="module")
def synth_custom(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("synth_custom")
    generate_synthetic(base, datasets=["custom", "custom_rgb"])
    return base


def data_cfg(root: Path, lists: Path, classes: Path | None = None) -> DataConfig:
    return DataConfig(dataset="custom", root=root, lists=lists, classes=classes or root / "classes.yaml", crop_size=(32, 32), base_size=64, num_workers=0)


# --- the synthetic sets ---------------------------------------------------------------------


def test_synthetic_id_masks_prepare_and_map_through_the_mapping(synth_custom, tmp_path):
    root = synth_custom / "custom"
    summary = prepare_dataset("custom", root, tmp_path / "lists", workers=1, class_weights="median")
    assert summary["lists"] == {"train.lst": 16, "val.lst": 6, "trainval.lst": 22, "test.lst": 2}
    assert summary["classes"] == list(CUSTOM_NAMES) and summary["absent_classes"] == []
    assert summary["splits"]["train"]["label_values"] == [0, 10, 20, 30, 40, 50, 255]
    assert sum(summary["class_frequencies"]) == pytest.approx(1.0, abs=1e-5)
    assert len(summary["class_weights"]["weights"]) == 6 and summary["class_weights"]["method"] == "median"
    assert json.loads((tmp_path / "lists" / "summary.json").read_text()) == summary
    # nested folders and mixed extensions, paths relative to the root
    lines = (tmp_path / "lists" / "train.lst").read_text().splitlines()
    assert "images/train/site_0/train_0000.jpg labels/train/site_0/train_0000.png" in lines
    assert "images/train/site_1/train_0001.png labels/train/site_1/train_0001.png" in lines
    assert (tmp_path / "lists" / "test.lst").read_text().splitlines()[0] == "images/test/site_0/test_0000.jpg"

    spec = get_spec("custom", root / "classes.yaml")
    assert spec.num_classes == 6 and spec.class_names == CUSTOM_NAMES and spec.palette == CUSTOM_PALETTE
    dataset = build_dataset(data_cfg(root, tmp_path / "lists"), "val", train=False)
    image, label = dataset.load(0)
    raw = read_label(dataset.entries[0].label)
    assert set(np.unique(raw)) <= {0, 10, 20, 30, 40, 50, 255}
    assert np.array_equal(label, np.where(raw == 255, 255, raw // 10))
    train = build_dataset(data_cfg(root, tmp_path / "lists"), "train", train=True)
    assert set(np.unique(train[0]["label"].numpy())) <= {0, 1, 2, 3, 4, 5, 255}


def test_synthetic_rgb_masks_become_class_index_pngs(synth_custom, tmp_path):
    root = synth_custom / "custom_rgb"
    lists = tmp_path / "lists"
    summary = prepare_dataset("custom", root, lists, workers=2)
    assert summary["masks"] == "rgb" and "class_weights" not in summary
    assert summary["splits"]["train"]["label_values"] == sorted({"#%02x%02x%02x" % c for c in CUSTOM_PALETTE} | {"#ffffff"})
    entries = read_list(lists / "val.lst", root, labels_relative_to="list")
    assert all(e.label.is_relative_to(lists / "index_labels") for e in entries)
    spec = get_spec("custom", root / "classes.yaml")
    assert spec.labels_relative_to == "list"
    dataset = build_dataset(data_cfg(root, lists), "val", train=False)
    for i, entry in enumerate(dataset.entries):
        colours = np.array(Image.open(root / "labels" / "val" / Path(*entry.label.relative_to(lists / "index_labels" / "labels" / "val").parts)).convert("RGB"))
        expected = np.full(colours.shape[:2], 255, np.uint8)
        for k, c in enumerate(CUSTOM_PALETTE):
            expected[(colours == c).all(axis=2)] = k
        _, label = dataset.load(i)
        assert np.array_equal(label, expected)
    assert any((dataset.load(i)[1] == 255).any() for i in range(len(dataset)))  # white is ignored


def test_synthetic_custom_is_deterministic(synth_custom, tmp_path):
    generate_synthetic(tmp_path, datasets=["custom"])
    for p in (synth_custom / "custom").rglob("*"):
        if p.is_file():
            assert (tmp_path / "custom" / p.relative_to(synth_custom / "custom")).read_bytes() == p.read_bytes()


# --- format variants ------------------------------------------------------------------------


def test_nested_folders_mixed_extensions_and_binary_0_255_masks(tmp_path):
    root = tmp_path / "cracks"
    write_classes(root, "names: [background, crack]\nmapping: {0: background, 255: crack}\nignore: []\n")
    for split, stems in (("train", ["a", "deep/b", "deep/er/c"]), ("val", ["v"])):
        for k, stem in enumerate(stems):
            ext = (".jpg", ".PNG", ".tif")[k % 3]
            write_image(root / "images" / split / f"{stem}{ext}")
            write_mask(root / "labels" / split / f"{stem}.png", mask(values=(0, 255)))
    (root / "images" / "train" / "notes.txt").write_text("not an image")
    (root / "images" / "train" / ".DS_Store").write_bytes(b"\0")
    summary = prepare_dataset("custom", root, tmp_path / "lists", workers=1, class_weights="inverse")
    assert summary["lists"]["train.lst"] == 3
    assert (tmp_path / "lists" / "train.lst").read_text().splitlines() == [
        "images/train/a.jpg labels/train/a.png",
        "images/train/deep/b.PNG labels/train/deep/b.png",
        "images/train/deep/er/c.tif labels/train/deep/er/c.png",
    ]
    assert summary["splits"]["train"]["class_pixels"] == [120, 120]
    assert summary["class_weights"]["weights"] == [1.0, 1.0]
    dataset = build_dataset(data_cfg(root, tmp_path / "lists"), "train", train=False)
    assert set(np.unique(dataset.load(2)[1])) == {0, 1}


def test_list_files_for_data_that_lives_elsewhere(tmp_path):
    elsewhere = tmp_path / "store"
    for name in ("x", "y", "z"):
        write_image(elsewhere / "img" / f"{name}.jpg")
        write_mask(elsewhere / "ann" / f"{name}.png", mask())
    root = tmp_path / "ds"
    (root / "splits").mkdir(parents=True)
    # absolute paths, and paths relative to the list file's folder; comments and blank lines
    (root / "splits" / "train.txt").write_text(
        f"# image label\n{elsewhere}/img/x.jpg {elsewhere}/img/../ann/x.png\n\n../../store/img/y.jpg ../../store/ann/y.png\n"
    )
    write_image(root / "local" / "z.png")
    write_mask(root / "local" / "z_mask.png", mask())
    (root / "splits" / "val.txt").write_text("../local/z.png ../local/z_mask.png\n")
    write_classes(root, "names: [a, b]\nlists: {train: splits/train.txt, val: splits/val.txt}\n")
    prepare_dataset("custom", root, tmp_path / "lists", workers=1)
    train = (tmp_path / "lists" / "train.lst").read_text().splitlines()
    assert train == [f"{elsewhere}/img/x.jpg {elsewhere}/ann/x.png", f"{elsewhere}/img/y.jpg {elsewhere}/ann/y.png"]
    assert (tmp_path / "lists" / "val.lst").read_text() == "local/z.png local/z_mask.png\n"
    dataset = build_dataset(data_cfg(root, tmp_path / "lists"), "train", train=False)
    assert dataset.load(1)[1].shape == (8, 10)


def test_list_files_with_rgb_masks(tmp_path):
    root = tmp_path / "ds"
    colours = np.zeros((8, 10, 3), np.uint8)
    colours[:4] = (255, 0, 0)
    for name in ("p", "q"):
        write_image(tmp_path / "store" / f"{name}.jpg")
        write_mask(tmp_path / "store" / f"{name}.png", colours)
    write_classes(root, "names: [bg, red]\npalette: ['#000000', [255, 0, 0]]\nmasks: rgb\nlists: {train: t.txt, val: v.txt}\n")
    (root / "t.txt").write_text(f"{tmp_path}/store/p.jpg {tmp_path}/store/p.png\n")
    (root / "v.txt").write_text(f"{tmp_path}/store/q.jpg {tmp_path}/store/q.png\n")
    prepare_dataset("custom", root, tmp_path / "lists", workers=1)
    dataset = build_dataset(data_cfg(root, tmp_path / "lists"), "val", train=False)
    assert np.array_equal(dataset.load(0)[1], (colours[..., 0] == 255).astype(np.uint8))


def test_classes_file_elsewhere_flip_pairs_and_default_palette(tmp_path):
    root = tmp_path / "ds"
    classes = tmp_path / "conf" / "parts.yaml"
    classes.parent.mkdir()
    classes.write_text("names: [bg, left_hand, right_hand, head]\nflip_pairs: [[left_hand, 2]]\nignore: [254, 255]\n")
    spec = get_spec("custom", classes)
    assert spec.flip_pairs == ((1, 2),)
    assert spec.palette[:2] == ((0, 0, 0), (128, 0, 0))  # the VOC bit palette
    assert spec.lut()[[0, 3, 4, 254, 255]].tolist() == [0, 3, 255, 255, 255]
    for split in ("train", "val"):
        write_image(root / "images" / split / "a.png")
        write_mask(root / "labels" / split / "a.png", mask(values=(254, 3)))
    assert prepare_dataset("custom", root, tmp_path / "lists", classes=classes)["splits"]["val"]["label_values"] == [3, 254]


def test_rgb_to_index_reports_unknown_colours():
    rgb = np.array([[[0, 0, 0], [255, 0, 0]], [[1, 2, 3], [1, 2, 3]]], np.uint8)
    index, unknown, present = rgb_to_index(rgb, {0: 0, 255 << 16: 1})
    assert index.tolist() == [[0, 1], [255, 255]]
    assert unknown == [((1 << 16) | (2 << 8) | 3, 2)] and len(present) == 3


# --- the classes file: every problem at once ------------------------------------------------


def test_classes_file_problems_are_listed_together(tmp_path):
    path = write_classes(
        tmp_path,
        "names: [bg, bg, car]\npalette: [[0, 0, 0], [300, 0, 0]]\nmapping: {0: bg, 7: truck, 999: car}\n"
        "ignore: 7\nflip_pairs: [[car, car], [bg]]\ncolour: red\n",
    )
    with pytest.raises(DatasetError) as info:
        load_classes(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    for expected in (
        "unknown key(s) colour",
        "names: duplicate class name(s) ['bg']",
        "palette[1]: expected a colour",
        "palette: 2 colour(s) for 3 class(es)",
        "mapping[7]: 'truck' is neither a class name nor an index 0..2",
        "mapping key 999: expected a label value 0..255",
        "flip_pairs[0]",
        "flip_pairs[1]: expected [left, right]",
    ):
        assert expected in message, expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("names: [crack]\n", "segmentation needs at least 2. For one foreground class list the background too, e.g. names: [background, crack]"),
        ("palette: [[0, 0, 0]]\n", "names: missing"),
        ("names: [a, b]\nmasks: rgb\n", "palette: required for masks: rgb"),
        ("names: [a, b]\nmasks: colour\n", "masks: expected 'id'"),
        ("names: [a, b]\nmasks: rgb\npalette: [[1, 1, 1], '#010101']\n", "share the colour #010101"),
        ("names: [a, b]\nmasks: rgb\npalette: [[1, 1, 1], [2, 2, 2]]\nignore: [2, 2, 2]\n", "ignore: colour(s) ['#020202'] are also class colours"),
        ("names: [a, b]\nmasks: rgb\npalette: [[1, 1, 1], [2, 2, 2]]\nmapping: {1: a}\n", "mapping: applies to id masks"),
        ("names: [a, b]\nignore: 1\n", "ignore: value(s) [1] are also class values (b); add a mapping"),
        ("names: [a, b]\nlists: {train: t.txt, dev: d.txt}\n", "unknown split(s) ['dev']"),
        ("names: [a, b]\nlists: {train: t.txt}\n", "missing split(s) ['val']"),
        ("names: a\n", "names: expected a list of non-empty strings"),
        ("- a\n- b\n", "expected a mapping at the top level"),
        ("names: [a, b\n", "invalid YAML"),
    ],
)
def test_classes_file_errors(tmp_path, text, expected):
    with pytest.raises(DatasetError, match="classes.yaml") as info:
        load_classes(write_classes(tmp_path, text))
    assert expected in str(info.value)


def test_missing_classes_file_and_custom_without_classes(tmp_path):
    with pytest.raises(DatasetError, match=r"nope\.yaml: classes file not found"):
        load_classes(tmp_path / "nope.yaml")
    with pytest.raises(DatasetError, match="set data.classes"):
        get_spec("custom")
    with pytest.raises(DatasetError, match="classes file not found"):
        prepare_dataset("custom", tmp_path, tmp_path / "lists")
    with pytest.raises(DatasetError, match="are for custom datasets"):
        prepare_dataset("lip", tmp_path, tmp_path / "lists", classes=tmp_path / "c.yaml")
    assert parse_classes({"names": ["a", "b"]}, Path("x.yaml")).num_classes == 2


# --- prepare: every problem at once, nothing written -----------------------------------------


def test_prepare_reports_every_problem_with_file_names_and_writes_nothing(tmp_path):
    root = tmp_path / "ds"
    write_classes(root, "names: [bg, fg]\n")
    good = mask()
    write_image(root / "images/train/ok.jpg")
    write_mask(root / "labels/train/ok.png", good)
    write_image(root / "images/train/nolabel.jpg")
    write_mask(root / "labels/train/orphan.png", good)
    write_image(root / "images/train/values.jpg")
    write_mask(root / "labels/train/values.png", mask(values=(0, 7)))
    write_image(root / "images/train/size.jpg", h=9)
    write_mask(root / "labels/train/size.png", good)
    (root / "images/train/corrupt.png").write_bytes(b"not a png")
    write_mask(root / "labels/train/corrupt.png", good)
    write_image(root / "images/train/colour.jpg")
    write_mask(root / "labels/train/colour.png", np.zeros((8, 10, 3), np.uint8))
    write_image(root / "images/train/twin.jpg")
    write_image(root / "images/train/twin.png")
    write_mask(root / "labels/train/twin.png", good)
    write_image(root / "images/train/lossy.jpg")
    write_image(root / "labels/train/lossy.jpg")
    write_image(root / "images/train/with space.jpg")
    write_mask(root / "labels/train/with space.png", good)
    (root / "images/val").mkdir(parents=True)
    (root / "labels/val").mkdir(parents=True)
    out = tmp_path / "lists"
    out.mkdir()
    (out / "train.lst").write_text("old\n")
    with pytest.raises(DatasetError) as info:
        prepare_dataset("custom", root, out, workers=2)
    message = str(info.value)
    for expected in (
        "images/train/nolabel.jpg: missing label file",
        "labels/train/orphan.png: label without image",
        "labels/train/values.png: label values [7] are not in classes.yaml",
        "labels/train/size.png: label is 8x10 but image images/train/size.jpg is 9x10",
        "images/train/corrupt.png: cannot decode image",
        "colour.png: expected a single-channel",
        "set masks: rgb and the palette in classes.yaml",
        "images/train/twin.png: same path and stem as images/train/twin.jpg",
        "labels/train/lossy.jpg: label masks must be PNG",
        "images/train/with space.jpg: the path contains white space",
        "split 'val' is empty",
    ):
        assert expected in message, expected
    assert message.startswith("custom: 12 problem(s)")
    assert (out / "train.lst").read_text() == "old\n" and sorted(p.name for p in out.iterdir()) == ["train.lst"]


def test_prepare_rgb_problems_leave_no_index_labels(tmp_path):
    root = tmp_path / "ds"
    write_classes(root, "names: [bg, red]\npalette: [[0, 0, 0], [255, 0, 0]]\nmasks: rgb\n")
    colours = np.zeros((8, 10, 3), np.uint8)
    for split in ("train", "val"):
        write_image(root / "images" / split / "a.jpg")
        write_mask(root / "labels" / split / "a.png", colours)
    bad = colours.copy()
    bad[0, :3] = (0, 255, 0)
    write_image(root / "images/val/b.jpg")
    write_mask(root / "labels/val/b.png", bad)
    write_image(root / "images/val/grey.jpg")
    write_mask(root / "labels/val/grey.png", np.zeros((8, 10), np.uint8))
    with pytest.raises(DatasetError) as info:
        prepare_dataset("custom", root, tmp_path / "lists")
    assert "labels/val/b.png: colour(s) #00ff00 (3 px) are neither in the palette nor ignore colours of classes.yaml" in str(info.value)
    assert "labels/val/grey.png: expected a colour (RGB) mask for masks: rgb, got mode 'L'" in str(info.value)
    assert not (tmp_path / "lists").exists() or not any((tmp_path / "lists").rglob("*.png"))


def test_layout_and_list_file_errors(tmp_path):
    root = tmp_path / "ds"
    write_classes(root, "names: [a, b]\n")
    (root / "images/train").mkdir(parents=True)
    with pytest.raises(DatasetError, match=r"missing labels/train/, images/val/, labels/val/.*Expected layout"):
        prepare_dataset("custom", root, tmp_path / "lists")
    with pytest.raises(DatasetError, match="does not exist"):
        prepare_dataset("custom", tmp_path / "absent", tmp_path / "lists", classes=root / "classes.yaml")
    write_classes(root, "names: [a, b]\nlists: {train: t.txt, val: v.txt}\n")
    (root / "t.txt").write_text("one.jpg\nx.jpg y.png z.png\n")
    with pytest.raises(DatasetError) as info:
        prepare_dataset("custom", root, tmp_path / "lists")
    message = str(info.value)
    assert f"{root / 't.txt'}:1: expected 'image label'" in message and f"{root / 't.txt'}:2:" in message
    assert f"{root / 'v.txt'}: list file for split 'val' not found" in message
    with pytest.raises(DatasetError, match="unknown class-weight method 'log'"):
        prepare_dataset("custom", root, tmp_path / "lists", class_weights="log")


# --- the command line -----------------------------------------------------------------------


def test_cli_prepare_custom_defaults_out_and_prints_weights(synth_custom, tmp_path):
    import shutil

    from hrseg.cli import app

    root = tmp_path / "custom"
    shutil.copytree(synth_custom / "custom", root)
    result = CliRunner().invoke(app, ["prepare", "custom", "--root", str(root), "--class-weights", "inverse"])
    assert result.exit_code == 0, result.output
    assert (root / "lists" / "train.lst").is_file()
    assert "train.loss.class_weights=[" in result.output and "person" in result.output
    result = CliRunner().invoke(app, ["prepare", "lip", "--root", str(root)])
    assert result.exit_code == 1 and "--out is required for lip" in result.output
    write_classes(tmp_path / "bad", "names: [crack]\n")
    result = CliRunner().invoke(app, ["prepare", "custom", "--root", str(tmp_path / "bad")])
    assert result.exit_code == 1 and "names: [background, crack]" in result.output  # brackets are not rich markup
