"""Datasets: specs and label maps, on-disk layouts, list files, augmentation, torch datasets,
``prepare`` (verify + write lists) and miniature synthetic copies of the five datasets.

See ``docs/design.md`` ("Data API") for the contract and README "Datasets" for the layouts.
"""

from hrseg.data.catalog import DATASETS, LAYOUTS, get_layout, get_spec
from hrseg.data.dataset import SegmentationDataset, build_dataset, worker_init_fn
from hrseg.data.errors import DatasetCheckError, DatasetError, LayoutError
from hrseg.data.image_io import read_image, read_label
from hrseg.data.lists import ListEntry, read_list
from hrseg.data.prepare import prepare_dataset
from hrseg.data.spec import IGNORE_LABEL, IMAGENET_MEAN, IMAGENET_STD, DatasetSpec
from hrseg.data.synth import SYNTH_DATASETS, generate_synthetic
from hrseg.data.transforms import EvalTransform, TrainTransform, normalize

__all__ = [
    "DATASETS",
    "IGNORE_LABEL",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "LAYOUTS",
    "SYNTH_DATASETS",
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
    "normalize",
    "prepare_dataset",
    "read_image",
    "read_label",
    "read_list",
    "worker_init_fn",
]
