"""Reading images and label maps the way the official code does.

Images: OpenCV, 8-bit BGR (``cv2.IMREAD_COLOR``); conversion to RGB happens in normalisation.
Labels: Pillow, the stored values of a single-channel (grayscale or palette) image as uint8,
like the official ``np.array(Image.open(path).convert('P'))`` for index PNGs.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from hrseg.data.errors import DatasetError


def read_image(path: str | Path) -> np.ndarray:
    """HxWx3 uint8 BGR. Raises ``DatasetError`` for a missing or undecodable file."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: image file not found")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise DatasetError(f"{path}: cannot decode image (corrupt or not an image)")
    return image


def read_label(path: str | Path) -> np.ndarray:
    """HxW uint8 raw label values. Raises ``DatasetError`` for a missing or undecodable file,
    a colour image, or values that do not fit in 8 bits."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: label file not found")
    try:
        with Image.open(path) as img:
            img.load()
            mode = img.mode
            array = np.array(img)
    except (OSError, SyntaxError, ValueError, UnidentifiedImageError, Image.DecompressionBombError) as exc:
        raise DatasetError(f"{path}: cannot decode label image ({exc})") from None
    if mode in ("L", "P"):
        return array
    if mode == "1":
        return array.astype(np.uint8)
    if mode.startswith("I") and array.ndim == 2:
        if array.size and (array.min() < 0 or array.max() > 255):
            raise DatasetError(f"{path}: label values {int(array.min())}..{int(array.max())} do not fit in 8 bits (expected 0..255)")
        return array.astype(np.uint8)
    raise DatasetError(f"{path}: expected a single-channel (grayscale or palette) label image, got mode {mode!r}")
