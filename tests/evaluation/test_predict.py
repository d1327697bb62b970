"""``predict`` on a folder: exact arithmetic, palettised outputs, a corrupt file skipped, and
where the settings come from (recipe, recipe stored in the checkpoint, --dataset)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from hrseg.data.image_io import read_image
from hrseg.data.transforms import EvalTransform
from hrseg.errors import HrsegError
from hrseg.evaluation.inference import finalize_prediction, multi_scale_predict
from hrseg.evaluation.predict import find_images, output_names, predict, recipe_for_checkpoint


@pytest.fixture()
def folder(synth_data, tmp_path):
    root, _ = synth_data["ade20k"]
    images = sorted((root / "val" / "image").glob("*.jpg"))
    inputs = tmp_path / "inputs"
    (inputs / "sub").mkdir(parents=True)
    shutil.copy(images[0], inputs / "a.jpg")
    Image.open(images[1]).save(inputs / "sub" / "b.png")
    (inputs / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a JPEG")
    (inputs / "notes.txt").write_text("not an image")
    return inputs


def test_folder_with_a_corrupt_image(folder, synth_data, tmp_path, make_recipe, make_checkpoint):
    root, lists = synth_data["ade20k"]
    recipe = make_recipe("ade20k", root, lists, 150, crop_size=[64, 64], base_size=60, scales=[0.75, 1.25], flip=True)
    model = make_checkpoint(tmp_path / "tiny.pth", 150)
    out = tmp_path / "out"
    report = predict(folder, tmp_path / "tiny.pth", out, recipe=recipe, path="eager", workers=0)

    assert [p.name for p, _ in report.failed] == ["broken.jpg"] and "decode" in report.failed[0][1]
    assert report.written == [out / "a.png", out / "sub" / "b.png"] and not report.ok
    for source, written in ((folder / "a.jpg", out / "a.png"), (folder / "sub" / "b.png", out / "sub" / "b.png")):
        img = Image.open(written)
        bgr = read_image(source)
        assert img.mode == "P" and img.size == (bgr.shape[1], bgr.shape[0])
        # the same arithmetic written out: testval sizing, TTA, crop the padding, resize, argmax
        sample = EvalTransform(crop_size=(64, 64), base_size=60, resize="short_side")(bgr, None)
        scores = multi_scale_predict(
            model, sample["image"], scales=(0.75, 1.25), flip=True, crop_size=(64, 64), base_size=60, num_classes=150
        )
        expected = finalize_prediction(scores, tuple(sample["orig_size"].tolist()), pad=tuple(sample["pad"].tolist()), align_corners=True)
        np.testing.assert_array_equal(np.asarray(img), expected.numpy())
        assert (out / "overlays" / written.relative_to(out)).is_file()


def test_settings_come_from_recipe_checkpoint_or_dataset(synth_data, tmp_path, make_recipe, make_checkpoint):
    root, lists = synth_data["ade20k"]
    recipe = make_recipe("ade20k", root, lists, 150, crop_size=[64, 64], base_size=60)
    make_checkpoint(tmp_path / "with_recipe.pth", 150, recipe=recipe.to_dict())
    make_checkpoint(tmp_path / "bare.pth", 150)

    stored = recipe_for_checkpoint(tmp_path / "with_recipe.pth")
    assert stored.eval.crop_size == (64, 64) and stored.data.dataset == "ade20k"
    by_name = recipe_for_checkpoint(tmp_path / "bare.pth", dataset="ade20k", align_corners=False)
    assert by_name.eval.crop_size == (520, 520) and by_name.eval.base_size == 520
    assert by_name.model.num_classes == 150 and by_name.model.align_corners is False
    with pytest.raises(HrsegError, match="--recipe NAME or --dataset NAME"):
        recipe_for_checkpoint(tmp_path / "bare.pth")
    with pytest.raises(HrsegError, match="has 150 classes but dataset 'cityscapes' has 19"):
        recipe_for_checkpoint(tmp_path / "bare.pth", dataset="cityscapes")
    with pytest.raises(HrsegError, match="trained on 'ade20k'"):
        recipe_for_checkpoint(tmp_path / "with_recipe.pth", dataset="lip")


def test_find_images(folder, tmp_path):
    base, files = find_images(folder)
    assert base == folder and [f.relative_to(folder).as_posix() for f in files] == ["a.jpg", "broken.jpg", "sub/b.png"]
    assert find_images(folder / "a.jpg") == (folder, [folder / "a.jpg"])
    with pytest.raises(HrsegError, match="no such image"):
        find_images(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(HrsegError, match="no images found"):
        find_images(tmp_path / "empty")


def test_output_names_are_distinct_and_predictable(tmp_path):
    base = tmp_path
    files = [base / n for n in ("x.png", "x.jpg", "y.jpg", "sub/x.png", "x.jpg.png", "z.JPG", "z.jpeg")]
    names = {f.relative_to(base).as_posix(): n.as_posix() for f, n in output_names(base, files).items()}
    assert names == {
        "x.jpg": "x.jpg.png",  # x.png and x.jpg share a stem: both keep their suffix
        "x.jpg.png": "x.jpg-2.png",  # sorted after x.jpg, whose name it would take
        "x.png": "x.png.png",
        "y.jpg": "y.png",
        "sub/x.png": "sub/x.png",  # another folder: no clash
        "z.JPG": "z.JPG.png",
        "z.jpeg": "z.jpeg.png",
    }
    assert len(set(names.values())) == len(files)
