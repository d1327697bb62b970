"""Reading images and label maps the way the official code does.

Images: OpenCV, 8-bit BGR (``cv2.IMREAD_COLOR``, which also applies EXIF orientation);
conversion to RGB happens in normalisation. Labels: Pillow, the stored values of a
single-channel (grayscale or palette) image as uint8, like the official
``np.array(Image.open(path).convert('P'))`` for index PNGs.

OpenCV decodes a truncated JPEG without failing: libjpeg prints "Premature end of JPEG file"
and fills the missing rows with grey. So before decoding, ``check_image_bytes`` looks at the
file's structure: a JPEG must have its end-of-image marker after the start of its image data,
a PNG must be a complete chain of chunks from IHDR to IEND with valid CRCs in its critical
chunks (what libpng would otherwise fail on, printing its own lines to stderr). A file that
fails is a ``DatasetError`` that names it and says what is wrong; nothing reaches the decoder.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import cv2
import numpy as np

from hrseg.data.errors import DatasetError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SOI = b"\xff\xd8"
_JPEG_EOI = b"\xff\xd9"
#: JPEG markers without a length field: TEM, RST0..RST7 (SOI/EOI are handled apart).
_JPEG_STANDALONE = frozenset([0x01, *range(0xD0, 0xD8)])
_JPEG_SOS = 0xDA


def _jpeg_problem(data: bytes) -> str | None:
    """Why a JPEG byte string is truncated, or None. Walks the length-prefixed header segments
    to the first start-of-scan; the entropy-coded data after it cannot contain FF D9 (0xFF is
    always stuffed), so a missing end-of-image marker there means the file was cut short."""
    n, pos = len(data), 2
    while pos + 4 <= n:
        if data[pos] != 0xFF:
            return None  # an unusual layout: leave the verdict to the decoder
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _JPEG_STANDALONE:
            pos += 2
            continue
        if marker == _JPEG_EOI[1]:
            return None
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if marker == _JPEG_SOS:
            start = pos + 2 + length
            if start > n or data.rfind(_JPEG_EOI, start) < 0:
                return f"truncated JPEG: the image data stops after {n} bytes without an end-of-image marker"
            return None
        pos += 2 + length
    return f"truncated or corrupt JPEG: its header runs past the end of the file ({n} bytes)"


def _png_problem(data: bytes) -> str | None:
    """Why a PNG byte string is truncated or corrupt, or None: the chunks must run from IHDR
    to IEND inside the file, and critical chunks (upper-case first letter) must match their CRC."""
    view = memoryview(data)
    n, pos, first = len(data), len(PNG_SIGNATURE), True
    while True:
        if pos + 8 > n:
            return f"truncated PNG: the file ends after {n} bytes, before its IEND chunk"
        length = int.from_bytes(data[pos : pos + 4], "big")
        kind = bytes(data[pos + 4 : pos + 8])
        name = kind.decode("ascii", "backslashreplace")
        if first and kind != b"IHDR":
            return f"corrupt PNG: the first chunk is {name!r}, expected 'IHDR'"
        end = pos + 12 + length
        if end > n:
            return f"truncated PNG: the {name!r} chunk at byte {pos} is cut short (the file ends after {n} bytes)"
        if kind[:1].isupper() and zlib.crc32(view[pos + 4 : end - 4]) != int.from_bytes(data[end - 4 : end], "big"):
            return f"corrupt PNG: the {name!r} chunk at byte {pos} fails its CRC check"
        if kind == b"IEND":
            return None
        pos, first = end, False


def check_image_bytes(data: bytes) -> str | None:
    """What is structurally wrong with an encoded JPEG or PNG (None: nothing found; other
    formats are left to the decoder)."""
    if not data:
        return "empty file (0 bytes), not an image"
    if data.startswith(JPEG_SOI):
        return _jpeg_problem(data)
    if data.startswith(PNG_SIGNATURE):
        return _png_problem(data)
    return None


def _read_bytes(path: Path, what: str) -> bytes:
    if not path.is_file():
        raise DatasetError(f"{path}: {what} file not found")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read {what} file ({exc.strerror or exc})") from None


def decode_image(data: bytes, path: str | Path = "<bytes>") -> np.ndarray:
    """HxWx3 uint8 BGR from encoded bytes (``cv2.imdecode``, the decoder of ``cv2.imread``).
    Raises ``DatasetError`` naming ``path`` for a truncated, corrupt or unknown file."""
    if not data:
        raise DatasetError(f"{path}: empty file (0 bytes), not an image")
    problem = check_image_bytes(data)
    if problem is not None:
        raise DatasetError(f"{path}: cannot decode image ({problem})")
    try:
        image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    except cv2.error as exc:  # e.g. a header that claims more than OpenCV's size limit
        reason = getattr(exc, "err", None) or str(exc).strip().splitlines()[0]
        raise DatasetError(f"{path}: cannot decode image (OpenCV refused it: {reason})") from None
    if image is None:
        raise DatasetError(f"{path}: cannot decode image (corrupt or not an image)")
    return image


def read_image(path: str | Path) -> np.ndarray:
    """HxWx3 uint8 BGR. Raises ``DatasetError`` for a missing, truncated or undecodable file."""
    path = Path(path)
    return decode_image(_read_bytes(path, "image"), path)


def read_label(path: str | Path) -> np.ndarray:
    """HxW uint8 raw label values. Raises ``DatasetError`` for a missing, truncated or
    undecodable file, a colour image, or values that do not fit in 8 bits."""
    import io

    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    data = _read_bytes(path, "label")
    problem = check_image_bytes(data)
    if problem is not None:
        raise DatasetError(f"{path}: cannot decode label image ({problem})")
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            mode = img.mode
            array = np.array(img)
    except (OSError, SyntaxError, ValueError, TypeError, UnidentifiedImageError, Image.DecompressionBombError) as exc:
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
