"""COCO-Stuff-10k (171 classes, ignore 255).

Label PNGs hold raw values 0..182 (0 = unlabeled, 1..182 = COCO-Stuff ids). The official map
sends the 172 values 0..182 minus {12, 26, 29, 30, 45, 66, 68, 69, 71, 83, 91} to their
position in that list and then subtracts one, so unlabeled (0) becomes ignore and the classes
are 0..170. The official code turns the eleven unused ids into 254 (an invalid class);
hrseg maps them, and anything above 182, to ignore 255. ``prepare`` accepts 0..182 and
reports larger values.

Layout (``--root``)::

    {train,val}/image/<name>.jpg
    {train,val}/label/<name>.png

Lists: ``train.lst`` and ``val.lst`` with ``<split>/image/<name>.jpg <split>/label/<name>.png``.
"""

from __future__ import annotations

from pathlib import Path

from hrseg.data.layout import Discovery, Sample, pair_by_stem, require_dirs
from hrseg.data.spec import DatasetSpec, bit_palette, lut_from_pairs

NAME = "cocostuff"
LAYOUT = "  <root>/{train,val}/image/<name>.jpg\n  <root>/{train,val}/label/<name>.png"
REQUIRED_SPLITS = ("train", "val")
OPTIONAL_SPLITS: tuple[str, ...] = ()
DERIVED_LISTS: dict[str, tuple[str, ...]] = {}

#: raw ids the official mapping leaves out (COCO thing ids that are not used)
UNUSED_IDS = (12, 26, 29, 30, 45, 66, 68, 69, 71, 83, 91)
#: the official mapping list: raw value -> its position, then minus one
MAPPED_VALUES = tuple(v for v in range(183) if v not in UNUSED_IDS)

THING_NAMES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat",
    "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack",
    "umbrella", "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball",
    "kite", "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket",
    "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair",
    "couch", "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse",
    "remote", "keyboard", "cell phone", "microwave", "oven", "toaster", "sink",
    "refrigerator", "book", "clock", "vase", "scissors", "teddy bear", "hair drier",
    "toothbrush",
)  # fmt: skip
STUFF_NAMES = (
    "banner", "blanket", "branch", "bridge", "building-other", "bush", "cabinet", "cage",
    "cardboard", "carpet", "ceiling-other", "ceiling-tile", "cloth", "clothes", "clouds",
    "counter", "cupboard", "curtain", "desk-stuff", "dirt", "door-stuff", "fence",
    "floor-marble", "floor-other", "floor-stone", "floor-tile", "floor-wood", "flower", "fog",
    "food-other", "fruit", "furniture-other", "grass", "gravel", "ground-other", "hill",
    "house", "leaves", "light", "mat", "metal", "mirror-stuff", "moss", "mountain", "mud",
    "napkin", "net", "paper", "pavement", "pillow", "plant-other", "plastic", "platform",
    "playingfield", "railing", "railroad", "river", "road", "rock", "roof", "rug", "salad",
    "sand", "sea", "shelf", "sky-other", "skyscraper", "snow", "solid-other", "stairs",
    "stone", "straw", "structural-other", "table", "tent", "textile-other", "towel", "tree",
    "vegetable", "wall-brick", "wall-concrete", "wall-other", "wall-panel", "wall-stone",
    "wall-tile", "wall-wood", "water-other", "waterdrops", "window-blind", "window-other",
    "wood",
)  # fmt: skip

SPEC = DatasetSpec(
    name=NAME,
    num_classes=171,
    class_names=THING_NAMES + STUFF_NAMES,
    palette=bit_palette(172)[1:],
    # position in MAPPED_VALUES minus one: value 0 (unlabeled) -> -1, i.e. ignore
    label_map=lut_from_pairs((v, i - 1) for i, v in enumerate(MAPPED_VALUES) if i > 0),
    layout=NAME,
    train_resize="short_side",
    eval_resize="short_side",
)
RAW_VALUES = frozenset(range(183))


def discover(root: Path) -> Discovery:
    require_dirs(root, NAME, LAYOUT, *(f"{s}/{k}" for s in REQUIRED_SPLITS for k in ("image", "label")))
    found = Discovery()
    for split in REQUIRED_SPLITS:
        found.add(split, pair_by_stem(split, root, root / split / "image", root / split / "label"))
    return found


def format_line(split: str, sample: Sample) -> str:
    return f"{sample.image} {sample.label}"
