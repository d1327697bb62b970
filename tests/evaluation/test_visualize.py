"""Prediction pictures: titled panels and a legend of the classes present; the confusion matrix;
line charts. Drawn with numpy and PIL: no matplotlib (issue 17)."""

from __future__ import annotations

import io
import math
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from hrseg.visualize import (
    _GAP,
    LEGEND_MAX,
    PANEL_TITLES,
    Picture,
    blues_table,
    classes_present,
    confusion_matrix_figure,
    figure_rgb,
    legend_entries,
    line_charts,
    nice_ticks,
    prediction_figure,
    prediction_panel,
    prediction_panels,
    save_figure,
    tick_labels,
)

PALETTE = [(128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156)]
NAMES = ["road", "sidewalk", "building", "wall"]


def _pictures():
    image = np.full((32, 64, 3), 100, np.uint8)
    label = np.zeros((32, 64), np.uint8)
    label[:, 40:] = 2
    label[:4] = 255  # ignored
    pred = label.copy()
    pred[10:20, 10:20] = 1
    return image, label, pred


def _has_colour(rgb, colour):
    return bool(np.all(rgb == np.asarray(colour, np.uint8), axis=-1).any())


def test_classes_present_most_pixels_first_without_ignore():
    _, label, pred = _pictures()
    assert classes_present(label, pred) == [0, 2, 1]
    assert classes_present(np.full((2, 2), 255)) == []


def test_panels_are_titled_and_the_legend_names_the_classes_present():
    image, label, pred = _pictures()
    assert [name for name, _ in prediction_panels(image, pred, PALETTE, label)] == list(PANEL_TITLES)
    assert [name for name, _ in prediction_panels(image, pred, PALETTE)] == ["image", "prediction"]
    title, entries = legend_entries(classes_present(pred, label), NAMES)
    assert title == "classes present"
    assert [t for _, t in entries] == ["0 road", "2 building", "1 sidewalk"]  # no "wall": absent
    assert [t for _, t in legend_entries([0, 2, 1])[1]] == ["0 class 0", "2 class 2", "1 class 1"]
    title, entries = legend_entries(list(range(LEGEND_MAX + 3)))
    assert title == "classes present (+3 more)" and len(entries) == LEGEND_MAX


def test_panel_is_an_rgb_array_with_titles_panels_and_legend_swatches():
    image, label, pred = _pictures()
    rgb = prediction_panel(image, pred, PALETTE, label, class_names=NAMES)
    assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
    assert 1100 <= rgb.shape[1] <= 1300  # three ~400-pixel panels (64 pixels enlarged 6 times)
    # the panels are in the picture pixel for pixel, enlarged by a whole factor, _GAP apart
    grey = (rgb == 100).all(axis=-1)  # the image panel (title text has some grey pixels too)
    top = int(np.nonzero(grey.sum(axis=1) >= 6 * 64)[0][0])
    left = int(np.nonzero(grey[top])[0][0])
    for i, (_, small) in enumerate(prediction_panels(image, pred, PALETTE, label)):
        big = np.repeat(np.repeat(small, 6, axis=0), 6, axis=1)
        x = left + i * (big.shape[1] + _GAP)
        assert np.array_equal(rgb[top : top + big.shape[0], x : x + big.shape[1]], big)
    # legend swatches in the palette colours of the classes present, and only those
    for present in PALETTE[:3]:
        assert _has_colour(rgb, present)
    assert not _has_colour(rgb, PALETTE[3])
    # dark title text above each panel
    titles = rgb[:top].min(axis=-1) < 80
    for third in np.array_split(np.arange(rgb.shape[1]), 3):
        assert titles[:, third].any()


def test_panel_without_truth_has_two_panels_and_shrinks_large_images():
    image, _, pred = _pictures()
    two = prediction_panel(image, pred, PALETTE)
    assert 700 <= two.shape[1] <= 900
    large = np.full((1024, 2048, 3), 50, np.uint8)
    rgb = prediction_panel(large, np.zeros((1024, 2048), np.uint8), PALETTE, np.zeros((1024, 2048), np.uint8), title="a title")
    assert rgb.shape[1] == 3 * 400 + 2 * 10 + 2 * 10 and rgb.shape[0] < 400


def test_prediction_figure_is_the_panel_in_a_matplotlib_figure():
    image, label, pred = _pictures()
    fig = prediction_figure(image, pred, PALETTE, label, class_names=NAMES)
    assert np.array_equal(figure_rgb(fig), prediction_panel(image, pred, PALETTE, label, class_names=NAMES))


