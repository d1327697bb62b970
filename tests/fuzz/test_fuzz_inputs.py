"""Property-based tests (hypothesis) of what reads user files: list files, checkpoint headers,
image bytes and the PASCAL-Context Detail JSON. Every input either works or raises an
``HrsegError`` with a message; never another exception type, a hang (pytest-timeout) or a
partial output file.

Recipe/params YAML and ``--set`` values: tests/fuzz/test_fuzz_config.py."""

from __future__ import annotations

import io
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hrseg.data import pascal_ctx
from hrseg.data.image_io import decode_image, read_label
from hrseg.data.lists import read_list
from hrseg.data.prepare import prepare_dataset
from hrseg.errors import HrsegError
from hrseg.models.checkpoint import model_config_from_file, read_checkpoint
from hrseg.models.config import ModelConfig

FUZZ = settings(max_examples=int(os.environ.get("HRSEG_FUZZ_EXAMPLES", "60")), deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


@contextmanager
def folder():
    with tempfile.TemporaryDirectory(prefix="hrseg-fuzz-") as tmp:
        yield Path(tmp)


def works_or_our_error(call, *args, **kwargs):
    """``call(...)``'s result, or None when it raised an HrsegError with a message."""
    try:
        return call(*args, **kwargs)
    except HrsegError as exc:
        assert str(exc).strip(), f"{type(exc).__name__} without a message"
        return None


# --- list files -------------------------------------------------------------------------------

list_lines = st.lists(
    st.one_of(
        st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=40),
        st.lists(st.from_regex(r"[A-Za-z0-9_./-]{1,12}", fullmatch=True), min_size=0, max_size=6).map(" ".join),
    ),
    max_size=8,
)


@FUZZ
@given(lines=list_lines, raw=st.binary(max_size=64), relative=st.sampled_from(["root", "list"]))
def test_list_files(lines, raw, relative):
    with folder() as tmp:
        path = tmp / "x.lst"
        path.write_bytes("\n".join(lines).encode("utf-8", "surrogatepass") + raw)
        entries = works_or_our_error(read_list, path, tmp / "root", labels_relative_to=relative)
        if entries is not None:
            assert entries and all(1 <= e.line for e in entries)
            assert all(isinstance(e.image, Path) and (e.label is None or isinstance(e.label, Path)) for e in entries)


def test_list_file_not_utf8_names_the_line(tmp_path):
    path = tmp_path / "x.lst"
    path.write_bytes(b"a.jpg a.png\nb\xff.jpg b.png\n")
    with pytest.raises(HrsegError, match=r"x\.lst:2: not UTF-8 text"):
        read_list(path, tmp_path)


# --- checkpoint headers ------------------------------------------------------------------------

config_values = st.one_of(st.none(), st.booleans(), st.integers(-5, 10**6), st.floats(allow_nan=True), st.text(max_size=12), st.lists(st.integers(), max_size=3))
tensors = st.builds(
    lambda shape: torch.zeros(shape),
    st.lists(st.integers(0, 4), max_size=4).map(tuple),
)
state_keys = st.sampled_from(
    [
        "cls_head.weight",
        "last_layer.3.weight",
        "ocr_distri_head.object_context_block.f_pixel.0.weight",
        "model.cls_head.weight",
        "conv1.weight",
        "incre_modules.0.weight",
        "x",
    ]
)


@st.composite
def checkpoints(draw):
    kind = draw(st.sampled_from(["hrseg", "official", "state_dict", "other"]))
    if kind == "hrseg":
        fields = list(ModelConfig.__dataclass_fields__) + ["unknown"]
        config = draw(st.dictionaries(st.sampled_from(fields), config_values, max_size=6))
        return {
            "format": draw(st.sampled_from(["hrseg", "other", 1])),
            "version": draw(config_values),
            "model_config": draw(st.one_of(st.just(config), config_values)),
            "model": draw(st.one_of(st.dictionaries(state_keys, tensors, max_size=3), config_values)),
        }
    state = draw(st.dictionaries(state_keys, st.one_of(tensors, config_values), max_size=4))
    if kind == "official":
        return {f"model.{k}": v for k, v in state.items()}
    if kind == "state_dict":
        return state
    return draw(st.one_of(config_values, st.dictionaries(st.text(max_size=5), config_values, max_size=3), st.just({"state_dict": state})))


@FUZZ
@given(data=checkpoints())
def test_checkpoint_headers(data):
    with folder() as tmp:
        path = tmp / "c.pth"
        torch.save(data, path)
        config = works_or_our_error(model_config_from_file, path)
        if config is not None:
            cfg, kind = config
            assert isinstance(cfg, ModelConfig) and kind in ("hrseg", "segmentation", "state_dict")


@pytest.fixture(scope="module")
def checkpoint_bytes() -> bytes:
    buffer = io.BytesIO()
    torch.save({"format": "hrseg", "version": 1, "model_config": {"num_classes": 3}, "model": {"w": torch.arange(6.0)}}, buffer)
    return buffer.getvalue()


