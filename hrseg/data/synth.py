"""Miniature synthetic copies of the five datasets, in their exact on-disk formats.

``generate_synthetic(out, seed=0)`` writes ``out/<dataset>/`` for cityscapes, lip, pascal_ctx,
cocostuff and ade20k, so the real layout readers, ``hrseg prepare`` and the training pipeline
run on them unchanged, plus two custom-format datasets (``hrseg.data.custom``): ``custom``
(6 classes, id masks with arbitrary raw ids, nested folders, mixed .jpg/.png images) and
``custom_rgb`` (the same classes as colour masks). Everything is a pure function of the seed (byte-identical files).

Content: every class has its own colour and texture, shapes are plausible for the dataset
(street scenes, people, generic stuff bands + objects), with mild illumination change and
noise, so a small HRNet learns them quickly. Label files hold the *raw* values of the real
datasets, including values that map to ignore: Cityscapes labelIds such as 0 (unlabeled),
1 (ego vehicle) or 29 (caravan); COCO-Stuff 0 (unlabeled) and the eleven unused ids (12, 26,
...); ADE20K 0 (other); PASCAL-Context background (no annotation).

Class coverage: over each training split every class of the label space appears (all 19
Cityscapes trainIds, 20 LIP classes, 59 PASCAL-Context classes + background, all 171 COCO-Stuff
classes plus the unused ids, all 150 ADE20K classes). PASCAL-Context, COCO-Stuff and ADE20K
have a long tail, like the real datasets: ``FREQUENT`` stuff classes in every image,
``COMMON`` object classes that the training split shows several times each, and the tail,
each class once or twice. Their validation splits hold the frequent and common classes only:
a class seen once in twenty training images cannot be learnt, so a tail class in validation
would only add a zero to every mean. Test data, not a benchmark: numbers measured on it say
nothing about real datasets.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from types import MappingProxyType

import cv2
import numpy as np

import hrseg.data.cityscapes as cityscapes
import hrseg.data.lip as lip
import hrseg.data.pascal_ctx as pascal_ctx
from hrseg import io as hio
from hrseg.data.errors import DatasetError
from hrseg.data.scenes import Canvas, make_appearances, render

logger = logging.getLogger(__name__)

SYNTH_DATASETS = ("cityscapes", "lip", "pascal_ctx", "cocostuff", "ade20k", "custom", "custom_rgb")
_KEYS = MappingProxyType({name: i for i, name in enumerate(SYNTH_DATASETS)})
JPEG_QUALITY = 90
PNG_COMPRESSION = 9


def _encode(ext: str, array: np.ndarray, params: list[int]) -> bytes:
    ok, buffer = cv2.imencode(ext, np.ascontiguousarray(array), params)
    if not ok:
        raise RuntimeError(f"OpenCV could not encode a {array.shape} array as {ext}")
    return buffer.tobytes()


def _png(array: np.ndarray) -> bytes:
    return _encode(".png", array, [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION])


def _jpg(rgb: np.ndarray) -> bytes:
    return _encode(".jpg", rgb[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])


def _rotation(values: Sequence[int], start: int, count: int) -> list[int]:
    return [values[(start + j) % len(values)] for j in range(count)]


def _rng(seed: int, dataset: str, *parts: int) -> np.random.Generator:
    return np.random.default_rng([seed, _KEYS[dataset], *parts])


# --- scenes ---------------------------------------------------------------------------------

CS_SKY, CS_BUILDING, CS_ROAD, CS_SIDEWALK, CS_VEGETATION = 23, 11, 7, 8, 21
CS_OBJECTS = (12, 13, 17, 19, 20, 22, 24, 25, 26, 27, 28, 31, 32, 33)  # the other 14 trainId classes
CS_VOID = (0, 1, 3, 4, 5, 6, 9, 10, 14, 15, 16, 18, 29, 30)  # labelIds that map to ignore


def cityscapes_scene(rng: np.random.Generator, height: int, width: int, objects: list[int], voids: list[int]) -> Canvas:
    """A street: sky, buildings with a skyline, trees, sidewalk, a road in perspective, then
    objects standing on the ground (bigger when nearer) and a few void (ignored) regions."""
    c = Canvas(height, width, fill=CS_SKY)
    horizon = height * rng.uniform(0.4, 0.52)
    x = 0.0
    while x < width:
        w = rng.uniform(0.08, 0.25) * width
        c.rect(CS_BUILDING, x, rng.uniform(0.06, 0.3) * height, x + w, horizon)
        x += w
    for _ in range(int(rng.integers(1, 4))):
        cx, cy = rng.uniform(0, width), horizon - rng.uniform(0.05, 0.15) * height
        c.ellipse(CS_VEGETATION, cx, cy, rng.uniform(0.06, 0.15) * width, rng.uniform(0.08, 0.18) * height)
    c.band(CS_SIDEWALK, horizon, height)
    vx = width * rng.uniform(0.4, 0.6)
    right, left = width * rng.uniform(0.85, 1.1), width * rng.uniform(-0.1, 0.15)
    c.polygon(CS_ROAD, [(vx - 0.04 * width, horizon), (vx + 0.04 * width, horizon), (right, height), (left, height)])

    def ground(near: float) -> tuple[float, float]:  # a y on the ground and its perspective scale
        y = horizon + (height - horizon) * near
        return y, 0.35 + 0.65 * near

    def draw(value: int) -> None:
        x = rng.uniform(0.05, 0.95) * width
        y, s = ground(rng.uniform(0.1, 0.9))
        if value in (12, 13):  # wall, fence: low segments along the horizon
            c.rect(value, x - 0.16 * width, horizon - 0.18 * height, x + 0.16 * width, horizon + 0.03 * height)
        elif value == 17:  # pole
            c.rect(value, x, rng.uniform(0.05, 0.25) * height, x + 4 + 4 * s, y)
        elif value in (19, 20):  # traffic light / sign
            cy, r = rng.uniform(0.12, 0.35) * height, 0.07 * height
            if value == 19:
                c.rect(value, x - r / 2, cy - r, x + r / 2, cy + r)
            else:
                c.polygon(value, [(x, cy - r), (x + r, cy + r * 0.8), (x - r, cy + r * 0.8)])
        elif value == 22:  # terrain patch
            c.ellipse(value, x, y, 0.16 * width * s, 0.09 * height * s)
        elif value in (24, 25):  # person, rider
            body = 0.3 * height * s
            c.ellipse(value, x, y - body / 2, body * 0.2, body / 2)
            c.ellipse(value, x, y - body - body * 0.12, body * 0.14, body * 0.14)
        elif value in (26, 27, 28, 31):  # car, truck, bus, train
            length = {26: 0.26, 27: 0.3, 28: 0.4, 31: 0.6}[value] * width * s
            tall = {26: 0.16, 27: 0.26, 28: 0.28, 31: 0.24}[value] * height * s
            c.rect(value, x - length / 2, y - tall, x + length / 2, y)
            if value == 26:
                c.rect(value, x - length / 3, y - tall * 1.5, x + length / 4, y - tall + 1)
        else:  # motorcycle, bicycle: two wheels and a frame
            r = 0.06 * height * s + 2
            c.ellipse(value, x - 2 * r, y - r, r, r)
            c.ellipse(value, x + 2 * r, y - r, r, r)
            c.rect(value, x - 2 * r, y - 2.6 * r, x + 2 * r, y - 1.2 * r)

    for value in objects:
        draw(value)
    for _ in range(3):  # redraw objects that later ones covered completely, so each shows
        for value in [v for v in objects if not (c.label == v).any()]:
            draw(value)
    for value in voids:
        if value == 1:  # ego vehicle: the bonnet at the bottom
            c.band(value, c.wave(rng, height * 0.93, height * 0.03), height)
        elif value == 3:  # out of roi: a thin border
            c.band(value, 0, 2)
        else:
            c.blob(value, rng, rng.uniform(0.1, 0.9) * width, rng.uniform(horizon, height), 0.12 * height)
    return c


def lip_scene(rng: np.random.Generator, height: int, width: int, extras: frozenset[int]) -> Canvas:
    """A standing person facing the camera on background 0: the person's left side is on the
    image's right (left-arm 14, left-leg 16, left-shoe 18). ``extras`` picks optional parts
    (hat 1, glove 3, sunglasses 4, dress 6, coat 7, socks 8, jumpsuits 10, scarf 11, skirt 12)."""
    c = Canvas(height, width, fill=0)
    u = height / 8.0 * rng.uniform(0.85, 0.97)
    cx = width * rng.uniform(0.42, 0.58)
    top = height * rng.uniform(0.02, 0.06)
    hip, foot = top + 3.9 * u, top + 7.5 * u
    # legs (right leg on the image's left), socks and shoes
    for value, side in ((17, -1), (16, 1)):
        c.rect(value, cx + side * 0.1 * u - (0.45 * u if side < 0 else 0), hip, cx + side * 0.1 * u + (0.45 * u if side > 0 else 0), foot - 0.3 * u)
        if 8 in extras:
            c.rect(8, cx + side * 0.3 * u - 0.22 * u, foot - 0.7 * u, cx + side * 0.3 * u + 0.22 * u, foot - 0.3 * u)
    for value, side in ((19, -1), (18, 1)):
        c.ellipse(value, cx + side * 0.35 * u, foot - 0.15 * u, 0.32 * u, 0.18 * u)
    # lower garment
    if 10 in extras:
        torso_value = 10
        c.rect(10, cx - 0.6 * u, hip - 0.1 * u, cx + 0.6 * u, top + 6.6 * u)
    else:
        torso_value = 7 if 7 in extras else 5
        if 12 in extras:
            c.polygon(12, [(cx - 0.6 * u, hip - 0.1 * u), (cx + 0.6 * u, hip - 0.1 * u), (cx + 0.9 * u, top + 5.4 * u), (cx - 0.9 * u, top + 5.4 * u)])
        elif 6 in extras:
            torso_value = 6
            c.polygon(6, [(cx - 0.6 * u, top + 1.4 * u), (cx + 0.6 * u, top + 1.4 * u), (cx + 1.0 * u, top + 5.6 * u), (cx - 1.0 * u, top + 5.6 * u)])
        else:
            c.rect(9, cx - 0.62 * u, hip - 0.1 * u, cx + 0.62 * u, top + 6.7 * u)
    # arms (right arm on the image's left), gloves
    for value, side in ((15, -1), (14, 1)):
        shoulder = (cx + side * 0.6 * u, top + 1.5 * u)
        hand = (cx + side * rng.uniform(0.9, 1.3) * u, top + rng.uniform(3.6, 4.2) * u)
        half = 0.2 * u
        c.polygon(value, [(shoulder[0] - half, shoulder[1]), (shoulder[0] + half, shoulder[1]), (hand[0] + half, hand[1]), (hand[0] - half, hand[1])])
        if 3 in extras:
            c.ellipse(3, hand[0], hand[1], 0.22 * u, 0.25 * u)
    # torso
    if torso_value != 6:
        c.rect(torso_value, cx - 0.65 * u, top + 1.35 * u, cx + 0.65 * u, hip + (0.5 * u if torso_value == 7 else 0))
    if 11 in extras:
        c.rect(11, cx - 0.4 * u, top + 1.2 * u, cx + 0.4 * u, top + 1.6 * u)
    # head: hair behind the face, hat and sunglasses on top
    c.ellipse(2, cx, top + 0.65 * u, 0.5 * u, 0.6 * u)
    c.ellipse(13, cx, top + 0.8 * u, 0.36 * u, 0.45 * u)
    if 1 in extras:
        c.rect(1, cx - 0.55 * u, top, cx + 0.55 * u, top + 0.35 * u)
    if 4 in extras:
        c.rect(4, cx - 0.32 * u, top + 0.62 * u, cx + 0.32 * u, top + 0.8 * u)
    return c


def generic_scene(rng: np.random.Generator, height: int, width: int, stuff: list[int], objects: list[int], *, fill: int) -> Canvas:
    """Wavy horizontal "stuff" bands (top to bottom) and object shapes on top. A band whose
    value equals ``fill`` is left undrawn (unannotated)."""
    c = Canvas(height, width, fill=fill)
    cuts = np.sort(rng.uniform(0.25, 0.75, len(stuff) - 1)) * height
    bounds = [np.zeros(width)] + [c.wave(rng, level, 0.06 * height) for level in cuts] + [np.full(width, float(height))]
    for value, top, bottom in zip(stuff, bounds[:-1], bounds[1:]):
        if value != fill:
            c.band(value, top, bottom)
    for value in objects:
        size = rng.uniform(0.22, 0.42) * min(height, width)
        c.blob(value, rng, rng.uniform(0.15, 0.85) * width, rng.uniform(0.15, 0.85) * height, size)
    for _ in range(3):  # redraw objects that later shapes covered completely, so each shows
        hidden = [v for v in objects if not (c.label == v).any()]
        for value in hidden:
            c.blob(value, rng, rng.uniform(0.2, 0.8) * width, rng.uniform(0.2, 0.8) * height, 0.3 * min(height, width))
    return c


# --- writers --------------------------------------------------------------------------------


class _Writer:
    """Counts what it writes (all through ``hrseg.io``, atomically)."""

    def __init__(self, root: Path) -> None:
        self.root, self.files, self.bytes = root, 0, 0

    def __call__(self, relpath: str, data: bytes) -> None:
        hio.write_bytes(self.root / relpath, data)
        self.files += 1
        self.bytes += len(data)


def _size(rng: np.random.Generator, low: int = 96, high: int = 200) -> tuple[int, int]:
    return int(rng.integers(low, high + 1)), int(rng.integers(low, high + 1))


def write_cityscapes(root: Path, seed: int) -> _Writer:
    write = _Writer(root)
    looks = make_appearances(sorted(cityscapes.RAW_VALUES), _rng(seed, "cityscapes"))
    plan = {"train": [("aachen", 12), ("bremen", 12)], "val": [("frankfurt", 8)], "test": [("berlin", 4)]}
    height, width = 128, 256
    i = 0
    for split_no, (split, cities) in enumerate(plan.items()):
        for city, count in cities:
            for k in range(count):
                rng = _rng(seed, "cityscapes", split_no, i)
                objects = _rotation(CS_OBJECTS, i * 7, 7)
                voids = _rotation(CS_VOID, i * 2, 2 if i % 3 else 1)
                canvas = cityscapes_scene(rng, height, width, objects, voids)
                stem = f"{city}_{k:06d}_{19 + 7 * k:06d}"
                write(f"leftImg8bit/{split}/{city}/{stem}_leftImg8bit.png", _png(render(canvas.label, looks, rng)[:, :, ::-1]))
                if split != "test":
                    write(f"gtFine/{split}/{city}/{stem}_gtFine_labelIds.png", _png(canvas.label.astype(np.uint8)))
                i += 1
    return write


_LIP_EXTRAS = tuple(map(frozenset, ((1, 3), (4, 7), (6, 8), (10, 11), (12, 1), (3, 8, 7), (4, 11), (12, 6), ())))


def write_lip(root: Path, seed: int) -> _Writer:
    write = _Writer(root)
    looks = make_appearances(sorted(lip.RAW_VALUES), _rng(seed, "lip"), same=lip.FLIP_PAIRS)
    i = 0
    for split_no, (split, count) in enumerate((("train", 18), ("val", 6))):
        for _k in range(count):
            rng = _rng(seed, "lip", split_no, i)
            height, width = int(rng.integers(140, 201)), int(rng.integers(96, 151))
            canvas = lip_scene(rng, height, width, _LIP_EXTRAS[i % len(_LIP_EXTRAS)])
            stem = f"{100000 + 37 * i}_{(7919 * i + 4242) % 1000000:06d}"
            write(f"{lip.IMAGE_DIR}/{split}_images/{stem}.jpg", _jpg(render(canvas.label, looks, rng)))
            write(f"{lip.LABEL_DIR}/{split}_segmentations/{stem}.png", _png(canvas.label.astype(np.uint8)))
            i += 1
    return write


def _rle(mask: np.ndarray) -> dict:
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


def write_pascal_ctx(root: Path, seed: int) -> _Writer:
    """``VOCdevkit/VOC2010/JPEGImages`` + a Detail-format ``trainval_merged.json`` (with the
    keys detail-api's constructor reads), one RLE annotation per drawn layer, in order."""
    write = _Writer(root)
    ids = list(pascal_ctx.MAPPING_IDS)
    looks = make_appearances(ids, _rng(seed, "pascal_ctx"))
    classes = [v for v in ids if v != 0]
    # one stuff band per image (beside the background), so fewer frequent classes than _write_generic's
    # FREQUENT: each is in four of the twenty training images
    bands = FREQUENT // 2 + 1
    frequent, common, tail = classes[:bands], classes[bands : bands + COMMON], classes[bands + COMMON :]
    images, annotations = [], []
    i = 0
    for split_no, (split, count) in enumerate((("train", 20), ("val", 6))):
        for _k in range(count):
            rng = _rng(seed, "pascal_ctx", split_no, i)
            height, width = _size(rng)
            band = frequent[i % bands]
            stuff = [0, band] if i % 2 == 0 else [band, 0]
            canvas = generic_scene(rng, height, width, stuff, _long_tail_objects(common, tail, split, i, 4), fill=0)
            image_id = (2008 + i % 3) * 1000000 + 2 * i + 1
            file_name = f"{image_id // 1000000}_{image_id % 1000000:06d}.jpg"
            write(f"VOCdevkit/VOC2010/JPEGImages/{file_name}", _jpg(render(canvas.label, looks, rng)))
            images.append({"image_id": image_id, "file_name": file_name, "height": height, "width": width, "phase": split, "date_captured": "2010"})
            for value, mask in canvas.layers:
                ys, xs = np.nonzero(mask)
                annotations.append({
                    "id": len(annotations) + 1, "image_id": image_id, "category_id": value, "segmentation": _rle(mask),
                    "area": int(mask.sum()), "bbox": [int(xs.min()), int(ys.min()), int(np.ptp(xs)) + 1, int(np.ptp(ys)) + 1],
                    "iscrowd": 0, "parts": [],
                })  # fmt: skip
            i += 1
    categories = [
        {"category_id": v, "name": name, "supercategory": "object", "onlysemantic": 0, "parts": []}
        for v, name in zip(pascal_ctx.MAPPING_IDS[1:], pascal_ctx.CLASS_NAMES_60[1:])
    ]
    data = {
        "info": {"description": "hrseg synthetic PASCAL-Context (Detail format)", "version": "1"},
        "images": images, "annos_segmentation": annotations, "categories": categories, "parts": [],
        "annos_occlusion": [], "annos_boundary": [], "annos_joints": [],
    }  # fmt: skip
    write(f"VOCdevkit/VOC2010/{pascal_ctx.JSON_NAME}", json.dumps(data, sort_keys=True, separators=(",", ":")).encode())
    return write


#: classes of the "stuff" bands of PASCAL-Context / COCO-Stuff / ADE20K synthetic images (the frequent head)
FREQUENT = 8
#: object classes that every training image shows two of (each about seven times over the
#: split) besides its share of the tail; the validation images show only these objects
COMMON = 6
COMMON_PER_TRAIN_IMAGE = 2
COMMON_PER_VAL_IMAGE = 4


def _long_tail_objects(common: Sequence[int], tail: Sequence[int], split: str, i: int, tail_per_image: int) -> list[int]:
    """The object classes of image ``i`` (counted over both splits): training images rotate
    through the whole tail (so every class appears) plus two common classes; validation
    images show common classes only."""
    if split == "train":
        return _rotation(tail, i * tail_per_image, tail_per_image) + _rotation(common, i * COMMON_PER_TRAIN_IMAGE, COMMON_PER_TRAIN_IMAGE)
    return _rotation(common, i, COMMON_PER_VAL_IMAGE)


def _write_generic(
    root: Path, seed: int, dataset: str, *, classes: list[int], fill: int, per_image: int, names: Callable[[str, int], tuple[str, str]]
) -> _Writer:
    """Stuff bands + objects, with a long tail like the real datasets: the two stuff bands of
    every image come from ``FREQUENT`` classes, the objects of a training image rotate through
    the tail (so the training split shows every class) plus two of ``COMMON`` classes, and a
    validation image shows common objects only (``_long_tail_objects``)."""
    write = _Writer(root)
    looks = make_appearances([fill] + classes, _rng(seed, dataset))
    order = [int(v) for v in _rng(seed, dataset, 99).permutation(classes)]
    frequent, common, tail = order[:FREQUENT], order[FREQUENT : FREQUENT + COMMON], order[FREQUENT + COMMON :]
    objects = per_image - 2
    i = 0
    for split_no, (split, count) in enumerate((("train", 20), ("val", 6))):
        for k in range(count):
            rng = _rng(seed, dataset, split_no, i)
            height, width = _size(rng)
            stuff = [frequent[i % FREQUENT], frequent[(i + 3) % FREQUENT]]
            chosen = _long_tail_objects(common, tail, split, i, objects)
            canvas = generic_scene(rng, height, width, stuff, chosen + ([fill] if k % 2 == 0 else []), fill=fill)
            image, label = names(split, k)
            write(image, _jpg(render(canvas.label, looks, rng)))
            write(label, _png(canvas.label.astype(np.uint8)))
            i += 1
    return write


def write_cocostuff(root: Path, seed: int) -> _Writer:
    """Raw labels 0..182: all 171 classes, the 11 unused ids and 0 (unlabeled)."""

    def names(split: str, k: int) -> tuple[str, str]:
        stem = f"COCO_train2014_{100 * (k + 1) + (split == 'val'):012d}"
        return f"{split}/image/{stem}.jpg", f"{split}/label/{stem}.png"

    return _write_generic(root, seed, "cocostuff", classes=list(range(1, 183)), fill=0, per_image=11, names=names)


def write_ade20k(root: Path, seed: int) -> _Writer:
    """Raw labels 0..150 (0 = other), in the renamed ``{train,val}/{image,label}`` layout."""

    def names(split: str, k: int) -> tuple[str, str]:
        stem = f"ADE_{'train' if split == 'train' else 'val'}_{k + 1:08d}"
        return f"{split}/image/{stem}.jpg", f"{split}/label/{stem}.png"

    return _write_generic(root, seed, "ade20k", classes=list(range(1, 151)), fill=0, per_image=10, names=names)


CUSTOM_NAMES = ("background", "road", "building", "tree", "car", "person")
CUSTOM_RAW = (0, 10, 20, 30, 40, 50)  # raw ids of the id-mask variant (mapped in classes.yaml)
CUSTOM_PALETTE = ((0, 0, 0), (128, 64, 128), (70, 70, 70), (107, 142, 35), (0, 0, 142), (220, 20, 60))
CUSTOM_IGNORE_COLOUR = (255, 255, 255)


def _yaml_list(values: Iterable) -> str:
    return "[" + ", ".join(str(list(v)) if isinstance(v, tuple) else str(v) for v in values) + "]"


def write_custom_dataset(
    root: Path,
    rng_of: Callable[..., np.random.Generator],
    *,
    names: Sequence[str],
    masks: str = "id",
    raw: Sequence[int] | None = None,
    palette: Sequence[tuple[int, int, int]] | None = None,
    ignore: int | tuple[int, int, int] | None = 255,
    counts: tuple[int, int, int] = (16, 6, 2),
    size: tuple[int, int] = (96, 144),
    blobs_per_object: int = 1,
) -> _Writer:
    """A dataset in the custom layout: ``classes.yaml``, ``images/{train,val,test}/site_<k>/``
    (alternating .jpg and .png) and ``labels/{train,val}/site_<k>/*.png``.

    The first half of the classes are wavy bands, the rest objects on top (each image shows
    every class, each object class in ``blobs_per_object`` shapes); a third of the images
    have a small region of ``ignore``. ``masks="id"``
    stores ``raw[class]`` (identity without ``raw``), ``"rgb"`` stores ``palette[class]``."""
    write = _Writer(root)
    k = len(names)
    raw = list(raw) if raw is not None else list(range(k))
    palette = list(palette) if palette is not None else None
    lines = [f"# hrseg synth: {k} classes, {masks} masks", f"names: {_yaml_list(names)}"]
    if palette is not None:
        lines.append(f"palette: {_yaml_list(palette)}")
    lines.append(f"masks: {masks}")
    lines.append(f"ignore: {_yaml_list(ignore) if isinstance(ignore, tuple) else ('[]' if ignore is None else ignore)}")
    if masks == "id" and raw != list(range(k)):
        lines.append("mapping: {" + ", ".join(f"{v}: {n}" for v, n in zip(raw, names)) + "}")
    write("classes.yaml", ("\n".join(lines) + "\n").encode())
    stuff, objects = list(range(max(1, k // 2))), list(range(max(1, k // 2), k)) * blobs_per_object
    looks = make_appearances(list(range(k)) + [255], rng_of())
    i = 0
    for split_no, (split, count) in enumerate(zip(("train", "val", "test"), counts)):
        for j in range(count):
            rng = rng_of(split_no, i)
            height, width = _size(rng, *size)
            bands = [stuff[(i + b) % len(stuff)] for b in range(len(stuff))]
            canvas = generic_scene(rng, height, width, bands, objects, fill=bands[0])
            if i % 3 == 1 and ignore is not None:
                canvas.blob(255, rng, rng.uniform(0.2, 0.8) * width, rng.uniform(0.2, 0.8) * height, 0.15 * min(height, width))
            index = canvas.label
            stem = f"site_{j % 2}/{split}_{j:04d}"
            ext = ".jpg" if j % 2 == 0 else ".png"
            rgb = render(index, looks, rng)
            write(f"images/{split}/{stem}{ext}", _jpg(rgb) if ext == ".jpg" else _png(rgb[:, :, ::-1]))
            if split != "test":
                if masks == "rgb":
                    colours = np.array(list(palette) + [CUSTOM_IGNORE_COLOUR if ignore is None else ignore] * (256 - k), dtype=np.uint8)
                    write(f"labels/{split}/{stem}.png", _png(colours[index][:, :, ::-1]))
                else:
                    table = np.full(256, 255 if ignore is None else ignore, dtype=np.uint8)
                    table[:k] = raw
                    write(f"labels/{split}/{stem}.png", _png(table[index]))
            i += 1
    return write


def write_custom(root: Path, seed: int) -> _Writer:
    """6 classes as id masks holding the raw ids 0, 10, ..., 50 (a mapping in classes.yaml),
    ignore 255."""
    return write_custom_dataset(root, lambda *p: _rng(seed, "custom", *p), names=CUSTOM_NAMES, raw=CUSTOM_RAW, palette=CUSTOM_PALETTE)


def write_custom_rgb(root: Path, seed: int) -> _Writer:
    """The same 6 classes as colour masks (the palette), ignore white."""
    return write_custom_dataset(
        root, lambda *p: _rng(seed, "custom_rgb", *p), names=CUSTOM_NAMES, masks="rgb", palette=CUSTOM_PALETTE, ignore=CUSTOM_IGNORE_COLOUR,
    )  # fmt: skip


WRITERS: MappingProxyType[str, Callable[[Path, int], _Writer]] = MappingProxyType(
    {
        "cityscapes": write_cityscapes, "lip": write_lip, "pascal_ctx": write_pascal_ctx, "cocostuff": write_cocostuff, "ade20k": write_ade20k,
        "custom": write_custom, "custom_rgb": write_custom_rgb,
    }
)  # fmt: skip


def generate_synthetic(out: str | os.PathLike, *, seed: int = 0, datasets: Iterable[str] | None = None) -> dict[str, dict]:
    """Write the synthetic datasets under ``out/<dataset>/``; returns files/bytes per dataset."""
    names = list(datasets) if datasets is not None else list(SYNTH_DATASETS)
    unknown = [n for n in names if n not in WRITERS]
    if unknown:
        raise DatasetError(f"unknown synthetic dataset(s) {', '.join(map(repr, unknown))}; expected some of {', '.join(SYNTH_DATASETS)}")
    if not names:
        raise DatasetError(f"no dataset selected; expected some of {', '.join(SYNTH_DATASETS)}")
    report = {}
    for name in names:
        writer = WRITERS[name](Path(out) / name, seed)
        report[name] = {"path": str(Path(out) / name), "files": writer.files, "bytes": writer.bytes}
        logger.info("synth %s: %d files, %.1f kB in %s", name, writer.files, writer.bytes / 1e3, writer.root)
    return report
