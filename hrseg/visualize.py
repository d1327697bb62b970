"""Pictures of predictions: palette colouring, overlays, titled side-by-side panels with a
legend of the classes present, and the confusion-matrix figure. Generic (any class count, any palette); training uses them too.

Everything returns arrays or matplotlib ``Figure`` objects built without ``pyplot`` (no global
figure state, Agg canvas); ``save_png`` / ``save_label_png`` / ``save_figure`` write atomically
through ``hrseg.io``.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence

import numpy as np
import torch

from hrseg import io as hio

Palette = Sequence[Sequence[int]]
IGNORE_COLOUR = (0, 0, 0)


def _as_numpy(array: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(array, torch.Tensor):
        return array.detach().cpu().numpy()
    return np.asarray(array)


def palette_table(palette: Palette, ignore_colour: Sequence[int] = IGNORE_COLOUR) -> np.ndarray:
    """A 256 x 3 uint8 lookup table: class ``i`` -> ``palette[i]``, everything else
    (ignore 255, out-of-range values) -> ``ignore_colour``."""
    if len(palette) > 256:
        raise ValueError(f"a palette has at most 256 colours, got {len(palette)}")
    table = np.tile(np.asarray(ignore_colour, np.uint8), (256, 1))
    if len(palette):
        table[: len(palette)] = np.asarray(palette, np.uint8).reshape(-1, 3)
    return table


def colorize(label: np.ndarray | torch.Tensor, palette: Palette, ignore_colour: Sequence[int] = IGNORE_COLOUR) -> np.ndarray:
    """``H x W`` class indices -> ``H x W x 3`` uint8 RGB."""
    label = _as_numpy(label)
    index = np.where((label >= 0) & (label < 256), label, 255).astype(np.uint8)
    return palette_table(palette, ignore_colour)[index]


def denormalize(image: np.ndarray | torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """A normalised ``3 x H x W`` RGB tensor back to ``H x W x 3`` uint8 RGB."""
    array = _as_numpy(image).astype(np.float32)
    if array.ndim == 4:
        array = array[0]
    rgb = array.transpose(1, 2, 0) * np.asarray(std, np.float32) + np.asarray(mean, np.float32)
    return np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8)


def overlay(
    image_rgb: np.ndarray,
    label: np.ndarray | torch.Tensor,
    palette: Palette,
    *,
    alpha: float = 0.5,
    ignore_label: int = 255,
) -> np.ndarray:
    """Blend the colourised ``label`` over ``image_rgb`` (both ``H x W``); ignored pixels keep
    the image. Returns ``H x W x 3`` uint8."""
    label = _as_numpy(label)
    image_rgb = np.asarray(image_rgb)
    if image_rgb.shape[:2] != label.shape:
        raise ValueError(f"image {image_rgb.shape[:2]} and label {label.shape} sizes differ")
    colour = colorize(label, palette).astype(np.float32)
    blend = (1.0 - alpha) * image_rgb.astype(np.float32) + alpha * colour
    keep = (label == ignore_label)[..., None]
    out = np.where(keep, image_rgb.astype(np.float32), blend)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def panel(images: Sequence[np.ndarray], gap: int = 4) -> np.ndarray:
    """Equal-height ``H x W x 3`` uint8 images side by side, separated by white gaps."""
    height = images[0].shape[0]
    if any(im.shape[0] != height for im in images):
        raise ValueError(f"panel images need equal heights, got {[im.shape[0] for im in images]}")
    parts: list[np.ndarray] = []
    for i, im in enumerate(images):
        if i:
            parts.append(np.full((height, gap, 3), 255, np.uint8))
        parts.append(im)
    return np.concatenate(parts, axis=1)


#: Panel titles of ``prediction_panel``.
PANEL_TITLES = ("image", "ground truth", "prediction")
#: At most this many classes in a panel's legend (the most frequent; the rest are counted).
LEGEND_MAX = 24


def classes_present(*labels: np.ndarray, ignore_label: int = 255) -> list[int]:
    """Class indices that occur in any of ``labels``, most pixels first (ties: lower index)."""
    counts: dict[int, int] = {}
    for label in labels:
        values, n = np.unique(_as_numpy(label), return_counts=True)
        for v, c in zip(values.tolist(), n.tolist()):
            if v != ignore_label:
                counts[int(v)] = counts.get(int(v), 0) + int(c)
    return sorted(counts, key=lambda v: (-counts[v], v))


def prediction_figure(
    image_rgb: np.ndarray,
    pred: np.ndarray | torch.Tensor,
    palette: Palette,
    label: np.ndarray | torch.Tensor | None = None,
    *,
    class_names: Sequence[str] | None = None,
    ignore_label: int = 255,
    title: str | None = None,
    panel_inches: float = 4.0,
):
    """A matplotlib ``Figure``: panels titled ``image | ground truth | prediction`` (ground
    truth only when given; both overlays blended over the image) and, below them, a legend of
    the classes present in either, most pixels first (at most ``LEGEND_MAX``)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    pred = _as_numpy(pred)
    image_rgb = np.asarray(image_rgb)
    panels = [(PANEL_TITLES[0], image_rgb)]
    if label is not None:
        label = _as_numpy(label)
        panels.append((PANEL_TITLES[1], overlay(image_rgb, label, palette, ignore_label=ignore_label)))
    panels.append((PANEL_TITLES[2], overlay(image_rgb, pred, palette, ignore_label=ignore_label)))
    present = classes_present(pred, *([] if label is None else [label]), ignore_label=ignore_label)
    shown = present[:LEGEND_MAX]
    columns = min(max(len(shown), 1), 4 * len(panels))
    legend_rows = -(-len(shown) // columns) if shown else 0
    height, width = image_rgb.shape[:2]
    panel_height = panel_inches * height / max(width, 1)
    fig = Figure(figsize=(panel_inches * len(panels), panel_height + 0.5 + 0.25 * legend_rows + (0.3 if title else 0.0)))
    FigureCanvasAgg(fig)
    for i, (name, picture) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        ax.imshow(picture, interpolation="nearest")
        ax.set_title(name, fontsize=10)
        ax.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=10)
    if shown:
        table = palette_table(palette)
        names = [class_names[c] if class_names is not None and c < len(class_names) else f"class {c}" for c in shown]
        handles = [Patch(facecolor=table[c] / 255.0, edgecolor="black", linewidth=0.5, label=f"{c} {n}") for c, n in zip(shown, names)]
        more = len(present) - len(shown)
        fig.legend(
            handles=handles, loc="lower center", ncol=columns, fontsize=7, frameon=False,
            title=f"classes present (+{more} more)" if more else "classes present", title_fontsize=7,
        )  # fmt: skip
    bottom = (0.25 * legend_rows + 0.35) / fig.get_figheight() if shown else 0.02
    top = 1.0 - (0.55 if title else 0.3) / fig.get_figheight()
    fig.subplots_adjust(left=0.01, right=0.99, bottom=bottom, top=top, wspace=0.03)
    return fig


