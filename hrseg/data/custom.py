"""Your own dataset (``data.dataset: custom``): a generic folder layout or list files, and a
``classes.yaml`` that says what the label values mean.

Layout (``--root``)::

    <root>/classes.yaml
    <root>/images/{train,val[,test]}/**/<name>.{jpg,jpeg,png,bmp,tif,tiff,webp}
    <root>/labels/{train,val[,test]}/**/<name>.png

An image and its label are paired by their path below the split folder without the
extension (``images/train/site1/a.jpg`` <-> ``labels/train/site1/a.png``). Instead of the
folders, ``classes.yaml`` may name list files (``lists: {train: train.txt, val: val.txt}``,
relative to the root) with one ``image label`` pair per line; their paths are relative to the
list file's folder or absolute, so the data may live anywhere.

``classes.yaml``::

    names: [background, road, car]      # required, >= 2; the class index is the position
    palette: [[0, 0, 0], [128, 64, 128], "#00008e"]   # optional (rgb masks: required)
    masks: id                           # id (default): single-channel values; rgb: colours
    ignore: 255                         # raw values (id) or colours (rgb) to ignore
    mapping: {0: background, 7: road, 26: car}   # optional raw value -> class (id masks)
    flip_pairs: [[left_arm, right_arm]] # optional classes a horizontal flip swaps
    lists: {train: train.txt, val: val.txt}      # optional, instead of images/ + labels/

Without ``mapping``, raw value ``v`` is class ``v`` (``0..K-1``). ``ignore`` defaults to 255
for id masks and to no colour for rgb masks. RGB masks are mapped through the palette by
``hrseg prepare``, which writes class-index PNGs under ``<lists>/index_labels/`` (training
then reads those, like the PASCAL-Context labels).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from hrseg import io as hio
from hrseg.config import ConfigError, load_yaml
from hrseg.data.class_stats import WEIGHT_METHODS, ClassStats, class_pixel_counts
from hrseg.data.errors import DatasetCheckError, DatasetError, LayoutError
from hrseg.data.image_io import read_image, read_label
from hrseg.data.layout import Discovery, Sample, pair_split, rel
from hrseg.data.lists import write_list
from hrseg.data.spec import IGNORE_LABEL, DatasetSpec, bit_palette, lut_from_pairs
from hrseg.data.verify import SUMMARY_NAME, check_output_folder, describe_values, parallel_map, short_message, swap_in_folder

logger = logging.getLogger(__name__)

NAME = "custom"
CLASSES_FILE = "classes.yaml"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
LABEL_SUFFIX = ".png"
SPLITS = ("train", "val", "test")
REQUIRED_SPLITS = ("train", "val")
DERIVED_LISTS = {"trainval": ("train", "val")}
INDEX_LABEL_DIR = "index_labels"  # prepare's class-index PNGs of RGB masks, under the lists dir
KEYS = ("names", "palette", "masks", "ignore", "mapping", "flip_pairs", "lists", "description")
MaskFormat = Literal["id", "rgb"]
Colour = tuple[int, int, int]

LAYOUT = """  <root>/classes.yaml                               (names, palette, masks, ignore, mapping, flip_pairs, lists)
  <root>/images/{train,val[,test]}/**/<name>.{jpg,jpeg,png,bmp,tif,tiff,webp}
  <root>/labels/{train,val[,test]}/**/<name>.png    (paired by path and stem)
