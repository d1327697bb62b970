"""PASCAL-Context, 59 and 60 classes, from the Detail-format ``trainval_merged.json``.

The release-time official loader used detail-api's ``Detail.getMask(img)``: start from a zero
mask of the image's ``height x width`` and, for every segmentation annotation of the image in
file order, set the pixels of its decoded RLE mask to the annotation's ``category_id`` (later
annotations overwrite earlier ones). The 459-class mask is then mapped to 60 indices by
position in the sorted list ``MAPPING_IDS`` (0 = background); the official code asserts that
every mask value is one of those ids, hrseg reports other values as out-of-domain problems.
detail-api is not on PyPI: hrseg decodes the COCO-style RLE with ``pycocotools`` (a test
compares with detail-api when it is installed).

* 60 classes (``pascal_ctx60``): the index as is, background = class 0.
* 59 classes (``pascal_ctx``): index - 1, background becomes ignore. The official ignore value
  is -1; hrseg stores ignore as 255 in uint8 labels.

Layout (``--root``; the root may also be ``VOC2010`` itself)::

    VOCdevkit/VOC2010/JPEGImages/<yyyy>_<nnnnnn>.jpg
    VOCdevkit/VOC2010/trainval_merged.json

``hrseg prepare pascal_ctx`` writes the 60-class index PNGs to ``<out>/labels/{train,val}/``
and lists ``train.lst``/``val.lst`` with ``<image relative to the root> labels/<split>/<name>.png``:
the label path is relative to the list file's directory, so the dataset root plus the list
file is everything a dataset needs. Both specs read the same lists.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hrseg.data.errors import DatasetError, LayoutError
from hrseg.data.layout import Discovery, Sample, rel
from hrseg.data.spec import DatasetSpec, bit_palette, lut_from_pairs

NAME = "pascal_ctx"
JSON_NAME = "trainval_merged.json"
LAYOUT = "  <root>/VOCdevkit/VOC2010/JPEGImages/<name>.jpg\n  <root>/VOCdevkit/VOC2010/trainval_merged.json"
REQUIRED_SPLITS = ("train", "val")
LABEL_DIR = "labels"  # under the lists directory

#: the official 60 Detail category ids, sorted; the position is the 60-class index
MAPPING_IDS = (
    0, 2, 9, 18, 19, 22, 23, 25, 31, 33, 34, 44, 45, 46, 59, 65, 68, 72, 80, 85, 98, 104, 105,
    113, 115, 144, 158, 159, 162, 187, 189, 207, 220, 232, 258, 259, 260, 284, 295, 296, 308,
    324, 326, 347, 349, 354, 355, 360, 366, 368, 397, 415, 416, 420, 424, 427, 440, 445, 454,
    458,
)  # fmt: skip
CLASS_NAMES_60 = (
    "background", "aeroplane", "bag", "bed", "bedclothes", "bench", "bicycle", "bird", "boat",
    "book", "bottle", "building", "bus", "cabinet", "car", "cat", "ceiling", "chair", "cloth",
    "computer", "cow", "cup", "curtain", "dog", "door", "fence", "floor", "flower", "food",
    "grass", "ground", "horse", "keyboard", "light", "motorbike", "mountain", "mouse", "person",
    "plate", "platform", "pottedplant", "road", "rock", "sheep", "shelves", "sidewalk", "sign",
    "sky", "snow", "sofa", "table", "track", "train", "tree", "truck", "tvmonitor", "wall",
    "water", "window", "wood",
)  # fmt: skip

_COMMON = {"layout": NAME, "labels_relative_to": "list", "train_resize": "long_side", "eval_resize": "none"}
SPEC_60 = DatasetSpec(
    name="pascal_ctx60",
    num_classes=60,
    class_names=CLASS_NAMES_60,
    palette=bit_palette(60),
    label_map=lut_from_pairs((i, i) for i in range(60)),
    **_COMMON,
)
SPEC_59 = DatasetSpec(
    name="pascal_ctx",
    num_classes=59,
    class_names=CLASS_NAMES_60[1:],
    palette=bit_palette(60)[1:],
    label_map=lut_from_pairs((i, i - 1) for i in range(1, 60)),
    **_COMMON,
)
#: values of the generated 60-class index PNGs
RAW_VALUES = frozenset(range(60))

_ID_TO_INDEX = np.full(max(MAPPING_IDS) + 1, -1, dtype=np.int64)
_ID_TO_INDEX[list(MAPPING_IDS)] = np.arange(len(MAPPING_IDS))
_ID_TO_INDEX.setflags(write=False)


@dataclass
class DetailIndex:
    """The parts of a Detail annotation file that semantic segmentation needs."""

    path: Path
    images: list[dict]  # in file order, each with image_id, file_name, height, width, phase
    annotations: dict[int, list[dict]] = field(default_factory=dict)  # image_id -> anns in file order
    problems: list[str] = field(default_factory=list)


def find_voc_root(root: Path) -> Path:
    """The ``VOC2010`` directory (holding ``JPEGImages`` and the JSON) for a dataset root."""
    for base in (root / "VOCdevkit" / "VOC2010", root):
        if (base / "JPEGImages").is_dir() and (base / JSON_NAME).is_file():
            return base
    if not root.is_dir():
        raise LayoutError(f"{NAME}: dataset root {root} does not exist or is not a directory. Expected layout:\n{LAYOUT}")
    raise LayoutError(f"{root} does not look like {NAME}: no VOCdevkit/VOC2010/JPEGImages/ with {JSON_NAME}. Expected layout:\n{LAYOUT}")


#: The largest image side a Detail record may claim (the masks are allocated from it).
MAX_SIDE = 1 << 14


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _image_record_problem(img: object) -> str | None:
    """What is wrong with one entry of ``images`` (None: usable)."""
    if not isinstance(img, dict):
        return f"is a {type(img).__name__}, expected an object"
    missing = [k for k in ("image_id", "file_name", "height", "width", "phase") if k not in img]
    if missing:
        return f"lacks {', '.join(missing)}"
    if not (_is_int(img["image_id"]) or isinstance(img["image_id"], str)):
        return f"image_id {img['image_id']!r} is not a number or string"
    name = img["file_name"]
    if not isinstance(name, str) or not name or Path(name).name != name or name in (".", ".."):
        return f"file_name {name!r} is not a plain file name"
    for key in ("height", "width"):
        if not _is_int(img[key]) or not 0 < img[key] <= MAX_SIDE:
            return f"{key} {img[key]!r} is not a whole number of pixels in 1..{MAX_SIDE}"
    if not isinstance(img["phase"], str):
        return f"phase {img['phase']!r} is not a string"
    return None


def _annotation_problem(ann: object) -> str | None:
    """What is wrong with one entry of ``annos_segmentation`` (None: usable)."""
    if not isinstance(ann, dict):
        return f"is a {type(ann).__name__}, expected an object"
    missing = [k for k in ("image_id", "category_id", "segmentation") if k not in ann]
    if missing:
        return f"lacks {', '.join(missing)}"
    if not (_is_int(ann["image_id"]) or isinstance(ann["image_id"], str)):
        return f"image_id {ann['image_id']!r} is not a number or string"
    if not _is_int(ann["category_id"]):
        return f"category_id {ann['category_id']!r} is not a whole number"
    if not isinstance(ann["segmentation"], dict):
        return f"segmentation is a {type(ann['segmentation']).__name__}, expected an RLE object"
    return None


def load_detail(path: Path) -> DetailIndex:
    """Read and index a Detail JSON; structural problems raise, per-item ones are collected."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason}); expected the Detail JSON") from None
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    except RecursionError:
        raise DatasetError(f"{path}: nested too deeply to be a Detail JSON") from None
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read ({exc.strerror})") from None
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: expected a JSON object with 'images' and 'annos_segmentation', got {type(data).__name__}")
    for key in ("images", "annos_segmentation"):
        if not isinstance(data.get(key), list):
            raise DatasetError(f"{path}: missing list {key!r} (a Detail annotation file has 'images' and 'annos_segmentation')")
    index = DetailIndex(path=path, images=[])
    known: set[int] = set()
    for i, img in enumerate(data["images"]):
        problem = _image_record_problem(img)
        if problem:
            index.problems.append(f"{path.name}: images[{i}] {problem}")
            continue
        index.images.append(img)
        known.add(img["image_id"])
    for i, ann in enumerate(data["annos_segmentation"]):
        problem = _annotation_problem(ann)
        if problem:
            index.problems.append(f"{path.name}: annos_segmentation[{i}] {problem}")
        elif ann["image_id"] not in known:
            index.problems.append(f"{path.name}: annos_segmentation[{i}] refers to unknown image_id {ann['image_id']}")
        else:
            index.annotations.setdefault(ann["image_id"], []).append(ann)
    return index


