"""Truncated and corrupt image files: named errors in ``read_image`` / ``read_label``, in
``hrseg prepare`` (every problem in one run, earlier lists untouched) and in data loading
(also from DataLoader workers: one message, not a traceback)."""

from __future__ import annotations

import shutil
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from torch.utils.data import DataLoader

from hrseg.data import DatasetCheckError, DatasetError, SegmentationDataset, TrainTransform, get_spec, prepare_dataset, read_image, read_label
from hrseg.data.dataset import SampleError
from hrseg.data.image_io import check_image_bytes, decode_image

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def _image(seed: int = 0, shape=(48, 64, 3)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # smooth content, so that a JPEG has a realistic size and truncation drops real rows
    base = cv2.resize((rng.random((6, 8, 3)) * 255).astype(np.uint8), shape[1::-1], interpolation=cv2.INTER_CUBIC)
    return base


def _encoded(ext: str, **flags) -> bytes:
    params = [cv2.IMWRITE_JPEG_PROGRESSIVE, 1] if flags.get("progressive") else []
    ok, buf = cv2.imencode(ext, _image(), params)
    assert ok
    return buf.tobytes()


@pytest.mark.parametrize("ext,progressive", [(".jpg", False), (".jpg", True), (".png", False)])
@pytest.mark.parametrize("keep", [0.3, 0.7, 0.95, -2])
def test_truncated_files_are_errors_that_name_the_file(tmp_path, ext, progressive, keep):
    data = _encoded(ext, progressive=progressive)
    cut = data[:keep] if keep < 0 else data[: int(len(data) * keep)]
    path = tmp_path / f"cut{ext}"
    path.write_bytes(cut)
    kind = "JPEG" if ext == ".jpg" else "PNG"
    with pytest.raises(DatasetError, match=rf"^{path}: cannot decode image \(truncated (or corrupt )?{kind}"):
        read_image(path)
    # the whole file still decodes, to exactly what cv2.imread gives
    path.write_bytes(data)
    assert np.array_equal(read_image(path), cv2.imread(str(path), cv2.IMREAD_COLOR))


def test_truncated_jpeg_used_to_decode_to_grey(tmp_path):
    """What the check protects against: OpenCV returns a full-size image for a cut JPEG."""
    data = _encoded(".jpg")
    path = tmp_path / "half.jpg"
    path.write_bytes(data[: len(data) // 2])
    assert cv2.imread(str(path)) is not None  # OpenCV alone accepts it (rows filled with grey)
    with pytest.raises(DatasetError, match="the image data stops after"):
        read_image(path)


def test_corrupt_png_chunks(tmp_path):
    data = bytearray(_encoded(".png"))
    idat = data.index(b"IDAT")
    flipped = bytearray(data)
    flipped[idat + 10] ^= 0xFF
    path = tmp_path / "crc.png"
    path.write_bytes(bytes(flipped))
    with pytest.raises(DatasetError, match=r"crc\.png: cannot decode image \(corrupt PNG: the 'IDAT' chunk at byte \d+ fails its CRC check"):
        read_image(path)
    with pytest.raises(DatasetError, match=r"crc\.png: cannot decode label image \(corrupt PNG"):
        read_label(path)
    no_header = bytes(data[:8]) + bytes(data[33:])  # IHDR removed
    assert "corrupt PNG: the first chunk is" in check_image_bytes(no_header) and "expected 'IHDR'" in check_image_bytes(no_header)
    # an ancillary chunk with a bad CRC is what libpng tolerates too: accepted
    text = b"tEXt" + b"Comment\x00hello"
    chunk = len(text[4:]).to_bytes(4, "big") + text + (zlib.crc32(text) ^ 1).to_bytes(4, "big")
    with_text = bytes(data[:33]) + chunk + bytes(data[33:])
    assert check_image_bytes(with_text) is None
    assert decode_image(with_text).shape == (48, 64, 3)


def test_other_unreadable_files(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(DatasetError, match=r"empty\.jpg: empty file \(0 bytes\), not an image"):
        read_image(tmp_path / "empty.jpg")
    (tmp_path / "text.jpg").write_text("hello")
    with pytest.raises(DatasetError, match=r"text\.jpg: cannot decode image \(corrupt or not an image\)"):
        read_image(tmp_path / "text.jpg")
    with pytest.raises(DatasetError, match=r"nothing\.png: label file not found"):
        read_label(tmp_path / "nothing.png")
    (tmp_path / "folder.png").mkdir()
    with pytest.raises(DatasetError, match=r"folder\.png: image file not found"):
        read_image(tmp_path / "folder.png")


def test_truncated_label_png(tmp_path):
    path = tmp_path / "label.png"
    Image.fromarray(np.arange(48 * 64, dtype=np.uint8).reshape(48, 64) % 20).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 20])
    with pytest.raises(DatasetError, match=r"label\.png: cannot decode label image \(truncated PNG"):
        read_label(path)


def test_no_opencv_lines_on_stderr(tmp_path, capfd):
    """OpenCV/libpng print their own lines for broken PNGs ("IHDR chunk shall be first"); the
    structure check stops such files before they reach the decoder."""
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
    data = _encoded(".jpg")
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    (tmp_path / "cut.png").write_bytes(_encoded(".png")[:300])
    for name in ("bad.png", "cut.jpg", "cut.png"):
        with pytest.raises(DatasetError, match=name):
            read_image(tmp_path / name)
    captured = capfd.readouterr()
    assert captured.err == "" and captured.out == ""


# --- prepare: one of each corrupt kind --------------------------------------------------------


def _pairs(root: Path, split: str) -> list[tuple[Path, Path]]:
    images = sorted((root / "TrainVal_images" / f"{split}_images").glob("*.jpg"))
    return [(i, root / "TrainVal_parsing_annotations" / f"{split}_segmentations" / f"{i.stem}.png") for i in images]


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_prepare_reports_every_corrupt_kind_in_one_run_and_keeps_the_old_lists(synth_root, tmp_path):
    root = Path(shutil.copytree(synth_root / "lip", tmp_path / "lip"))
    out = tmp_path / "lists"
    prepare_dataset("lip", root, out)
    before = _snapshot(out)
    assert {"train.lst", "val.lst", "summary.json"} <= set(before)

    pairs = _pairs(root, "train") + _pairs(root, "val")
    jpeg = pairs[0][0].read_bytes()
    label_png = pairs[0][1].read_bytes()
    expected: dict[str, str] = {}

    def corrupt(index: int, which: int, data: bytes | None, problem: str) -> None:
        path = pairs[index][which]
        if data is None:
            path.unlink()
        else:
            path.write_bytes(data)
        # a missing label is reported on its image
        expected[pairs[index][0].name if data is None else path.name] = problem

    corrupt(0, 0, jpeg[: len(jpeg) // 2], "truncated JPEG")
    corrupt(1, 0, b"", "empty file (0 bytes)")
    corrupt(2, 0, b"this is not a jpeg", "cannot decode image")
    corrupt(3, 1, label_png[: len(label_png) // 2], "cannot decode label image (truncated PNG")
    flipped = bytearray(pairs[4][1].read_bytes())
    flipped[flipped.index(b"IDAT") + 8] ^= 0xFF
    corrupt(4, 1, bytes(flipped), "fails its CRC check")
    corrupt(5, 1, None, "missing label file")
    label = read_label(pairs[6][1])
    Image.fromarray(label[:-2]).save(pairs[6][1])
    expected[pairs[6][1].name] = "but image"
    label = read_label(pairs[7][1])
    label[0, 0] = 77
    Image.fromarray(label).save(pairs[7][1])
    expected[pairs[7][1].name] = "label values [77] are outside the lip domain"
    Image.fromarray(np.stack([read_label(pairs[8][1])] * 3, axis=-1)).save(pairs[8][1])
    expected[pairs[8][1].name] = "got mode 'RGB'"
    val = _pairs(root, "val")
    val[-1][0].write_bytes(_encoded(".png"))  # a PNG named .jpg decodes fine: not a problem
    Image.fromarray(np.zeros((48, 64), np.uint8)).save(val[-1][1])

    with pytest.raises(DatasetCheckError) as info:
        prepare_dataset("lip", root, out)
    problems = info.value.problems
    assert len(problems) == len(expected), problems
    for name, problem in expected.items():
        assert any(name in p and problem in p for p in problems), (name, problem, problems)
    assert _snapshot(out) == before, "a failed run must leave the earlier lists untouched"


# --- data loading ------------------------------------------------------------------------------


def test_loading_a_truncated_image_names_the_list_line_also_in_a_worker(synth_root, lists_root, tmp_path):
    root = Path(shutil.copytree(synth_root / "lip", tmp_path / "lip"))
    lines = (lists_root / "lip" / "train.lst").read_text().splitlines()
    list_file = tmp_path / "train.lst"
    list_file.write_text("\n".join(lines[:3]) + "\n")
    image = root / lines[1].split()[0]
    data = image.read_bytes()
    image.write_bytes(data[: len(data) // 2])
    spec = get_spec("lip")
    transform = TrainTransform.from_spec(spec, crop_size=(32, 32), base_size=32, scale_factor=11, flip=True)
    dataset = SegmentationDataset(spec, root, list_file, transform)
    pattern = rf"^{list_file}:2: {image}: cannot decode image \(truncated JPEG"
    with pytest.raises(SampleError, match=pattern):
        dataset[1]
    loader = DataLoader(dataset, batch_size=1, num_workers=1)
    with pytest.raises(SampleError, match=pattern) as info:
        list(loader)
    message = str(info.value)
    assert "Traceback" not in message and message.endswith("(in DataLoader worker process 0)"), message