or list files named in classes.yaml: lists: {train: train.txt, val: val.txt} ('image label' per line)"""


# --- classes.yaml ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CustomClasses:
    """A validated ``classes.yaml`` (``load_classes``)."""

    path: Path
    names: tuple[str, ...]
    palette: tuple[Colour, ...]
    masks: MaskFormat = "id"
    ignore: tuple[int, ...] = (IGNORE_LABEL,)  # id masks: raw values
    ignore_colours: tuple[Colour, ...] = ()  # rgb masks
    mapping: tuple[tuple[int, int], ...] = ()  # id masks: (raw value, class index)
    flip_pairs: tuple[tuple[int, int], ...] = ()
    lists: tuple[tuple[str, str], ...] = ()  # (split, list file relative to the root or absolute)

    @property
    def num_classes(self) -> int:
        return len(self.names)

    def raw_pairs(self) -> tuple[tuple[int, int], ...]:
        """(raw value, class index) of an id mask; identity ``0..K-1`` without a mapping."""
        return self.mapping or tuple((i, i) for i in range(self.num_classes))

    def raw_values(self) -> frozenset[int]:
        """The raw values an id mask may hold: the mapped ones and the ignore values."""
        return frozenset(v for v, _ in self.raw_pairs()) | frozenset(self.ignore)

    def label_map(self) -> tuple[int, ...]:
        """The 256-entry raw -> class table of the spec (RGB masks: prepare's index PNGs)."""
        if self.masks == "rgb":
            return lut_from_pairs((i, i) for i in range(self.num_classes))
        return lut_from_pairs(self.raw_pairs())

    def colour_classes(self) -> dict[int, int]:
        """RGB masks: packed colour ``r << 16 | g << 8 | b`` -> class index (ignore: 255)."""
        table = {pack(c): i for i, c in enumerate(self.palette)}
        table.update({pack(c): IGNORE_LABEL for c in self.ignore_colours})
        return table

    def spec(self) -> DatasetSpec:
        return DatasetSpec(
            name=NAME, num_classes=self.num_classes, class_names=self.names, palette=self.palette, label_map=self.label_map(),
            layout=NAME, flip_pairs=self.flip_pairs, labels_relative_to="list" if self.masks == "rgb" else "root",
        )  # fmt: skip


def pack(colour: Colour) -> int:
    r, g, b = colour
    return (int(r) << 16) | (int(g) << 8) | int(b)


def hex_colour(colour: Colour) -> str:
    return "#{:02x}{:02x}{:02x}".format(*colour)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _colour(value: Any, where: str, problems: list[str]) -> Colour | None:
    if isinstance(value, str) and len(value) == 7 and value.startswith("#"):
        try:
            return (int(value[1:3], 16), int(value[3:5], 16), int(value[5:7], 16))
        except ValueError:
            pass
    elif isinstance(value, (list, tuple)) and len(value) == 3 and all(_is_int(v) and 0 <= v <= 255 for v in value):
        return (int(value[0]), int(value[1]), int(value[2]))
    problems.append(f"{where}: expected a colour [r, g, b] (0..255) or '#rrggbb', got {value!r}")
    return None


def _class_index(value: Any, names: tuple[str, ...], where: str, problems: list[str]) -> int | None:
    if _is_int(value) and 0 <= value < len(names):
        return int(value)
    if isinstance(value, str) and value in names:
        return names.index(value)
    problems.append(f"{where}: {value!r} is neither a class name nor an index 0..{len(names) - 1}")
    return None


def _raw_value(value: Any, where: str, problems: list[str]) -> int | None:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if _is_int(value) and 0 <= value <= 255:
        return int(value)
    problems.append(f"{where}: expected a label value 0..255, got {value!r}")
    return None


def _as_list(value: Any) -> list:
    if value is None:
        return []
    # one colour [r, g, b] / '#rrggbb' or one value, or a list of them
    if isinstance(value, (list, tuple)) and not (len(value) == 3 and all(_is_int(v) for v in value)):
        return list(value)
    return [value]


def _names(data: dict, problems: list[str]) -> tuple[str, ...]:
    names = data.get("names")
    if names is None:
        problems.append("names: missing (the list of class names; the class index is the position)")
        return ()
    if not isinstance(names, list) or not all(isinstance(n, str) and n.strip() for n in names):
        problems.append(f"names: expected a list of non-empty strings, got {names!r}")
        return ()
    duplicates = sorted(n for n, k in Counter(names).items() if k > 1)
    if duplicates:
        problems.append(f"names: duplicate class name(s) {duplicates}")
    if len(names) < 2:
        problems.append(
            f"names: {len(names)} class(es); segmentation needs at least 2. For one foreground class list the "
            f"background too, e.g. names: [background, {names[0] if names else 'object'}]"
        )
    if len(names) > IGNORE_LABEL:
        problems.append(f"names: {len(names)} classes; at most {IGNORE_LABEL} fit in 8-bit labels (255 is ignore)")
    return tuple(names)


def parse_classes(data: Any, path: Path) -> CustomClasses:
    """Validate the contents of a classes file; every problem is reported at once."""
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: expected a mapping with 'names' (and optional {', '.join(KEYS[1:])}), got {type(data).__name__}")
    problems: list[str] = []
    unknown = sorted(set(map(str, data)) - set(KEYS))
    if unknown:
        problems.append(f"unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(KEYS)}")
    names = _names(data, problems)
    masks = data.get("masks", "id")
    if masks not in ("id", "rgb"):
        problems.append(f"masks: expected 'id' (one value per pixel) or 'rgb' (one colour per class), got {masks!r}")
        masks = "id"

    palette: tuple[Colour, ...] = bit_palette(len(names))
    if data.get("palette") is not None:
        raw = data["palette"]
        if not isinstance(raw, list):
            problems.append(f"palette: expected a list of colours, got {raw!r}")
        else:
            colours = [_colour(c, f"palette[{i}]", problems) for i, c in enumerate(raw)]
            if len(raw) != len(names):
                problems.append(f"palette: {len(raw)} colour(s) for {len(names)} class(es) (one colour per name)")
            elif all(c is not None for c in colours):
                palette = tuple(colours)  # type: ignore[arg-type]
                if masks == "rgb":
                    for colour, count in Counter(palette).items():
                        if count > 1:
                            which = [names[i] for i, c in enumerate(palette) if c == colour]
                            problems.append(f"palette: classes {which} share the colour {hex_colour(colour)} (rgb masks need distinct colours)")
    elif masks == "rgb":
        problems.append("palette: required for masks: rgb (the colour of each class in the masks)")

    ignore: tuple[int, ...] = ()
    ignore_colours: tuple[Colour, ...] = ()
    mapping: tuple[tuple[int, int], ...] = ()
    if masks == "id":
        values = [_raw_value(v, "ignore", problems) for v in _as_list(data.get("ignore", IGNORE_LABEL))]
        ignore = tuple(sorted({v for v in values if v is not None}))
        if data.get("mapping") is not None:
            raw = data["mapping"]
            if not isinstance(raw, dict) or not raw:
                problems.append(
                    f"mapping: expected a mapping raw value -> class name or index, e.g. {{0: background, 255: {names[-1] if names else 'object'}}}, got {raw!r}"
                )
            else:
                pairs = []
                for key, target in raw.items():
                    value = _raw_value(key, f"mapping key {key!r}", problems)
                    index = _class_index(target, names, f"mapping[{key!r}]", problems) if names else None
                    if value is not None and index is not None:
                        pairs.append((value, index))
                mapping = tuple(sorted(pairs))
        pairs_used = mapping or tuple((i, i) for i in range(len(names)))
        clash = sorted({v for v, _ in pairs_used} & set(ignore))
        if clash:
            hint = "; add a mapping that gives the classes other values" if not mapping else ""
            problems.append(f"ignore: value(s) {clash} are also class values ({', '.join(names[i] for v, i in pairs_used if v in clash)}){hint}")
    else:
        if data.get("mapping") is not None:
            problems.append("mapping: applies to id masks; rgb masks are mapped through the palette (one colour per class)")
        colours = [_colour(c, "ignore", problems) for c in _as_list(data.get("ignore"))]
        ignore_colours = tuple(sorted({c for c in colours if c is not None}))
        clash = sorted(set(ignore_colours) & set(palette))
        if clash:
            problems.append(f"ignore: colour(s) {[hex_colour(c) for c in clash]} are also class colours in the palette")

    flip_pairs: list[tuple[int, int]] = []
    if data.get("flip_pairs") is not None:
        raw = data["flip_pairs"]
        if not isinstance(raw, list):
            problems.append(f"flip_pairs: expected a list of [left, right] class pairs, got {raw!r}")
            raw = []
        seen: set[int] = set()
        for i, pair in enumerate(raw):
            if not (isinstance(pair, (list, tuple)) and len(pair) == 2):
                problems.append(f"flip_pairs[{i}]: expected [left, right] (names or indices), got {pair!r}")
                continue
            a, b = (_class_index(v, names, f"flip_pairs[{i}]", problems) for v in pair)
            if a is None or b is None:
                continue
            if a == b or {a, b} & seen:
                problems.append(f"flip_pairs[{i}]: {pair!r}: a class may be swapped with one other class only")
                continue
            seen |= {a, b}
            flip_pairs.append((a, b))

    lists: list[tuple[str, str]] = []
    if data.get("lists") is not None:
        raw = data["lists"]
        if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
            problems.append(f"lists: expected a mapping split -> list file, e.g. {{train: train.txt, val: val.txt}}, got {raw!r}")
        else:
            bad = sorted(set(map(str, raw)) - set(SPLITS))
            if bad:
                problems.append(f"lists: unknown split(s) {bad}; expected {', '.join(SPLITS)}")
            missing = [s for s in REQUIRED_SPLITS if s not in raw]
            if missing:
                problems.append(f"lists: missing split(s) {missing} (train and val are required)")
            lists = [(str(s), raw[s]) for s in SPLITS if s in raw]

    if problems:
        raise DatasetError(f"{path}: {len(problems)} problem(s):\n" + "\n".join(f"  - {p}" for p in problems))
    return CustomClasses(
        path=path, names=names, palette=palette, masks=masks, ignore=ignore, ignore_colours=ignore_colours,
        mapping=mapping, flip_pairs=tuple(flip_pairs), lists=tuple(lists),
    )  # fmt: skip


def load_classes(path: str | os.PathLike) -> CustomClasses:
    """Read and validate a ``classes.yaml``; ``DatasetError`` names the file and every problem."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: classes file not found (a custom dataset needs one; see README 'Your own dataset')")
    try:
        data = load_yaml(path)
    except ConfigError as exc:
        raise DatasetError(str(exc)) from None
    return parse_classes(data, path)


def classes_path(root: str | os.PathLike, classes: str | os.PathLike | None = None) -> Path:
    """The classes file: ``classes`` when given, else ``<root>/classes.yaml``."""
    return Path(classes) if classes is not None else Path(root) / CLASSES_FILE


def custom_spec(classes: str | os.PathLike) -> DatasetSpec:
    """The ``DatasetSpec`` of the custom dataset described by the classes file ``classes``."""
    return load_classes(classes).spec()


# --- recipes --------------------------------------------------------------------------------


def complete_recipe(recipe: Any, *, num_classes_given: bool, source: str | None = None) -> Any:
    """Recipe post-validation for ``data.dataset: custom``: ``data.classes`` defaults to
    ``<data.root>/classes.yaml``; ``model.num_classes`` comes from it when the recipe does not
    set it, and must agree with it when it does. A recipe with ``data.classes`` for another
    dataset is an error. When the file does not exist yet (before ``hrseg synth``) and the
    recipe sets ``model.num_classes``, the check is left to training and evaluation."""
    where = f"{source}: " if source else ""
    data = recipe.data
    if data.dataset != NAME:
        raise ConfigError(f"{where}data.classes is read only for data.dataset: {NAME} (this recipe is for {data.dataset!r})")
    path = classes_path(data.root, data.classes)
    recipe = dataclasses.replace(recipe, data=dataclasses.replace(data, classes=path))
    if not path.is_file():
        if num_classes_given:
            return recipe
        raise ConfigError(f"{where}data.classes: {path} not found; model.num_classes comes from it (or set model.num_classes)")
    classes = load_classes(path)
    if num_classes_given and recipe.model.num_classes != classes.num_classes:
        raise ConfigError(
            f"{where}model.num_classes is {recipe.model.num_classes} but {path} lists {classes.num_classes} classes "
            f"({', '.join(classes.names)}); drop model.num_classes or make them agree"
        )
    return dataclasses.replace(recipe, model=dataclasses.replace(recipe.model, num_classes=classes.num_classes))


# --- discovery ------------------------------------------------------------------------------


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))


def _key(path: Path, folder: Path) -> str:
    return path.relative_to(folder).with_suffix("").as_posix()


def _discover_folders(root: Path) -> Discovery:
    missing = [d for d in (f"{kind}/{s}" for s in REQUIRED_SPLITS for kind in ("images", "labels")) if not (root / d).is_dir()]
    if missing:
        raise LayoutError(
            f"{root} does not look like a custom dataset: missing {', '.join(d + '/' for d in missing)} (and classes.yaml names no "
            f"list files). Expected layout:\n{LAYOUT}"
        )
    found = Discovery()
    for split in SPLITS:
        image_dir, label_dir = root / "images" / split, root / "labels" / split
        if not image_dir.is_dir():
            continue
        images: dict[str, str] = {}
        for p in _files(image_dir):
            if p.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            key = _key(p, image_dir)
            if key in images:
                found.problems.append(f"{rel(p, root)}: same path and stem as {images[key]} (one image per sample)")
                continue
            images[key] = rel(p, root)
        labels: dict[str, str] = {}
        for p in _files(label_dir) if label_dir.is_dir() else []:
            if p.suffix.lower() == LABEL_SUFFIX:
                labels[_key(p, label_dir)] = rel(p, root)
            elif p.suffix.lower() in IMAGE_SUFFIXES:
                found.problems.append(f"{rel(p, root)}: label masks must be PNG (lossy or other formats change the values)")
        labelled = split != "test" or label_dir.is_dir()
        pattern = f"images/{split}/**/*{{{','.join(IMAGE_SUFFIXES)}}}"
        found.add(split, pair_split(split, images, labels, pattern=pattern, labelled=labelled))
    return found


def _list_path(entry: str, base: Path, root: Path) -> str:
    """A list-file path (relative to the list file's folder, or absolute) as written in the
    prepared lists: relative to the root when it lies below it, else absolute."""
    path = Path(os.path.abspath(Path(entry) if Path(entry).is_absolute() else base / entry))
    try:
        return path.relative_to(os.path.abspath(root)).as_posix()
    except ValueError:
        return path.as_posix()


def _discover_lists(root: Path, classes: CustomClasses) -> Discovery:
    found = Discovery()
    for split, name in classes.lists:
        list_file = Path(name) if Path(name).is_absolute() else root / name
        if not list_file.is_file():
            found.problems.append(f"{list_file}: list file for split {split!r} not found (classes.yaml lists.{split})")
            found.splits[split] = []
            continue
        samples = []
        for number, line in enumerate(list_file.read_text(encoding="utf-8").splitlines(), start=1):
            fields = line.split()
            if not fields or fields[0].startswith("#"):
                continue
            if len(fields) > 2 or (len(fields) == 1 and split != "test"):
                found.problems.append(f"{list_file}:{number}: expected 'image label' (two paths without spaces), got {line.strip()!r}")
                continue
            image = _list_path(fields[0], list_file.parent, root)
            label = _list_path(fields[1], list_file.parent, root) if len(fields) == 2 else None
            samples.append(Sample(image=image, label=label, name=Path(image).stem))
        if not samples:
            found.problems.append(f"{list_file}: split {split!r} is empty (no 'image label' line)")
        found.splits[split] = samples
    return found


def discover(root: str | os.PathLike, classes: CustomClasses) -> Discovery:
    """Samples per split (paths relative to ``root``, or absolute outside it) and pairing
    problems; ``LayoutError`` when ``root`` is neither the folder layout nor has list files."""
    root = Path(root)
    if not root.is_dir():
        raise LayoutError(f"{NAME}: dataset root {root} does not exist or is not a directory. Expected layout:\n{LAYOUT}")
    found = _discover_lists(root, classes) if classes.lists else _discover_folders(root)
    for samples in found.splits.values():
        for s in samples:
            for path in (s.image, s.label):
                if path is not None and any(c.isspace() for c in path):
                    found.problems.append(f"{path}: the path contains white space, which list files cannot hold (rename it)")
    return found


# --- masks ----------------------------------------------------------------------------------


def read_rgb_mask(path: str | os.PathLike) -> np.ndarray:
    """HxWx3 uint8 RGB colours of a colour mask (RGB, RGBA with the alpha dropped, or palette)."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: label file not found")
    try:
        with Image.open(path) as img:
            img.load()
            mode = img.mode
            if mode in ("RGB", "RGBA", "P", "PA"):
                return np.array(img.convert("RGB"))
    except (OSError, SyntaxError, ValueError, UnidentifiedImageError, Image.DecompressionBombError) as exc:
        raise DatasetError(f"{path}: cannot decode label image ({exc})") from None
    raise DatasetError(f"{path}: expected a colour (RGB) mask for masks: rgb, got mode {mode!r} (single-channel masks: masks: id)")


def rgb_to_index(rgb: np.ndarray, colours: dict[int, int]) -> tuple[np.ndarray, list[tuple[int, int]], list[int]]:
    """Class-index uint8 label of an RGB mask, the unknown colours (packed, pixel count) and
    all colours present (packed, sorted)."""
    packed = (rgb[..., 0].astype(np.int32) << 16) | (rgb[..., 1].astype(np.int32) << 8) | rgb[..., 2].astype(np.int32)
    unique, inverse, counts = np.unique(packed.ravel(), return_inverse=True, return_counts=True)
    table = np.array([colours.get(int(u), IGNORE_LABEL) for u in unique], dtype=np.uint8)
    unknown = [(int(u), int(n)) for u, n in zip(unique, counts) if int(u) not in colours]
    return table[inverse].reshape(packed.shape), unknown, [int(u) for u in unique]


def _unpack(value: int) -> Colour:
    return ((value >> 16) & 255, (value >> 8) & 255, value & 255)


# --- prepare --------------------------------------------------------------------------------


@dataclass
class _Check:
    problems: list[str] = field(default_factory=list)
    size: tuple[int, int] | None = None
    values: tuple[int | str, ...] = ()  # raw values present (rgb masks: '#rrggbb' colours)
    counts: np.ndarray | None = None  # pixels per class
    index_label: str | None = None  # rgb: the written class-index PNG, relative to the lists dir


def _index_label_name(sample: Sample) -> str:
    assert sample.label is not None
    label = Path(sample.label)
    if label.is_absolute() or ".." in label.parts:  # outside the root: keep it unique by its full path
        label = Path("external", *[p.replace(":", "") for p in Path(os.path.abspath(label)).parts[1:]])
    return f"{INDEX_LABEL_DIR}/{label.with_suffix(LABEL_SUFFIX).as_posix()}"


def _check(root: Path, sample: Sample, classes: CustomClasses, staging: Path) -> _Check:
    result = _Check()
    try:
        result.size = read_image(root / sample.image).shape[:2]
    except DatasetError as exc:
        result.problems.append(short_message(str(exc), root))
    if sample.label is None:
        return result
    try:
        if classes.masks == "rgb":
            index, unknown, present = rgb_to_index(read_rgb_mask(root / sample.label), classes.colour_classes())
            result.values = tuple(hex_colour(_unpack(c)) for c in present)
            if unknown:
                shown = ", ".join(f"{hex_colour(_unpack(c))} ({n} px)" for c, n in unknown[:5])
                more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
                result.problems.append(f"{sample.label}: colour(s) {shown}{more} are neither in the palette nor ignore colours of {classes.path.name}")
        else:
            raw = read_label(root / sample.label)
            result.values = tuple(int(v) for v in np.flatnonzero(np.bincount(raw.ravel(), minlength=256)))
            outside = [v for v in result.values if v not in classes.raw_values()]
            if outside:
                result.problems.append(
                    f"{sample.label}: label values {outside} are not in {classes.path.name} "
                    f"(classes {describe_values(v for v, _ in classes.raw_pairs())}, ignore {list(classes.ignore)}; add them to mapping or ignore)"
                )
            index = np.asarray(classes.label_map(), dtype=np.uint8)[raw]
    except DatasetError as exc:
        message = short_message(str(exc), root)
        if classes.masks == "id" and "mode 'RGB" in message:
            message += f"; colour masks: set masks: rgb and the palette in {classes.path.name}"
        result.problems.append(message)
        return result
    if result.size is not None and index.shape != result.size:
        result.problems.append(f"{sample.label}: label is {index.shape[0]}x{index.shape[1]} but image {sample.image} is {result.size[0]}x{result.size[1]}")
    result.counts = class_pixel_counts(index, classes.num_classes)
    if classes.masks == "rgb" and not result.problems:
        from PIL import Image

        result.index_label = _index_label_name(sample)
        png = Image.fromarray(index)
        png.putpalette([c for rgb in classes.palette for c in rgb])
        hio.write_image(staging / result.index_label, png)
    return result


def _format_line(sample: Sample, check: _Check) -> str:
    label = check.index_label or sample.label
    return sample.image if label is None else f"{sample.image} {label}"


def _split_summary(classes: CustomClasses, samples: list[Sample], checks: list[_Check]) -> dict:
    sizes = Counter(f"{c.size[0]}x{c.size[1]}" for c in checks if c.size)
    values = sorted({v for c in checks for v in c.values}, key=lambda v: (isinstance(v, str), v))
    info: dict[str, Any] = {"count": len(samples), "image_sizes": dict(sorted(sizes.items())), "label_values": values}
    counted = [c.counts for c in checks if c.counts is not None]
    if counted:  # lists in class order (the JSON file sorts mapping keys)
        stats = ClassStats.from_counts(counted, classes.num_classes)
        info["class_pixels"] = list(stats.pixels)
        info["class_images"] = list(stats.images)
    return info


def prepare_custom(
    root: str | os.PathLike,
    out: str | os.PathLike,
    *,
    classes: str | os.PathLike | None = None,
    class_weights: str | None = None,
    workers: int | None = None,
) -> dict:
    """``hrseg prepare custom``: verify every pair against the classes file, then write
    ``<out>/{train,val,trainval[,test]}.lst`` (RGB masks: also ``<out>/index_labels/``) and
    ``<out>/summary.json`` with per-class pixel counts and frequencies of the train split and,
    with ``class_weights`` (``inverse`` or ``median``), the class weights. Every problem is
    reported at once (``DatasetCheckError``); nothing is written then."""
    root, out = Path(root), Path(out)
    check_output_folder(out)
    if class_weights is not None and class_weights not in WEIGHT_METHODS:
        raise DatasetError(f"unknown class-weight method {class_weights!r}; expected one of {', '.join(WEIGHT_METHODS)}")
    if not root.is_dir():
        raise LayoutError(f"{NAME}: dataset root {root} does not exist or is not a directory. Expected layout:\n{LAYOUT}")
    spec = load_classes(classes_path(root, classes))
    found = discover(root, spec)
    items = [(split, s) for split, samples in found.splits.items() for s in samples]
    staging = out / f".{INDEX_LABEL_DIR}.staging"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        results = parallel_map(lambda item: _check(root, item[1], spec, staging), items, workers=workers, description=f"checking {NAME}")
        problems = found.problems + [p for r in results for p in r.problems]
        if problems:
            raise DatasetCheckError(NAME, str(root), problems)
        if spec.masks == "rgb":
            swap_in_folder(staging / INDEX_LABEL_DIR, out / INDEX_LABEL_DIR)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    checks: dict[str, list[_Check]] = {split: [] for split in found.splits}
    for (split, _), result in zip(items, results):
        checks[split].append(result)
    lines = {split: [_format_line(s, c) for s, c in zip(found.splits[split], checks[split])] for split in found.splits}
    for derived, parts in DERIVED_LISTS.items():
        lines[derived] = [line for p in parts for line in lines[p]]
    for name, entries in lines.items():
        write_list(out / f"{name}.lst", entries)
    summary = summarize(spec, found, checks, {f"{n}.lst": len(e) for n, e in sorted(lines.items())}, class_weights)
    hio.write_json(out / SUMMARY_NAME, summary)
    logger.info("%s: wrote %s to %s", NAME, ", ".join(summary["lists"]), out)
    return summary


def summarize(classes: CustomClasses, found: Discovery, checks: dict[str, list[_Check]], lists: dict[str, int], class_weights: str | None) -> dict:
    """The ``summary.json`` of ``prepare_custom`` (frequencies and weights of the train split)."""
    summary: dict[str, Any] = {
        "dataset": NAME,
        "masks": classes.masks,
        "classes": list(classes.names),
        "splits": {split: _split_summary(classes, found.splits[split], checks[split]) for split in found.splits},
        "lists": lists,
    }
    stats = ClassStats.from_counts([c.counts for c in checks["train"] if c.counts is not None], classes.num_classes)
    summary["class_frequencies"] = [round(f, 6) for f in stats.frequencies()]
    summary["absent_classes"] = [classes.names[c] for c in stats.absent()]
    if stats.absent():
        logger.warning("%s: class(es) %s have no pixel in the train split", NAME, ", ".join(summary["absent_classes"]))
    if class_weights is not None:
        summary["class_weights"] = {
            "method": class_weights,
            "formula": WEIGHT_FORMULAS[class_weights],
            "weights": [round(w, 6) for w in stats.weights(class_weights)],  # type: ignore[arg-type]
        }
    return summary


WEIGHT_FORMULAS = {
    "inverse": "w_c = N / (K * n_c): n_c train pixels of class c, N all valid train pixels, K classes present",
    "median": "w_c = median(freq) / freq_c, freq_c = n_c / P_c: P_c valid pixels of the train images containing c",
}


def weights_override(summary: dict) -> str | None:
    """The ``--set`` text that puts the summary's class weights into a recipe."""
    weights: Iterable[float] | None = (summary.get("class_weights") or {}).get("weights")
    return None if weights is None else "train.loss.class_weights=[" + ", ".join(f"{w:g}" for w in weights) + "]"