def test_picture_saves_like_a_figure(tmp_path):
    picture = Picture(np.zeros((5, 7, 3), np.uint8))
    buffer = io.BytesIO()
    picture.savefig(buffer, format="png", dpi=100, bbox_inches="tight")  # what MlflowTracker.log_figure calls
    assert buffer.getvalue() == picture.png() and buffer.getvalue()[:8] == b"\x89PNG\r\n\x1a\n"
    picture.savefig(tmp_path / "p.jpg")
    with Image.open(tmp_path / "p.jpg") as saved:
        assert saved.format == "JPEG" and saved.size == (7, 5)
    save_figure(tmp_path / "p.png", picture)
    assert (tmp_path / "p.png").read_bytes() == picture.png()
    picture.savefig(tmp_path / "new" / "p.png")  # through hrseg.io: atomic, folder created, no temporary left
    assert [p.name for p in (tmp_path / "new").iterdir()] == ["p.png"] and (tmp_path / "new" / "p.png").read_bytes() == picture.png()
    with pytest.raises(ValueError):
        picture.savefig(io.BytesIO(), format="nonsense")
    assert np.array_equal(figure_rgb(picture), picture.rgb)


@pytest.mark.parametrize("k, names", [(4, NAMES), (19, [f"class {i}" for i in range(19)]), (60, None), (150, [str(i) for i in range(150)]), (1, ["only"])])
def test_confusion_matrix_picture(tmp_path, k, names):
    rng = np.random.default_rng(k)
    matrix = rng.integers(0, 20, (k, k)) + np.diag(rng.integers(50, 100, k))
    matrix[0] = 0  # a class without pixels: its row stays 0
    fig = confusion_matrix_figure(matrix, names, title="t")
    assert isinstance(fig, Picture)
    width, height = fig.size
    assert (300 < width < 1200 and 300 < height < 1200) or k == 1
    save_figure(tmp_path / "cm.png", fig)
    with Image.open(tmp_path / "cm.png") as saved:
        assert saved.size == (width, height)
    assert _has_colour(fig.rgb, blues_table()[0])  # empty cells: the lightest blue
    if k > 1:
        assert _has_colour(fig.rgb, blues_table()[-1]) or k > 20  # the colour bar's top at least
    counts = confusion_matrix_figure(matrix, names, normalize=False)
    assert counts.size[0] >= width - 40


def test_blues_matches_matplotlib():
    from matplotlib import colormaps

    expected = np.round(colormaps["Blues"](np.linspace(0, 1, 256))[:, :3] * 255)
    assert np.abs(blues_table().astype(int) - expected).max() <= 1


def test_nice_ticks_and_labels():
    assert nice_ticks(0.0, 1.0) == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
    assert tick_labels(nice_ticks(0.0, 1.0)) == ["0.0", "0.2", "0.4", "0.6", "0.8", "1.0"]
    assert nice_ticks(0.4, 12.6, 7, integer=True) == [2.0, 4.0, 6.0, 8.0, 10.0, 12.0]
    assert tick_labels([0.0, 0.025, 0.05]) == ["0.000", "0.025", "0.050"]
    assert tick_labels([1e-6, 2e-6]) == ["1.0e-06", "2.0e-06"]
    assert nice_ticks(1.0, 1.0) == [1.0] and nice_ticks(math.nan, 1.0) == []


def test_line_charts_survive_empty_single_and_nan_series():
    picture = line_charts([("empty", [], []), ("one", [1], [0.5]), ("nan", [1, 2, 3], [1.0, math.nan, 2.0])], xlabel="epoch", size=(600, 200))
    assert picture.size == (600, 200)
    assert _has_colour(picture.rgb, (31, 119, 180))


def test_pictures_do_not_import_matplotlib():
    code = (
        "import sys, numpy as np\n"
        "from hrseg.visualize import prediction_panel, confusion_matrix_figure, save_figure\n"
        "from hrseg.engine.training_log import write_training_curve\n"
        "import tempfile, pathlib\n"
        "d = pathlib.Path(tempfile.mkdtemp())\n"
        "label = np.zeros((8, 8), np.uint8); label[4:] = 1\n"
        "prediction_panel(np.zeros((8, 8, 3), np.uint8), label, [(1, 2, 3), (4, 5, 6)], label, class_names=['a', 'b'])\n"
        "save_figure(d / 'cm.png', confusion_matrix_figure(np.eye(2), ['a', 'b']))\n"
        "write_training_curve(d / 'curve.png', [{'epoch': 1, 'lr': 0.1, 'train_loss': 1.0, 'val_miou': 0.5}])\n"
        "assert 'matplotlib' not in sys.modules, 'matplotlib was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
