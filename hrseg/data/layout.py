"""Shared pieces of the per-dataset layout readers: samples found on disk, pairing images
with labels, and the "this root does not look like the dataset" error."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from hrseg.data.errors import LayoutError


@dataclass(frozen=True)
class Sample:
    """One list entry: paths relative to the dataset root (POSIX separators)."""

    image: str
    label: str | None
    name: str


@dataclass
class Discovery:
    """What a layout reader found: samples per split, and pairing problems (missing labels,
    labels without images, empty splits) to report together with the decode checks."""

    splits: dict[str, list[Sample]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def add(self, split: str, paired: tuple[list[Sample], list[str]]) -> None:
        """Record one split's ``(samples, problems)`` as ``pair_split`` returns them."""
        samples, problems = paired
        self.splits[split] = samples
        self.problems += problems


def rel(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def require_dirs(root: Path, dataset: str, layout: str, *dirs: str) -> None:
    """Raise ``LayoutError`` (showing the expected layout) unless every ``root/dir`` exists."""
    if not root.is_dir():
        raise LayoutError(f"{dataset}: dataset root {root} does not exist or is not a directory. Expected layout:\n{layout}")
    missing = [d for d in dirs if not (root / d).is_dir()]
    if missing:
        raise LayoutError(
            f"{root} does not look like {dataset}: missing {', '.join(d + '/' for d in missing)}. Expected layout:\n{layout}"
        )


def pair_split(
    split: str,
    images: dict[str, str],
    labels: dict[str, str],
    *,
    pattern: str,
    labelled: bool = True,
) -> tuple[list[Sample], list[str]]:
    """Pair images and labels that share a key (sorted by key).

    ``images``/``labels`` map a sample key to its root-relative path. Returns the samples and
    the problems: an empty split, an image without label, a label without image."""
    problems: list[str] = []
    if not images:
        problems.append(f"split {split!r} is empty: no image matches {pattern}")
        return [], problems
    samples = []
    for key in sorted(images):
        label = labels.get(key)
        if labelled and label is None:
            problems.append(f"{images[key]}: missing label file (no label for sample {key!r})")
            continue
        samples.append(Sample(image=images[key], label=label if labelled else None, name=Path(images[key]).stem))
    if labelled:
        for key in sorted(set(labels) - set(images)):
            problems.append(f"{labels[key]}: label without image (no image for sample {key!r})")
    return samples, problems


def pair_by_stem(split: str, root: Path, image_dir: Path, label_dir: Path) -> tuple[list[Sample], list[str]]:
    """``pair_split`` of ``image_dir/*.jpg`` with ``label_dir/*.png`` by file stem (the LIP,
    COCO-Stuff and ADE20K layouts)."""
    images = {p.stem: rel(p, root) for p in image_dir.glob("*.jpg")}
    labels = {p.stem: rel(p, root) for p in label_dir.glob("*.png")}
    return pair_split(split, images, labels, pattern=f"{rel(image_dir, root)}/*.jpg")
