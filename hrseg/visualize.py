"""Pictures of predictions: palette colouring, overlays, titled side-by-side panels with a
legend of the classes present, the confusion matrix, and small line charts (the training
curve). Generic (any class count, any palette); training uses them too.

The pictures are drawn with numpy and PIL, not matplotlib (issue 17: every pipeline stage draws
some, and matplotlib's import, layout and double draws were about 2.5 s of a 15 s stage): the
panels are one composited array, text is drawn with the DejaVu Sans font that ships with
matplotlib (found on disk, not imported; PIL's own font otherwise). A finished picture is a
``Picture`` (``.rgb``: ``H x W x 3`` uint8), which saves like a matplotlib ``Figure``
(``.savefig``), so ``save_figure`` and ``MlflowTracker.log_figure`` take either.
``save_png`` / ``save_label_png`` / ``save_figure`` write atomically through ``hrseg.io``.
"""

from __future__ import annotations

import functools
import io
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hrseg import io as hio

Palette = Sequence[Sequence[int]]
IGNORE_COLOUR = (0, 0, 0)
BLACK, WHITE, GREY = (0, 0, 0), (255, 255, 255), (110, 110, 110)


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


# --------------------------------------------------------------------------------------
# Pictures, fonts and text (PIL)
# --------------------------------------------------------------------------------------