def _decode_rle(segmentation: dict, height: int, width: int) -> np.ndarray:
    from pycocotools import mask as mask_utils

    if isinstance(segmentation.get("counts"), list):  # uncompressed RLE
        segmentation = mask_utils.frPyObjects(segmentation, height, width)
    return mask_utils.decode(segmentation)


def semantic_mask(image: dict, annotations: list[dict]) -> tuple[np.ndarray, list[str]]:
    """detail-api ``getMask(img)``: the Detail category id of every pixel (0 = none).

    Returns the int64 mask and problems (undecodable RLE, RLE size != image size)."""
    height, width = int(image["height"]), int(image["width"])
    mask = np.zeros((height, width), dtype=np.int64)
    problems = []
    for ann in annotations:
        seg = ann["segmentation"]
        try:
            binary = _decode_rle(seg, height, width)
        except Exception as exc:  # noqa: BLE001 - pycocotools raises assorted types on bad RLE; report, don't crash
            problems.append(f"{image['file_name']}: annotation {ann.get('id', '?')} has an undecodable RLE mask ({exc})")
            continue
        if binary.shape != (height, width):
            problems.append(
                f"{image['file_name']}: annotation {ann.get('id', '?')} mask is {binary.shape[0]}x{binary.shape[1]}, "
                f"image is {height}x{width}"
            )
            continue
        mask[binary != 0] = ann["category_id"]
    return mask, problems


