"""ADE20K / SceneParsing (150 classes, ignore 255).

Label PNGs hold 0 (other) and 1..150; the official "reduce zero label" subtracts one, so 0
becomes ignore and the classes are 0..149. ``prepare`` accepts 0..150.

Two layouts are accepted (``--root``)::

    {train,val}/image/ADE_*.jpg  +  {train,val}/label/ADE_*.png             (official lists)
    ADEChallengeData2016/{images,annotations}/{training,validation}/ADE_*   (the download)

(the root may also be the ``ADEChallengeData2016`` folder itself). Lists: ``train.lst`` and
``val.lst`` with ``<image> <label>`` paths relative to the root.
"""

from __future__ import annotations

from pathlib import Path

from hrseg.data.errors import LayoutError
from hrseg.data.layout import Discovery, Sample, pair_by_stem, require_dirs
from hrseg.data.spec import DatasetSpec, bit_palette, lut_from_pairs

NAME = "ade20k"
LAYOUT = (
    "  <root>/{train,val}/image/ADE_*.jpg and <root>/{train,val}/label/ADE_*.png, or\n"
    "  <root>/ADEChallengeData2016/{images,annotations}/{training,validation}/ADE_*.{jpg,png}"
)
REQUIRED_SPLITS = ("train", "val")
OPTIONAL_SPLITS: tuple[str, ...] = ()
DERIVED_LISTS: dict[str, tuple[str, ...]] = {}
_ORIGINAL_SPLITS = {"train": "training", "val": "validation"}

CLASS_NAMES = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane",
    "grass", "cabinet", "sidewalk", "person", "earth", "door", "table", "mountain", "plant",
    "curtain", "chair", "car", "water", "painting", "sofa", "shelf", "house", "sea", "mirror",
    "rug", "field", "armchair", "seat", "fence", "desk", "rock", "wardrobe", "lamp",
    "bathtub", "railing", "cushion", "base", "box", "column", "signboard",
    "chest of drawers", "counter", "sand", "sink", "skyscraper", "fireplace", "refrigerator",
    "grandstand", "path", "stairs", "runway", "case", "pool table", "pillow", "screen door",
    "stairway", "river", "bridge", "bookcase", "blind", "coffee table", "toilet", "flower",
    "book", "hill", "bench", "countertop", "stove", "palm", "kitchen island", "computer",
    "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus", "towel", "light",
    "truck", "tower", "chandelier", "awning", "streetlight", "booth", "television receiver",
    "airplane", "dirt track", "apparel", "pole", "land", "bannister", "escalator", "ottoman",
    "bottle", "buffet", "poster", "stage", "van", "ship", "fountain", "conveyer belt",
    "canopy", "washer", "plaything", "swimming pool", "stool", "barrel", "basket",
    "waterfall", "tent", "bag", "minibike", "cradle", "oven", "ball", "food", "step", "tank",
    "trade name", "microwave", "pot", "animal", "bicycle", "lake", "dishwasher", "screen",
    "blanket", "sculpture", "hood", "sconce", "vase", "traffic light", "tray", "ashcan", "fan",
    "pier", "crt screen", "plate", "monitor", "bulletin board", "shower", "radiator", "glass",
    "clock", "flag",
)  # fmt: skip

SPEC = DatasetSpec(
    name=NAME,
    num_classes=150,
    class_names=CLASS_NAMES,
    palette=bit_palette(151)[1:],
    label_map=lut_from_pairs((v, v - 1) for v in range(1, 151)),
    layout=NAME,
    train_resize="short_side",
    eval_resize="short_side",
)
RAW_VALUES = frozenset(range(151))


def _original_base(root: Path) -> Path | None:
    for base in (root / "ADEChallengeData2016", root):
        if (base / "images" / "training").is_dir() and (base / "annotations" / "training").is_dir():
            return base
    return None


def discover(root: Path) -> Discovery:
    require_dirs(root, NAME, LAYOUT)
    original = _original_base(root)
    renamed = all((root / s / k).is_dir() for s in REQUIRED_SPLITS for k in ("image", "label"))
    if original is None and not renamed:
        raise LayoutError(f"{root} does not look like {NAME}: found neither layout. Expected layout:\n{LAYOUT}")
    found = Discovery()
    for split in REQUIRED_SPLITS:
        if renamed:
            image_dir, label_dir = root / split / "image", root / split / "label"
        else:
            image_dir = original / "images" / _ORIGINAL_SPLITS[split]
            label_dir = original / "annotations" / _ORIGINAL_SPLITS[split]
        found.add(split, pair_by_stem(split, root, image_dir, label_dir))
    return found


def format_line(split: str, sample: Sample) -> str:
    return f"{sample.image} {sample.label}"
