"""Cityscapes (19 classes, ignore 255): layout, list format and labelId -> trainId map.

The label map is built from ``cityscapesscripts.helpers.labels`` (the official table): every
labelId whose trainId is 0..18 maps to it, every other id (trainId 255 or -1) to 255.

Layout (``--root``)::

    leftImg8bit/{train,val,test}/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    gtFine/{train,val,test}/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png

Lists (official format, TAB-separated, paths relative to the root): ``train.lst``,
``val.lst``, ``trainval.lst`` (= train + val) with ``<image>\\t<label>``; ``test.lst`` (when
``leftImg8bit/test`` exists) with the image only.
"""

from __future__ import annotations

from pathlib import Path

from hrseg.data.layout import Discovery, Sample, pair_split, rel, require_dirs
from hrseg.data.spec import DatasetSpec, lut_from_pairs

NAME = "cityscapes"
IMAGE_SUFFIX = "_leftImg8bit.png"
LABEL_SUFFIX = "_gtFine_labelIds.png"
LAYOUT = (
    "  <root>/leftImg8bit/{train,val[,test]}/<city>/<city>_<seq>_<frame>_leftImg8bit.png\n"
    "  <root>/gtFine/{train,val}/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png"
)
REQUIRED_SPLITS = ("train", "val")
OPTIONAL_SPLITS = ("test",)  # image-only list
DERIVED_LISTS = {"trainval": ("train", "val")}


def _label_table():
    from cityscapesscripts.helpers.labels import labels

    return labels


def label_id_to_train_id() -> dict[int, int]:
    """labelId -> trainId for every labelId 0..33 of the official table (ignore -> 255)."""
    return {lab.id: (lab.trainId if 0 <= lab.trainId < 255 else 255) for lab in _label_table() if lab.id >= 0}


def train_id_to_label_id() -> dict[int, int]:
    """trainId 0..18 -> labelId (for writing submittable test-set predictions)."""
    return {lab.trainId: lab.id for lab in _label_table() if 0 <= lab.trainId < 255}


def _spec() -> DatasetSpec:
    by_train_id = {lab.trainId: lab for lab in _label_table() if 0 <= lab.trainId < 255}
    ordered = [by_train_id[i] for i in range(len(by_train_id))]
    return DatasetSpec(
        name=NAME,
        num_classes=len(ordered),
        class_names=tuple(lab.name for lab in ordered),
        palette=tuple(tuple(lab.color) for lab in ordered),
        label_map=lut_from_pairs(label_id_to_train_id().items()),
        layout=NAME,
    )


SPEC = _spec()
#: raw label values ``prepare`` accepts: the labelIds of the official table
RAW_VALUES = frozenset(label_id_to_train_id())


def discover(root: Path) -> Discovery:
    require_dirs(root, NAME, LAYOUT, "leftImg8bit", "gtFine")
    found = Discovery()
    for split in REQUIRED_SPLITS + OPTIONAL_SPLITS:
        image_dir = root / "leftImg8bit" / split
        if split in OPTIONAL_SPLITS and not image_dir.is_dir():
            continue
        labelled = split not in OPTIONAL_SPLITS
        images = {p.name[: -len(IMAGE_SUFFIX)]: rel(p, root) for p in image_dir.glob(f"*/*{IMAGE_SUFFIX}")}
        labels = {p.name[: -len(LABEL_SUFFIX)]: rel(p, root) for p in (root / "gtFine" / split).glob(f"*/*{LABEL_SUFFIX}")} if labelled else {}
        found.add(split, pair_split(split, images, labels, pattern=f"leftImg8bit/{split}/*/*{IMAGE_SUFFIX}", labelled=labelled))
    return found


def format_line(split: str, sample: Sample) -> str:
    return sample.image if sample.label is None else f"{sample.image}\t{sample.label}"