@FUZZ
@given(cut=st.integers(0, 10**4), flips=st.lists(st.tuples(st.integers(0, 10**4), st.integers(1, 255)), max_size=4))
def test_damaged_checkpoint_files(checkpoint_bytes, cut, flips):
    data = bytearray(checkpoint_bytes[: max(cut, 1)] if cut < len(checkpoint_bytes) else checkpoint_bytes)
    for at, value in flips:
        data[at % len(data)] ^= value
    with folder() as tmp:
        path = tmp / "c.pth"
        path.write_bytes(bytes(data))
        result = works_or_our_error(read_checkpoint, path)
        assert result is None or isinstance(result, dict)


# --- image decoding ----------------------------------------------------------------------------


def _encode(ext: str, progressive: bool = False) -> bytes:
    rng = np.random.default_rng(1)
    image = cv2.resize((rng.random((4, 5, 3)) * 255).astype(np.uint8), (40, 32), interpolation=cv2.INTER_LINEAR)
    ok, buf = cv2.imencode(ext, image, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1] if progressive else [])
    assert ok
    return buf.tobytes()


ENCODED = {"jpg": _encode(".jpg"), "progressive": _encode(".jpg", True), "png": _encode(".png"), "bmp": _encode(".bmp")}


@st.composite
def damaged_images(draw):
    data = bytearray(ENCODED[draw(st.sampled_from(sorted(ENCODED)))])
    action = draw(st.sampled_from(["cut", "flip", "insert", "random"]))
    if action == "cut":
        return bytes(data[: draw(st.integers(0, len(data)))])
    if action == "flip":
        for at, value in draw(st.lists(st.tuples(st.integers(0, len(data) - 1), st.integers(1, 255)), min_size=1, max_size=5)):
            data[at] ^= value
        return bytes(data)
    if action == "insert":
        at = draw(st.integers(0, len(data)))
        return bytes(data[:at]) + draw(st.binary(min_size=1, max_size=40)) + bytes(data[at:])
    return draw(st.binary(max_size=200))


@FUZZ
@given(data=damaged_images())
def test_image_bytes(data):
    image = works_or_our_error(decode_image, data, "fuzz.img")
    if image is not None:
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3


@FUZZ
@given(data=damaged_images())
def test_label_bytes(data):
    with folder() as tmp:
        path = tmp / "label.png"
        path.write_bytes(data)
        label = works_or_our_error(read_label, path)
        if label is not None:
            assert label.dtype == np.uint8 and label.ndim == 2


# --- the Detail JSON (PASCAL-Context) -----------------------------------------------------------

json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-3, 10**12), st.floats(allow_nan=False), st.text(max_size=10)),
    lambda children: st.one_of(st.lists(children, max_size=3), st.dictionaries(st.text(max_size=6), children, max_size=3)),
    max_leaves=10,
)


@st.composite
def detail_images(draw):
    record = {
        "image_id": draw(st.one_of(st.integers(0, 3), json_values)),
        "file_name": draw(st.one_of(st.sampled_from(["a.jpg", "b.jpg", "../a.jpg", "", "sub/a.jpg"]), json_values)),
        "height": draw(st.one_of(st.sampled_from([20, 0, -1, 10**9]), json_values)),
        "width": draw(st.one_of(st.sampled_from([30, 0, 10**9]), json_values)),
        "phase": draw(st.one_of(st.sampled_from(["train", "val", "test"]), json_values)),
    }
    for key in draw(st.lists(st.sampled_from(sorted(record)), max_size=2)):
        record.pop(key, None)
    return draw(st.one_of(st.just(record), json_values))


@st.composite
def detail_annotations(draw):
    counts = draw(st.one_of(st.just([600]), st.lists(st.integers(-5, 700), max_size=4), st.text(max_size=8), json_values))
    record = {
        "image_id": draw(st.one_of(st.integers(0, 3), json_values)),
        "category_id": draw(st.one_of(st.sampled_from([2, 0, 9999, -1]), json_values)),
        "segmentation": draw(st.one_of(st.just({"size": [20, 30], "counts": counts}), json_values)),
    }
    return draw(st.one_of(st.just(record), json_values))


@st.composite
def detail_files(draw):
    if draw(st.integers(0, 9)) == 0:
        return draw(st.one_of(st.binary(max_size=40), json_values.map(lambda v: json.dumps(v).encode())))
    doc = {"images": draw(st.lists(detail_images(), max_size=4)), "annos_segmentation": draw(st.lists(detail_annotations(), max_size=4))}
    for key in draw(st.lists(st.sampled_from(sorted(doc)), max_size=1)):
        doc[key] = draw(json_values)
    return json.dumps(doc).encode()


@FUZZ
@given(content=detail_files())
def test_detail_json(content):
    with folder() as tmp:
        voc = tmp / "VOCdevkit" / "VOC2010"
        (voc / "JPEGImages").mkdir(parents=True)
        for name in ("a.jpg", "b.jpg"):
            cv2.imwrite(str(voc / "JPEGImages" / name), np.full((20, 30, 3), 90, np.uint8))
        (voc / pascal_ctx.JSON_NAME).write_bytes(content)
        out = tmp / "lists"
        summary = works_or_our_error(prepare_dataset, "pascal_ctx", tmp, out, workers=1)
        written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) if out.exists() else []
        if summary is None:
            assert written == [], f"a failed prepare wrote {written}"
        else:
            assert "summary.json" in written and "train.lst" in written and "val.lst" in written
