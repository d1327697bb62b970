"""Datasets: specs and label maps, on-disk layouts, list files, augmentation, torch datasets,
``prepare`` (verify + write lists) and miniature synthetic copies of the five datasets; your
own dataset (``custom``: a folder layout or list files plus a ``classes.yaml``) and per-class
pixel statistics / class weights.

See ``docs/design.md`` ("Data API") for the contract and README "Datasets" for the layouts.

The names below load their module at first use (PEP 562, ``_LAZY``): ``import hrseg.data``
costs nothing, ``hrseg.data.get_spec`` loads the catalogue (no torch), and
``hrseg.data.SegmentationDataset`` loads torch. ``tests/test_layers.py`` reads ``_LAZY`` as
this package's imports and checks that it, the ``TYPE_CHECKING`` block and ``__all__`` name
the same things.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hrseg.lazy import lazy_attributes

if TYPE_CHECKING:
    from hrseg.data.catalog import CUSTOM, DATASETS, LAYOUTS, get_layout, get_spec
    from hrseg.data.class_stats import ClassStats
    from hrseg.data.custom import CustomClasses, load_classes
    from hrseg.data.dataset import SegmentationDataset, build_dataset, worker_init_fn
    from hrseg.data.errors import DatasetCheckError, DatasetError, LayoutError
    from hrseg.data.image_io import read_image, read_label
    from hrseg.data.lists import ListEntry, read_list
    from hrseg.data.prepare import prepare_dataset
    from hrseg.data.spec import IGNORE_LABEL, IMAGENET_MEAN, IMAGENET_STD, DatasetSpec
    from hrseg.data.synth import SYNTH_DATASETS, generate_synthetic
    from hrseg.data.transforms import EvalTransform, TrainTransform, normalize

#: public name -> the module that defines it (imported when the name is first used)
_LAZY: dict[str, str] = {
    "CUSTOM": "hrseg.data.catalog",
    "DATASETS": "hrseg.data.catalog",
    "LAYOUTS": "hrseg.data.catalog",
    "get_layout": "hrseg.data.catalog",
    "get_spec": "hrseg.data.catalog",
    "ClassStats": "hrseg.data.class_stats",
    "CustomClasses": "hrseg.data.custom",
    "load_classes": "hrseg.data.custom",
    "SegmentationDataset": "hrseg.data.dataset",
    "build_dataset": "hrseg.data.dataset",
    "worker_init_fn": "hrseg.data.dataset",
    "DatasetCheckError": "hrseg.data.errors",
    "DatasetError": "hrseg.data.errors",
    "LayoutError": "hrseg.data.errors",
    "read_image": "hrseg.data.image_io",
    "read_label": "hrseg.data.image_io",
    "ListEntry": "hrseg.data.lists",
    "read_list": "hrseg.data.lists",
    "prepare_dataset": "hrseg.data.prepare",
    "IGNORE_LABEL": "hrseg.data.spec",
    "IMAGENET_MEAN": "hrseg.data.spec",
    "IMAGENET_STD": "hrseg.data.spec",
    "DatasetSpec": "hrseg.data.spec",
    "SYNTH_DATASETS": "hrseg.data.synth",
    "generate_synthetic": "hrseg.data.synth",
    "EvalTransform": "hrseg.data.transforms",
    "TrainTransform": "hrseg.data.transforms",
    "normalize": "hrseg.data.transforms",
}

__all__ = [
    "CUSTOM",
    "DATASETS",
    "IGNORE_LABEL",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "LAYOUTS",
    "SYNTH_DATASETS",
    "ClassStats",
    "CustomClasses",
    "DatasetCheckError",
    "DatasetError",
    "DatasetSpec",
    "EvalTransform",
    "LayoutError",
    "ListEntry",
    "SegmentationDataset",
    "TrainTransform",
    "build_dataset",
    "generate_synthetic",
    "get_layout",
    "get_spec",
    "load_classes",
    "normalize",
    "prepare_dataset",
    "read_image",
    "read_label",
    "read_list",
    "worker_init_fn",
]

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY, globals())
