"""LIP, Look Into Person (20 classes incl. background 0, ignore 255).

Labels are used as stored (0..19). A horizontal flip swaps the left/right classes
14/15 (arms), 16/17 (legs), 18/19 (shoes). Training follows the official LIP rules: flip
(with the swap) on the raw image, resize to the crop size ignoring aspect, then the generic
random scale + crop without a second flip; testval resizes the image to the crop size and
keeps the label at its original size.

Layout (``--root``)::

    TrainVal_images/{train,val}_images/<id>.jpg
    TrainVal_parsing_annotations/{train,val}_segmentations/<id>.png

Lists (paths relative to the root): ``val.lst`` has ``<image> <label>`` lines (the official
testval/val list format); ``train.lst`` has ``<image> <label> <id>`` lines, the three-field
format the HRNet-OCR HEAD reader expects (it ignores the third field; hrseg reads the first two).
"""

from __future__ import annotations

from pathlib import Path

from hrseg.data.layout import Discovery, Sample, pair_by_stem, require_dirs
from hrseg.data.spec import DatasetSpec, bit_palette, lut_from_pairs

NAME = "lip"
IMAGE_DIR = "TrainVal_images"
LABEL_DIR = "TrainVal_parsing_annotations"
LAYOUT = (
    "  <root>/TrainVal_images/{train,val}_images/<id>.jpg\n"
    "  <root>/TrainVal_parsing_annotations/{train,val}_segmentations/<id>.png"
)
REQUIRED_SPLITS = ("train", "val")
OPTIONAL_SPLITS: tuple[str, ...] = ()
DERIVED_LISTS: dict[str, tuple[str, ...]] = {}

CLASS_NAMES = (
    "background", "hat", "hair", "glove", "sunglasses", "upper-clothes", "dress", "coat",
    "socks", "pants", "jumpsuits", "scarf", "skirt", "face", "left-arm", "right-arm",
    "left-leg", "right-leg", "left-shoe", "right-shoe",
)  # fmt: skip
FLIP_PAIRS = ((14, 15), (16, 17), (18, 19))

SPEC = DatasetSpec(
    name=NAME,
    num_classes=20,
    class_names=CLASS_NAMES,
    palette=bit_palette(20),
    label_map=lut_from_pairs((v, v) for v in range(20)),
    layout=NAME,
    flip_pairs=FLIP_PAIRS,
    train_resize="lip",
    eval_resize="crop_size",
)
RAW_VALUES = frozenset(range(20))


def discover(root: Path) -> Discovery:
    require_dirs(root, NAME, LAYOUT, IMAGE_DIR, LABEL_DIR)
    found = Discovery()
    for split in REQUIRED_SPLITS:
        found.add(split, pair_by_stem(split, root, root / IMAGE_DIR / f"{split}_images", root / LABEL_DIR / f"{split}_segmentations"))
    return found


def format_line(split: str, sample: Sample) -> str:
    if split == "train":
        return f"{sample.image} {sample.label} {sample.name}"
    return f"{sample.image} {sample.label}"