class Picture:
    """A finished picture: ``rgb`` (``H x W x 3`` uint8). It saves like a matplotlib ``Figure``
    where hrseg hands figures on: ``savefig(file_or_path, format="png", **ignored)`` (``dpi``,
    ``bbox_inches`` and the like are ignored: the pixels are the layout), so ``save_figure`` and
    ``MlflowTracker.log_figure`` take a ``Picture`` or a ``Figure``. PNG bytes are encoded once."""

    def __init__(self, rgb: np.ndarray) -> None:
        rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
        if rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"a picture is H x W x 3, got {rgb.shape}")
        self.rgb = rgb
        self._png: bytes | None = None

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` in pixels."""
        return self.rgb.shape[1], self.rgb.shape[0]

    def png(self) -> bytes:
        """The picture as PNG bytes (the same bytes every call)."""
        if self._png is None:
            self._png = encode_png(self.rgb)
        return self._png

    def savefig(self, fname: Any, *, format: str | None = None, **_ignored: Any) -> None:  # noqa: A002  (matplotlib's name)
        """Write the picture to a path (atomically) or a binary file object, as PNG unless
        ``format`` (or the path's suffix) names another format PIL writes (``jpg``, ``webp``, ``pdf``...)."""
        if format is None:
            format = Path(os.fspath(fname)).suffix.lstrip(".") if isinstance(fname, (str, os.PathLike)) else "png"
        format = (format or "png").lower()
        if format == "png":
            data = self.png()
        else:
            from PIL import Image

            kind = Image.registered_extensions().get(f".{format}")
            if kind is None:
                raise ValueError(f"cannot write a picture as {format!r}")
            buffer = io.BytesIO()
            Image.fromarray(self.rgb).save(buffer, format=kind)
            data = buffer.getvalue()
        if isinstance(fname, (str, os.PathLike)):
            hio.write_bytes(fname, data)  # atomically, like every file hrseg writes
        else:
            fname.write(data)


#: zlib level of the PNGs written here: 1 encodes a 1576 x 349 overlay in 18 ms instead of 77 ms
#: (PIL's default 6) for files about 10% larger.
PNG_COMPRESS_LEVEL = 1


def encode_png(rgb: np.ndarray) -> bytes:
    """``H x W x 3`` uint8 RGB as PNG bytes (PIL, no metadata: the same pixels give the same bytes)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buffer.getvalue()


@functools.lru_cache(maxsize=None)
def _font_file(bold: bool) -> str | None:
    """DejaVu Sans from matplotlib's data folder, located without importing matplotlib."""
    import importlib.util

    try:
        spec = importlib.util.find_spec("matplotlib")
    except (ImportError, ValueError):
        return None
    for folder in (spec.submodule_search_locations or []) if spec is not None else []:
        candidate = Path(folder) / "mpl-data" / "fonts" / "ttf" / ("DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf")
        if candidate.is_file():
            return str(candidate)
    return None


@functools.lru_cache(maxsize=None)
def font(size: int, bold: bool = False):
    """A PIL font of ``size`` pixels: DejaVu Sans (matplotlib's default font) when matplotlib is
    installed, PIL's built-in font otherwise. Cached: loading a font file costs milliseconds."""
    from PIL import ImageFont

    path = _font_file(bold)
    if path is not None:
        return ImageFont.truetype(path, size)
    return ImageFont.load_default(size)


def text_width(text: str, fnt) -> int:
    return int(math.ceil(fnt.getlength(text)))


def line_height(fnt) -> int:
    ascent, descent = fnt.getmetrics()
    return ascent + descent


def draw_text(draw, xy: tuple[float, float], text: str, fnt, fill=BLACK, align: str = "left") -> None:
    """Text whose top (the font's ascender) is at ``xy[1]``; ``xy[0]`` is its left edge, centre
    or right edge (``align``)."""
    x, y = xy
    if align != "left":
        x -= text_width(text, fnt) / (2 if align == "center" else 1)
    draw.text((round(x), round(y)), text, fill=fill, font=fnt)


def rotated_text(texts: Sequence[str], fnt, pitch: int, fill=BLACK) -> np.ndarray:
    """``texts`` drawn upwards (rotated 90 degrees counter-clockwise), side by side ``pitch``
    pixels apart, each ending at the top edge: x-axis tick labels. Returns ``H x W x 3`` uint8."""
    from PIL import Image, ImageDraw

    length = max((text_width(t, fnt) for t in texts), default=0) + 1
    strip = Image.new("RGB", (length, max(pitch * len(texts), 1)), WHITE)
    draw = ImageDraw.Draw(strip)
    lh = line_height(fnt)
    for i, t in enumerate(texts):  # right-aligned rows; rotating turns row i into column i
        draw_text(draw, (length, i * pitch + (pitch - lh) / 2), t, fnt, fill, align="right")
    return np.asarray(strip.transpose(Image.Transpose.ROTATE_90))


def _resize(picture: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour enlargement (crisp pixels, as labels should look); a box filter to shrink."""
    h, w = picture.shape[:2]
    if (h, w) == (height, width):
        return picture
    if height >= h and width >= w:
        rows = ((np.arange(height) + 0.5) * h / height).astype(np.intp)
        cols = ((np.arange(width) + 0.5) * w / width).astype(np.intp)
        return picture[rows[:, None], cols]
    from PIL import Image

    return np.asarray(Image.fromarray(np.ascontiguousarray(picture)).resize((width, height), Image.Resampling.BOX))


# --------------------------------------------------------------------------------------
# Prediction panels
# --------------------------------------------------------------------------------------

#: Panel titles of ``prediction_panel``.
PANEL_TITLES = ("image", "ground truth", "prediction")
#: At most this many classes in a panel's legend (the most frequent; the rest are counted).
LEGEND_MAX = 24
#: Pixels: outer margin, gap between panels, title / legend font sizes, legend swatch side.
_MARGIN, _GAP, _TITLE_PX, _LEGEND_PX, _SWATCH = 10, 10, 16, 12, 12


def classes_present(*labels: np.ndarray, ignore_label: int = 255) -> list[int]:
    """Class indices that occur in any of ``labels``, most pixels first (ties: lower index)."""
    counts: dict[int, int] = {}
    for label in labels:
        values, n = np.unique(_as_numpy(label), return_counts=True)
        for v, c in zip(values.tolist(), n.tolist()):
            if v != ignore_label:
                counts[int(v)] = counts.get(int(v), 0) + int(c)
    return sorted(counts, key=lambda v: (-counts[v], v))


def legend_entries(present: Sequence[int], class_names: Sequence[str] | None = None) -> tuple[str, list[tuple[int, str]]]:
    """The legend of ``prediction_panel``: its title (``"classes present"``, with ``(+N more)``
    beyond ``LEGEND_MAX``) and ``(class, "index name")`` for the ``LEGEND_MAX`` first classes."""
    shown = list(present[:LEGEND_MAX])
    more = len(present) - len(shown)
    names = [class_names[c] if class_names is not None and c < len(class_names) else f"class {c}" for c in shown]
    return (f"classes present (+{more} more)" if more else "classes present"), [(c, f"{c} {n}") for c, n in zip(shown, names)]


def prediction_panels(
    image_rgb: np.ndarray, pred: np.ndarray | torch.Tensor, palette: Palette, label: np.ndarray | torch.Tensor | None = None, *, ignore_label: int = 255
) -> list[tuple[str, np.ndarray]]:
    """``(title, H x W x 3 picture)`` of each panel: the image, the ground truth (when given)
    and the prediction, both blended over the image."""
    image_rgb = np.asarray(image_rgb)
    panels = [(PANEL_TITLES[0], image_rgb)]
    if label is not None:
        panels.append((PANEL_TITLES[1], overlay(image_rgb, _as_numpy(label), palette, ignore_label=ignore_label)))
    panels.append((PANEL_TITLES[2], overlay(image_rgb, _as_numpy(pred), palette, ignore_label=ignore_label)))
    return panels


def _panel_size(height: int, width: int, panel_width: int) -> tuple[int, int]:
    """A panel's pixels: an integer enlargement of small images close to ``panel_width`` (crisp,
    even pixels), a reduction to ``panel_width`` of larger ones."""
    if width <= panel_width:
        scale = max(1, round(panel_width / max(width, 1)))
        return height * scale, width * scale
    return max(1, round(height * panel_width / width)), panel_width


def prediction_picture(
    image_rgb: np.ndarray,
    pred: np.ndarray | torch.Tensor,
    palette: Palette,
    label: np.ndarray | torch.Tensor | None = None,
    *,
    ignore_label: int = 255,
    class_names: Sequence[str] | None = None,
    title: str | None = None,
    panel_width: int = 400,
) -> Picture:
    """``prediction_panel`` as a ``Picture``."""
    from PIL import Image, ImageDraw

    pred = _as_numpy(pred)
    label = None if label is None else _as_numpy(label)
    panels = prediction_panels(image_rgb, pred, palette, label, ignore_label=ignore_label)
    present = classes_present(pred, *([] if label is None else [label]), ignore_label=ignore_label)
    legend_title, entries = legend_entries(present, class_names)
    height, width = np.asarray(image_rgb).shape[:2]
    ph, pw = _panel_size(height, width, panel_width)

    title_font, legend_font = font(_TITLE_PX), font(_LEGEND_PX)
    title_h, legend_h = line_height(title_font), max(line_height(legend_font), _SWATCH) + 4
    column_w = _SWATCH + 6 + max((text_width(t, legend_font) for _, t in entries), default=0) + 18
    inner = len(panels) * pw + (len(panels) - 1) * _GAP
    inner = max(inner, column_w, text_width(legend_title, legend_font), text_width(title or "", title_font))
    columns = max(1, min(len(entries), inner // column_w)) if entries else 1
    rows = -(-len(entries) // columns)
    canvas_w = inner + 2 * _MARGIN
    top = _MARGIN + (title_h + 10 if title else 0)
    panel_top = top + title_h + 4
    legend_top = panel_top + ph + 12
    canvas_h = legend_top + ((line_height(legend_font) + 4 + rows * legend_h) if entries else 0) + _MARGIN

    canvas = np.full((canvas_h, canvas_w, 3), 255, np.uint8)
    left = _MARGIN + (inner - (len(panels) * pw + (len(panels) - 1) * _GAP)) // 2
    for i, (_, picture) in enumerate(panels):
        x = left + i * (pw + _GAP)
        canvas[panel_top : panel_top + ph, x : x + pw] = _resize(np.asarray(picture, np.uint8), ph, pw)
    img = Image.fromarray(canvas)
    draw = ImageDraw.Draw(img)
    if title:
        draw_text(draw, (canvas_w / 2, _MARGIN), title, title_font, align="center")
    for i, (name, _) in enumerate(panels):
        draw_text(draw, (left + i * (pw + _GAP) + pw / 2, top), name, title_font, align="center")
    if entries:
        table = palette_table(palette)
        draw_text(draw, (canvas_w / 2, legend_top), legend_title, legend_font, fill=GREY, align="center")
        grid_left = _MARGIN + (inner - columns * column_w + 18) // 2
        lh = line_height(legend_font)
        for n, (c, text) in enumerate(entries):
            x = grid_left + (n % columns) * column_w
            y = legend_top + lh + 4 + (n // columns) * legend_h
            draw.rectangle(
                (x, y + (lh - _SWATCH) // 2, x + _SWATCH - 1, y + (lh - _SWATCH) // 2 + _SWATCH - 1), fill=tuple(int(v) for v in table[c]), outline=BLACK
            )
            draw_text(draw, (x + _SWATCH + 6, y), text, legend_font)
    return Picture(np.asarray(img))


def prediction_panel(
    image_rgb: np.ndarray,
    pred: np.ndarray | torch.Tensor,
    palette: Palette,
    label: np.ndarray | torch.Tensor | None = None,
    *,
    ignore_label: int = 255,
    class_names: Sequence[str] | None = None,
    title: str | None = None,
    panel_width: int = 400,
) -> np.ndarray:
    """An RGB array: panels titled ``image | ground truth | prediction`` (ground truth only
    when given; both overlays blended over the image; each panel about ``panel_width`` pixels
    wide, small images enlarged by a whole factor) and, below them, a legend of the classes
    present in either, most pixels first (at most ``LEGEND_MAX``; named when ``class_names``
    is given). ``title`` goes above everything."""
    return prediction_picture(image_rgb, pred, palette, label, ignore_label=ignore_label, class_names=class_names, title=title, panel_width=panel_width).rgb


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
    """``prediction_panel``'s picture in a matplotlib ``Figure`` (Agg canvas, pixel for pixel at
    100 dpi), for code that wants a ``Figure``; imports matplotlib, which nothing else here does."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rgb = prediction_panel(
        image_rgb, pred, palette, label, ignore_label=ignore_label, class_names=class_names, title=title, panel_width=round(panel_inches * 100)
    )
    fig = Figure(figsize=(rgb.shape[1] / 100, rgb.shape[0] / 100), dpi=100)
    FigureCanvasAgg(fig)
    fig.figimage(rgb, xo=0, yo=0, origin="upper")
    return fig


def figure_rgb(fig, dpi: int = 100) -> np.ndarray:
    """A ``Picture``'s pixels, or a matplotlib ``fig`` (with an Agg canvas) rendered at ``dpi``:
    an ``H x W x 3`` uint8 array."""
    if isinstance(fig, Picture):
        return fig.rgb.copy()
    fig.set_dpi(dpi)
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


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
    """Write ``H x W x 3`` uint8 RGB atomically: PNG (``encode_png``), or the format of another suffix."""
    if Path(path).suffix.lower() == ".png":
        hio.write_bytes(path, encode_png(rgb))
    else:
        hio.write_image(path, np.ascontiguousarray(rgb))


# --------------------------------------------------------------------------------------
# Axes: ticks, colour map
# --------------------------------------------------------------------------------------

#: matplotlib's "Blues" (ColorBrewer), from white to dark blue.
_BLUES = ("#f7fbff", "#deebf7", "#c6dbef", "#9ecae1", "#6baed6", "#4292c6", "#2171b5", "#08519c", "#08306b")


@functools.lru_cache(maxsize=1)
def blues_table() -> np.ndarray:
    """256 x 3 uint8: matplotlib's ``Blues`` colour map, linearly interpolated as matplotlib does."""
    anchors = np.array([[int(h[i : i + 2], 16) for i in (1, 3, 5)] for h in _BLUES], np.float64)
    x = np.linspace(0.0, 1.0, len(anchors))
    t = np.linspace(0.0, 1.0, 256)
    table = np.stack([np.interp(t, x, anchors[:, c]) for c in range(3)], axis=1)
    table = np.clip(np.round(table), 0, 255).astype(np.uint8)
    table.setflags(write=False)
    return table


def nice_ticks(lo: float, hi: float, count: int = 6, *, integer: bool = False) -> list[float]:
    """Round tick values (steps of 1, 2, 2.5 or 5 times a power of ten) inside ``[lo, hi]``,
    about ``count`` of them; whole numbers only when ``integer``."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo] if math.isfinite(lo) else []
    raw = (hi - lo) / max(count - 1, 1)
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw * 0.999)
    if integer:
        step = max(1.0, round(step))
    first = math.ceil(lo / step - 1e-9) * step
    ticks = []
    value = first
    while value <= hi + step * 1e-9:
        ticks.append(0.0 if abs(value) < step * 1e-9 else value)
        value = first + len(ticks) * step
    return ticks


def tick_labels(ticks: Sequence[float]) -> list[str]:
    """Labels of ``nice_ticks`` values: as many decimals as the step needs (``1.5``, ``0.025``),
    scientific for tiny steps."""
    if len(ticks) < 2:
        return [f"{t:g}" for t in ticks]
    step = abs(ticks[1] - ticks[0])
    decimals = max(0, -math.floor(math.log10(step) + 1e-9)) if step > 0 else 0
    if decimals and abs(round(step * 10**decimals) - step * 10**decimals) > 1e-6:
        decimals += 1  # 2.5, 0.25: one more digit
    if decimals > 4:
        return [f"{t:.1e}" for t in ticks]
    return [f"{t:.{decimals}f}" for t in ticks]


# --------------------------------------------------------------------------------------
# Confusion matrix figure
# --------------------------------------------------------------------------------------


def confusion_matrix_figure(
    matrix: np.ndarray | torch.Tensor,
    class_names: Sequence[str] | None = None,
    *,
    normalize: bool = True,
    title: str = "Confusion matrix",
) -> Picture:
    """A ``Picture`` (saves like a ``Figure``: ``save_figure``) of a ``K x K`` matrix (rows =
    ground truth, columns = prediction) in the ``Blues`` colour map with a colour bar.
    ``normalize`` divides each row by its ground-truth count (rows without pixels stay 0).
    Class names are printed for up to 40 classes (class indices otherwise), the values in the
    cells for up to 20."""
    from PIL import Image, ImageDraw

    mat = _as_numpy(matrix).astype(np.float64)
    k = mat.shape[0]
    if normalize:
        rows = mat.sum(axis=1, keepdims=True)
        mat = np.divide(mat, rows, out=np.zeros_like(mat), where=rows > 0)
    vmax = 1.0 if normalize else float(mat.max()) or 1.0
    named = class_names is not None and k <= 40
    cell = max(2, min(max(48, 240 // max(k, 1)), 640 // max(k, 1)))  # the matrix 240 to 640 pixels wide
    side = cell * k

    title_font, axis_font, tick_font = font(15), font(13), font(12)
    if named:
        y_labels = [str(n) for n in class_names[:k]] + [""] * max(0, k - len(class_names))
        x_strip = rotated_text(y_labels, tick_font, cell)
        positions = list(range(k))
    else:
        positions = [int(t) for t in nice_ticks(0, k - 1, 8, integer=True)]
        y_labels = [str(p) for p in positions]
    tick_len, pad = 4, 10
    y_label_w = max((text_width(t, tick_font) for t in y_labels), default=0)
    left = pad + line_height(axis_font) + 6 + y_label_w + tick_len + 3
    top = pad + line_height(title_font) + 8
    x_labels_h = x_strip.shape[0] if named else line_height(tick_font)
    bottom_h = tick_len + 3 + x_labels_h + 6 + line_height(axis_font) + pad
    bar_w, bar_gap = max(12, min(24, side // 25)), 20
    bar_ticks = nice_ticks(0.0, vmax, 6)
    bar_labels = tick_labels(bar_ticks) if normalize or vmax < 10 else [f"{int(t)}" for t in bar_ticks]
    right = bar_gap + bar_w + tick_len + 3 + max((text_width(t, tick_font) for t in bar_labels), default=0) + pad
    heading = title + (" (row-normalised)" if normalize else "")
    heading_w = text_width(heading, title_font)
    width, height = max(left + side + right, heading_w + 2 * pad), top + side + bottom_h
    canvas = np.full((height, width, 3), 255, np.uint8)

    levels = np.clip((mat / vmax) * 256, 0, 255).astype(np.intp)
    cells = blues_table()[levels]
    canvas[top : top + side, left : left + side] = np.repeat(np.repeat(cells, cell, axis=0), cell, axis=1)
    bar_x = left + side + bar_gap
    ramp = blues_table()[np.clip(((side - 1 - np.arange(side)) + 0.5) / side * 256, 0, 255).astype(np.intp)]
    canvas[top : top + side, bar_x : bar_x + bar_w] = ramp[:, None, :]
    if named:
        canvas[top + side + tick_len + 3 : top + side + tick_len + 3 + x_strip.shape[0], left : left + x_strip.shape[1]] = x_strip

    img = Image.fromarray(canvas)
    draw = ImageDraw.Draw(img)
    draw.rectangle((left - 1, top - 1, left + side, top + side), outline=BLACK)
    draw.rectangle((bar_x - 1, top - 1, bar_x + bar_w, top + side), outline=BLACK)
    heading_x = min(max(left + side / 2, pad + heading_w / 2), width - pad - heading_w / 2)  # over the matrix, inside the picture
    draw_text(draw, (heading_x, pad), heading, title_font, align="center")
    th = line_height(tick_font)
    for p, text in zip(positions, y_labels):
        centre = top + p * cell + cell / 2
        draw.line((left - 1 - tick_len, centre, left - 2, centre), fill=BLACK)
        draw_text(draw, (left - tick_len - 4, centre - th / 2), text, tick_font, align="right")
        cx = left + p * cell + cell / 2
        draw.line((cx, top + side + 1, cx, top + side + tick_len), fill=BLACK)
        if not named:
            draw_text(draw, (cx, top + side + tick_len + 3), text, tick_font, align="center")
    for t, text in zip(bar_ticks, bar_labels):
        y = top + side - 1 - (t / vmax) * (side - 1)
        draw.line((bar_x + bar_w + 1, y, bar_x + bar_w + tick_len, y), fill=BLACK)
        draw_text(draw, (bar_x + bar_w + tick_len + 3, y - th / 2), text, tick_font)
    draw_text(draw, (left + side / 2, top + side + tick_len + 3 + x_labels_h + 6), "prediction", axis_font, align="center")
    y_axis = rotated_text(["ground truth"], axis_font, line_height(axis_font))
    img.paste(Image.fromarray(y_axis), (pad, max(top, int(top + side / 2 - y_axis.shape[0] / 2))))
    if named and k <= 20:
        value_font = font(max(8, min(12, cell // 3)))
        vh = line_height(value_font)
        peak = mat.max() or 1.0
        for i, j in zip(*np.nonzero(mat >= 0.005)):
            v = mat[i, j]
            text = f"{v:.2f}" if normalize else f"{int(v)}"
            draw_text(
                draw, (left + j * cell + cell / 2, top + i * cell + (cell - vh) / 2), text, value_font, fill=WHITE if v > 0.5 * peak else BLACK, align="center"
            )
    return Picture(np.asarray(img))


def save_figure(path: str | os.PathLike, fig, dpi: int = 100) -> None:
    """Write a ``Picture`` or a matplotlib ``Figure`` (rendered at ``dpi``) as PNG, atomically."""
    if isinstance(fig, Picture):
        hio.write_bytes(path, fig.png())
        return
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    hio.write_bytes(path, buffer.getvalue())


# --------------------------------------------------------------------------------------
# Line charts (the training curve)
# --------------------------------------------------------------------------------------

#: matplotlib's first default line colour.
LINE_COLOUR = (31, 119, 180)


def _to_pixels(x: float, y: float, box: tuple[float, float, float, float], limits: tuple[float, float, float, float]) -> tuple[float, float]:
    """Data ``(x, y)`` -> pixels in a plot ``box`` (left, top, right, bottom) showing ``limits`` (x0, x1, y0, y1)."""
    (left, top, right, bottom), (x0, x1, y0, y1) = box, limits
    return left + (x - x0) / (x1 - x0) * (right - left), bottom - (y - y0) / (y1 - y0) * (bottom - top)


def line_charts(
    charts: Sequence[tuple[str, Sequence[float], Sequence[float]]],
    *,
    xlabel: str = "",
    size: tuple[int, int] = (1000, 320),
    integer_x: bool = True,
    markers_below: int = 30,
) -> Picture:
    """Line charts side by side, one per ``(title, xs, ys)``: a framed plot with round ticks,
    a light grid, the line (with dots when fewer than ``markers_below`` points) and
    ``xlabel`` under each. Non-finite points are left out; a chart without points says so.
    ``size`` is ``(width, height)`` in pixels; drawn at twice the size and reduced, so lines
    and text are smooth."""
    from PIL import Image, ImageDraw

    s = 2  # supersampling
    width, height = size
    img = Image.new("RGB", (width * s, height * s), WHITE)
    draw = ImageDraw.Draw(img)
    title_font, tick_font, label_font = font(15 * s), font(11 * s), font(12 * s)
    th = line_height(tick_font)
    n = max(len(charts), 1)
    pad = 10 * s
    chart_w = (width * s - pad) // n
    for index, (title, xs, ys) in enumerate(charts):
        points = [(float(x), float(y)) for x, y in zip(xs, ys) if y is not None and math.isfinite(float(y)) and math.isfinite(float(x))]
        x0 = index * chart_w + pad
        top = pad + line_height(title_font) + 6 * s
        bottom = height * s - pad - (line_height(label_font) + 4 * s if xlabel else 0) - th - 8 * s
        if points:
            px, py = [p[0] for p in points], [p[1] for p in points]
            xlo, xhi = min(px), max(px)
            ylo, yhi = min(py), max(py)
        else:
            xlo, xhi, ylo, yhi = 0.0, 1.0, 0.0, 1.0
        if xhi - xlo <= 0:
            xlo, xhi = xlo - 1, xhi + 1
        if yhi - ylo <= 0:
            span = abs(ylo) * 0.1 or 0.1
            ylo, yhi = ylo - span, yhi + span
        xlo, xhi = xlo - 0.05 * (xhi - xlo), xhi + 0.05 * (xhi - xlo)  # matplotlib's margins
        ylo, yhi = ylo - 0.05 * (yhi - ylo), yhi + 0.05 * (yhi - ylo)
        yticks = nice_ticks(ylo, yhi, 6)
        ylabels = tick_labels(yticks)
        left = x0 + max((text_width(t, tick_font) for t in ylabels), default=0) + 10 * s
        right = x0 + chart_w - pad
        xticks = nice_ticks(xlo, xhi, 7, integer=integer_x)
        xlabels = tick_labels(xticks) if not integer_x else [f"{int(t)}" for t in xticks]

        box, limits = (left, top, right, bottom), (xlo, xhi, ylo, yhi)
        for t, text in zip(yticks, ylabels):
            _, y = _to_pixels(xlo, t, box, limits)
            draw.line((left, y, right, y), fill=(228, 228, 228), width=s)
            draw.line((left - 4 * s, y, left, y), fill=BLACK, width=s)
            draw_text(draw, (left - 6 * s, y - th / 2), text, tick_font, align="right")
        for t, text in zip(xticks, xlabels):
            x, _ = _to_pixels(t, ylo, box, limits)
            draw.line((x, top, x, bottom), fill=(228, 228, 228), width=s)
            draw.line((x, bottom, x, bottom + 4 * s), fill=BLACK, width=s)
            draw_text(draw, (x, bottom + 6 * s), text, tick_font, align="center")
        if points:
            xy = [_to_pixels(x, y, box, limits) for x, y in points]
            if len(xy) > 1:
                draw.line(xy, fill=LINE_COLOUR, width=3 * s // 2 + 1, joint="curve")
            if len(xy) < markers_below:
                r = 3 * s
                for x, y in xy:
                    draw.ellipse((x - r, y - r, x + r, y + r), fill=LINE_COLOUR)
        else:
            draw_text(draw, ((left + right) / 2, (top + bottom) / 2 - th / 2), "no values", tick_font, fill=GREY, align="center")
        draw.rectangle((left, top, right, bottom), outline=BLACK, width=s)
        draw_text(draw, ((left + right) / 2, pad), title, title_font, align="center")
        if xlabel:
            draw_text(draw, ((left + right) / 2, bottom + 6 * s + th + 4 * s), xlabel, label_font, align="center")
    return Picture(np.asarray(img.reduce(s)))
