"""Prediction pictures: titled panels and a legend of the classes present."""

from __future__ import annotations

import numpy as np

from hrseg.visualize import PANEL_TITLES, classes_present, prediction_figure, prediction_panel

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


def test_classes_present_most_pixels_first_without_ignore():
    _, label, pred = _pictures()
    assert classes_present(label, pred) == [0, 2, 1]
    assert classes_present(np.full((2, 2), 255)) == []


def test_panels_are_titled_and_the_legend_names_the_classes_present():
    image, label, pred = _pictures()
    fig = prediction_figure(image, pred, PALETTE, label, class_names=NAMES)
    assert [ax.get_title() for ax in fig.axes] == list(PANEL_TITLES)
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == ["0 road", "2 building", "1 sidewalk"]  # no "wall": absent
    without_truth = prediction_figure(image, pred, PALETTE, class_names=None)
    assert [ax.get_title() for ax in without_truth.axes] == ["image", "prediction"]
    assert [t.get_text() for t in without_truth.legends[0].get_texts()] == ["0 class 0", "2 class 2", "1 class 1"]


def test_panel_is_an_rgb_array():
    image, label, pred = _pictures()
    rgb = prediction_panel(image, pred, PALETTE, label, class_names=NAMES)
    assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
    assert rgb.shape[1] == 1200  # three 4-inch panels at 100 dpi
