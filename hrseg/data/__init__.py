"""Datasets: specs and label maps, on-disk layouts, list files, augmentation, torch datasets,
``prepare`` (verify + write lists) and miniature synthetic copies of the five datasets; your
own dataset (``custom``: a folder layout or list files plus a ``classes.yaml``) and per-class
pixel statistics / class weights.

See ``docs/design.md`` ("Data API") for the contract and README "Datasets" for the layouts.
"""

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
