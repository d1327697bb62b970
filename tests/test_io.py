"""Atomic writes: complete-or-nothing, and the usual file permissions; the one file hash."""

import hashlib
import os
import stat

import pytest

from hrseg import io


def test_atomic_write_replaces_completely_or_not_at_all(tmp_path):
    target = tmp_path / "sub" / "metrics.json"
    io.write_json(target, {"b": 1, "a": [1, 2]})
    assert target.read_text() == '{\n  "a": [\n    1,\n    2\n  ],\n  "b": 1\n}\n'
    with pytest.raises(RuntimeError):
        with io.atomic_open(target) as handle:
            handle.write("partial")
            raise RuntimeError("killed halfway")
    assert target.read_text().startswith('{\n  "a"')  # the old content survives
    assert [p.name for p in target.parent.iterdir()] == ["metrics.json"]  # no temp file left


def test_atomic_write_uses_the_umask_mode(tmp_path):
    old = os.umask(0o022)
    try:
        io.write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o644


def test_sha256_file_streams_in_chunks(tmp_path):
    data = os.urandom(io.CHUNK_BYTES + 123)  # more than one chunk
    (tmp_path / "w.pth").write_bytes(data)
    assert io.sha256_file(tmp_path / "w.pth") == hashlib.sha256(data).hexdigest()
