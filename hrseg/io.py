"""Atomic file output: write to a temporary file in the target directory, fsync, rename.

A reader (or a resumed run) therefore sees either the old file or the complete new one, never
a truncated one. Used for list files, checkpoints, metrics and every other result we write.

Also the one file hash (``sha256_file``) that the weights ledger, the fetch manifest and the
run tags record.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Iterator

#: bytes read or copied at a time when streaming a file
CHUNK_BYTES = 1 << 20


def _default_mode() -> int:
    """0666 minus the process umask: what ``open(path, "w")`` would have created."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Open a temporary sibling of ``path`` for writing; rename it over ``path`` on success,
    delete it on error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.fchmod(fd, _default_mode())  # mkstemp creates 0600; give the file the usual umask mode
    binary = "b" in mode
    try:
        with os.fdopen(fd, mode, encoding=None if binary else encoding) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path, "w") as handle:
        handle.write(text)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_open(path, "wb") as handle:
        handle.write(data)


def copy_file(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Copy ``src`` to ``dst`` atomically (streamed, so large checkpoints are fine)."""
    import shutil

    with open(src, "rb") as source, atomic_open(dst, "wb") as target:
        shutil.copyfileobj(source, target, CHUNK_BYTES)


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Pretty, key-sorted JSON with a trailing newline (stable bytes for DVC and git)."""
    write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def torch_save(obj: Any, path: str | os.PathLike) -> None:
    import torch  # here, not at the top: commands that only write text must not pay torch's ~2 s import

    with atomic_open(path, "wb") as handle:
        torch.save(obj, handle)


def write_image(path: str | os.PathLike, image: Any) -> None:
    """Write an image (numpy array or PIL image) atomically; the format follows the suffix."""
    import io as _io

    from PIL import Image

    path = Path(path)
    pil = image if isinstance(image, Image.Image) else Image.fromarray(image)
    buffer = _io.BytesIO()
    pil.save(buffer, format=Image.registered_extensions()[path.suffix.lower()])
    write_bytes(path, buffer.getvalue())


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in ``CHUNK_BYTES`` chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()