def figure_rgb(fig, dpi: int = 100) -> np.ndarray:
    """Render ``fig`` (with an Agg canvas) to an ``H x W x 3`` uint8 array."""
    fig.set_dpi(dpi)
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


def prediction_panel(
    image_rgb: np.ndarray,
    pred: np.ndarray | torch.Tensor,
    palette: Palette,
    label: np.ndarray | torch.Tensor | None = None,
    *,
    ignore_label: int = 255,
    class_names: Sequence[str] | None = None,
    title: str | None = None,
) -> np.ndarray:
    """``prediction_figure`` as an RGB array: titled ``image | ground truth | prediction``
    panels and a legend of the classes present (named when ``class_names`` is given)."""
    fig = prediction_figure(image_rgb, pred, palette, label, class_names=class_names, ignore_label=ignore_label, title=title)
    return figure_rgb(fig)


def label_image(label: np.ndarray | torch.Tensor, palette: Palette):
    """A palettised (mode ``P``) PIL image whose pixel values are the class indices."""
    from PIL import Image

    label = _as_numpy(label)
    if label.size and (label.min() < 0 or label.max() > 255):
        raise ValueError(f"label values {int(label.min())}..{int(label.max())} do not fit a palettised PNG")
    img = Image.fromarray(label.astype(np.uint8), mode="P")
    img.putpalette(palette_table(palette).reshape(-1).tolist())
    return img


def save_label_png(path: str | os.PathLike, label: np.ndarray | torch.Tensor, palette: Palette) -> None:
    """Write class indices as a palettised PNG (values preserved, colours for viewing)."""
    hio.write_image(path, label_image(label, palette))


def save_png(path: str | os.PathLike, rgb: np.ndarray) -> None:
    hio.write_image(path, np.ascontiguousarray(rgb))


# --------------------------------------------------------------------------------------
# Confusion matrix figure
# --------------------------------------------------------------------------------------


def confusion_matrix_figure(
    matrix: np.ndarray | torch.Tensor,
    class_names: Sequence[str] | None = None,
    *,
    normalize: bool = True,
    title: str = "Confusion matrix",
):
    """A matplotlib ``Figure`` of a ``K x K`` matrix (rows = ground truth, columns =
    prediction). ``normalize`` divides each row by its ground-truth count (rows without
    pixels stay 0). Class names are printed for up to 40 classes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    mat = _as_numpy(matrix).astype(np.float64)
    k = mat.shape[0]
    if normalize:
        rows = mat.sum(axis=1, keepdims=True)
        mat = np.divide(mat, rows, out=np.zeros_like(mat), where=rows > 0)
    size = min(4.0 + 0.28 * k, 24.0)
    fig = Figure(figsize=(size, size))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(mat, cmap="Blues", vmin=0.0, vmax=1.0 if normalize else None, interpolation="nearest")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xlabel("prediction")
    ax.set_ylabel("ground truth")
    ax.set_title(title + (" (row-normalised)" if normalize else ""))
    if class_names is not None and k <= 40:
        ticks = np.arange(k)
        ax.set_xticks(ticks)
        ax.set_yticks(ticks)
        ax.set_xticklabels(class_names, rotation=90, fontsize=7)
        ax.set_yticklabels(class_names, fontsize=7)
        if k <= 20:
            for i in range(k):
                for j in range(k):
                    if mat[i, j] >= 0.005:
                        ax.text(j, i, f"{mat[i, j]:.2f}" if normalize else f"{int(mat[i, j])}", ha="center", va="center",
                                fontsize=6, color="white" if mat[i, j] > 0.5 * (mat.max() or 1) else "black")  # fmt: skip
    fig.tight_layout()
    return fig


def save_figure(path: str | os.PathLike, fig, dpi: int = 100) -> None:
    """Render ``fig`` to PNG bytes and write them atomically."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    hio.write_bytes(path, buffer.getvalue())