def to_index(mask: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """Map Detail ids to the 60-class index (uint8). Returns the index and the sorted mask
    values that are not among the 60 ids (their pixels are set to 255)."""
    values = np.unique(mask)
    bad = [int(v) for v in values if v < 0 or v >= len(_ID_TO_INDEX) or _ID_TO_INDEX[v] < 0]
    clipped = np.clip(mask, 0, len(_ID_TO_INDEX) - 1)
    index = _ID_TO_INDEX[clipped]
    index[(index < 0) | (mask != clipped)] = 255
    return index.astype(np.uint8), bad


def discover(root: Path, detail: DetailIndex) -> tuple[Discovery, dict[str, list[dict]]]:
    """Samples per phase in file order, and the matching Detail image records.

    A sample's ``label`` is the PNG path that ``prepare`` writes, relative to the lists dir."""
    voc = find_voc_root(root)
    found = Discovery(problems=list(detail.problems))
    records: dict[str, list[dict]] = {}
    for split in REQUIRED_SPLITS:
        records[split] = [img for img in detail.images if img["phase"] == split]
        found.splits[split] = [
            Sample(
                image=rel(voc / "JPEGImages" / img["file_name"], root),
                label=f"{LABEL_DIR}/{split}/{Path(img['file_name']).stem}.png",
                name=Path(img["file_name"]).stem,
            )
            for img in records[split]
        ]
        if not records[split]:
            found.problems.append(f"split {split!r} is empty: no image with phase {split!r} in {rel(detail.path, root)}")
    return found, records


def format_line(split: str, sample: Sample) -> str:
    return f"{sample.image} {sample.label}"
