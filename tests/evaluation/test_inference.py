"""Test-time inference: window geometry, flip symmetry and exactness against the literal
re-statement of the official loop (hrseg.evaluation.reference)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from hrseg.errors import HrsegError
from hrseg.evaluation.inference import (
    Window,
    finalize_prediction,
    flip_permutation,
    generic_stride,
    multi_scale_predict,
    pad_value,
    scaled_size,
    sliding_windows,
    window_counts,
)
from hrseg.evaluation.reference import reference_predict

# ----------------------------------------------------------------------------- geometry


def test_scaled_size_rounds_like_the_official_code():
    assert scaled_size(1024, 2048, 2048, 0.75) == (768, 1536)
    assert scaled_size(1024, 2048, 2048, 1.75) == (1792, 3584)
    assert scaled_size(375, 500, 520, 1.0) == (390, 520)  # 375 * 520 / 500 = 390
    assert scaled_size(500, 333, 520, 0.5) == (260, 173)  # portrait: 333 * 260 / 500 = 173.16
    assert scaled_size(333, 333, 473, 1.25) == (591, 591)  # int(591.25 + 0.5)
    assert generic_stride((520, 520)) == (346, 346)
    assert generic_stride((473, 473)) == (315, 315)


def test_generic_windows_on_odd_size():
    windows = sliding_windows(347, 521, (100, 150), generic_stride((100, 150)), shift_inside=False)
    # stride (66, 100): rows = ceil(247 / 66) + 1 = 5, cols = ceil(371 / 100) + 1 = 5
    assert len(windows) == 25
    assert windows[0] == Window(0, 100, 0, 150)
    assert windows[1] == Window(0, 100, 100, 250)
    assert windows[4] == Window(0, 100, 400, 521)  # clipped, padded when run
    assert windows[-1] == Window(264, 347, 400, 521)
    assert all(0 <= w.y0 < w.y1 <= 347 and 0 <= w.x0 < w.x1 <= 521 for w in windows)
    counts = window_counts(windows, 347, 521)
    assert counts.min() >= 1
    # overlaps: rows 66..99 are in windows 0 and 1, columns 100..149 in columns 0 and 1
    assert counts[0, 0] == 1 and counts[70, 0] == 2 and counts[70, 120] == 4
    brute = np.zeros((347, 521), np.int64)
    for y in range(0, 347, 7):
        for x in range(0, 521, 11):
            brute[y, x] = sum(w.y0 <= y < w.y1 and w.x0 <= x < w.x1 for w in windows)
    np.testing.assert_array_equal(counts[::7, ::11], brute[::7, ::11])


def test_cityscapes_windows_are_shifted_inside():
    windows = sliding_windows(1792, 3584, (1024, 2048), (1024, 2048), shift_inside=True)
    assert windows == [
        Window(0, 1024, 0, 2048),
        Window(0, 1024, 1536, 3584),
        Window(768, 1792, 0, 2048),
        Window(768, 1792, 1536, 3584),
    ]
    counts = window_counts(windows, 1792, 3584)
    assert counts[0, 0] == 1 and counts[800, 0] == 2 and counts[800, 1600] == 4 and counts[1791, 3583] == 1
    odd = sliding_windows(101, 203, (40, 64), (40, 64), shift_inside=True)
    assert all(w.height == 40 and w.width == 64 for w in odd)  # always full crops
    assert window_counts(odd, 101, 203).min() >= 1
    assert odd[-1] == Window(61, 101, 139, 203)


def test_windows_of_an_image_smaller_than_the_crop():
    assert sliding_windows(30, 50, (40, 64), (40, 64), shift_inside=True) == [Window(0, 30, 0, 50)]
    with pytest.raises(HrsegError):
        sliding_windows(30, 50, (40, 64), (0, 64), shift_inside=False)


def test_pad_value_and_flip_permutation():
    np.testing.assert_allclose(pad_value(), [-0.485 / 0.229, -0.456 / 0.224, -0.406 / 0.225], rtol=1e-6)
    assert flip_permutation(20, ((14, 15), (16, 17), (18, 19)))[13:] == [13, 15, 14, 17, 16, 19, 18]
    with pytest.raises(HrsegError, match="outside"):
        flip_permutation(5, ((3, 7),))


# ----------------------------------------------------------------------------- exactness


CASES = {
    # generic: whole (padded) at 0.5, windows + padding at 1.0 and 1.5; odd sizes everywhere
    "generic": dict(mode="generic", crop_size=(32, 48), base_size=60, scales=(0.5, 1.0, 1.25)),
    # cityscapes: whole image at <= 1 (no padding), shifted windows above 1
    "cityscapes": dict(mode="cityscapes", crop_size=(40, 64), base_size=71, scales=(0.75, 1.0, 1.5)),
}


class _Recorder:
    """Wraps a model, keeping every batch it is given and the logits it returned."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        self.align_corners = model.align_corners
        self.num_classes = model.num_classes
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def __call__(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.model(x)["out"]
        self.calls.append((x.clone(), out.clone()))
        return {"out": out}


def _batch_rounding(recorder: _Recorder) -> tuple[float, float]:
    """(largest |logit| seen, largest |batched - one-by-one| logit difference) over the
    recorded forward passes: the second is all that batching changes inside the network."""
    biggest, delta = 0.0, 0.0
    with torch.inference_mode():
        for x, out in recorder.calls:
            single = torch.cat([recorder.model(x[i : i + 1])["out"] for i in range(x.shape[0])])
            biggest = max(biggest, single.abs().max().item())
            delta = max(delta, (out - single).abs().max().item())
    return biggest, delta


@pytest.mark.parametrize("case", sorted(CASES))
def test_tta_matches_the_literal_official_loop_exactly(case, tiny_hrnet):
    kw = CASES[case]
    image = torch.randn(1, 3, 45, 71, generator=torch.Generator().manual_seed(3))
    ref = reference_predict(tiny_hrnet, image, num_classes=5, flip=True, align_corners=True, **kw)
    one_by_one = multi_scale_predict(tiny_hrnet, image[0], flip=True, max_batch=1, **kw)
    assert torch.equal(one_by_one, ref)  # same inputs, same order: bit-identical

    # Batched: several windows and their mirrors share a forward pass. The network computes
    # each sample on its own (exact in float64, see the next test), but float32 convolution
    # kernels round differently for another batch size, by delta in the logits. Everything
    # after the network is exp of a convex combination of logits (bilinear weights, the flip
    # mean) followed by sums and means of positive numbers, so log(scores) can move by at
    # most delta plus a few float32 ulps of the logits' size. The tiny random network gives
    # logits up to ~45 on the padded windows (constant -mean/std, far from its BN
    # statistics), so delta is ~1e-3 here; exp turns it into a relative score difference of
    # the same size.
    recorder = _Recorder(tiny_hrnet)
    batched = multi_scale_predict(recorder, image, flip=True, max_batch=8, **kw)
    assert max(x.shape[0] for x, _ in recorder.calls) > 2  # windows really were batched
    biggest, delta = _batch_rounding(recorder)
    bound = delta + 8 * torch.finfo(torch.float32).eps * (biggest + 1.0)
    log_gap = (batched.log() - ref.log()).abs().max().item()
    assert log_gap <= bound, f"log-score gap {log_gap:.3g} exceeds batch rounding {delta:.3g} (+ulps)"
    # the argmax may differ only where the reference's two best classes are within 2 * bound
    top2 = ref.log().topk(2, dim=1).values
    near_tie = (top2[:, 0] - top2[:, 1]) <= 2 * bound
    assert bool(((batched.argmax(1) == ref.argmax(1)) | near_tie).all())


def test_the_network_computes_every_sample_of_a_batch_on_its_own(tiny_hrnet):
    """In float64 a batch of 8 gives each sample's one-by-one logits to 1e-12: no path of the
    (eval-mode) network mixes samples, so batched inference differs only by float rounding."""
    model = copy.deepcopy(tiny_hrnet).double()
    x = torch.randn(8, 3, 32, 48, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    x[4:, :, 20:] = torch.as_tensor(pad_value(), dtype=torch.float64)[:, None, None]  # padded windows too
    with torch.inference_mode():
        batched = model(x)["out"]
        single = torch.cat([model(x[i : i + 1])["out"] for i in range(8)])
    torch.testing.assert_close(batched, single, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("align_corners", [False, True])
def test_lip_swap_and_align_corners_match_reference(align_corners, quarter_net):
    quarter_net.align_corners = align_corners
    pairs = ((1, 2), (3, 5))
    image = torch.randn(1, 3, 37, 30)  # portrait, odd
    kw = dict(mode="generic", crop_size=(24, 24), base_size=37, scales=(0.75, 1.25), flip=True, flip_pairs=pairs)
    ref = reference_predict(quarter_net, image, num_classes=6, align_corners=align_corners, **kw)
    ours = multi_scale_predict(quarter_net, image, max_batch=1, **kw)
    assert torch.equal(ours, ref)


def test_scale_sum_equals_sum_of_single_scales(quarter_net):
    image = torch.randn(3, 40, 52)
    kw = dict(mode="generic", crop_size=(32, 32), base_size=52, flip=True)
    total = multi_scale_predict(quarter_net, image, scales=(0.5, 1.0, 1.5), **kw)
    parts = sum(multi_scale_predict(quarter_net, image, scales=(s,), **kw) for s in (0.5, 1.0, 1.5))
    torch.testing.assert_close(total, parts, rtol=1e-6, atol=0)
    assert total.shape == (1, 6, 40, 52) and total.dtype == torch.float32 and bool((total > 0).all())


def test_single_scale_no_flip_is_exp_of_upsampled_logits(quarter_net):
    image = torch.randn(1, 3, 32, 48)
    scores = multi_scale_predict(quarter_net, image, mode="cityscapes", crop_size=(32, 48), base_size=48)
    logits = torch.nn.functional.interpolate(quarter_net(image)["out"], size=(32, 48), mode="bilinear", align_corners=True)
    torch.testing.assert_close(scores, logits.exp())


# ----------------------------------------------------------------------------- flip symmetry


def _mirror_symmetric(h: int, w: int) -> torch.Tensor:
    half = torch.randn(3, h, (w + 1) // 2)
    return torch.cat([half, half.flip(-1)[..., w % 2 :]], dim=-1)


def test_mirror_symmetric_input_gives_mirror_symmetric_prediction(quarter_net):
    image = _mirror_symmetric(36, 57)
    assert torch.equal(image, image.flip(-1))
    kw = dict(mode="cityscapes", crop_size=(36, 57), base_size=57, scales=(0.5, 0.75, 1.0), flip=True)
    scores = multi_scale_predict(quarter_net, image, **kw)
    torch.testing.assert_close(scores, scores.flip(-1), rtol=1e-5, atol=0)
    # without flip the (asymmetric) network does not give a symmetric answer
    plain = multi_scale_predict(quarter_net, image, **{**kw, "flip": False})
    assert not torch.allclose(plain, plain.flip(-1), rtol=1e-3)


def test_lip_flip_swaps_left_and_right_classes(quarter_net):
    pairs = ((1, 2), (4, 5))
    perm = flip_permutation(6, pairs)
    image = _mirror_symmetric(32, 45)
    kw = dict(mode="cityscapes", crop_size=(32, 45), base_size=45, scales=(1.0,), flip=True, flip_pairs=pairs)
    scores = multi_scale_predict(quarter_net, image, **kw)
    # a left arm on the left is a right arm in the mirror image
    torch.testing.assert_close(scores[:, perm].flip(-1), scores, rtol=1e-5, atol=0)
    pred = scores.argmax(1)[0]
    mirrored = torch.tensor(perm)[pred.flip(-1)]
    assert (mirrored == pred).float().mean() > 0.99


# ----------------------------------------------------------------------------- finalize, inputs


def test_finalize_crops_padding_then_resizes_to_label():
    scores = torch.zeros(1, 3, 12, 16)
    scores[:, 1, :10, :14] = 1.0  # class 1 inside, class 0 in the 2x2 padding
    scores[:, 2, :, 14:] = 2.0
    cropped = finalize_prediction(scores, (10, 12), pad=(2, 2), align_corners=False)
    assert cropped.shape == (10, 12) and cropped.dtype == torch.int64
    assert bool((cropped == 1).all())
    kept = finalize_prediction(scores, (10, 14), align_corners=False)  # ADE20K quirk: no crop
    assert bool((kept[:, -1] == 2).all())


def test_bad_inputs(quarter_net):
    with pytest.raises(HrsegError, match="scale"):
        multi_scale_predict(quarter_net, torch.zeros(3, 8, 8), scales=(), crop_size=(8, 8), base_size=8)
    with pytest.raises(HrsegError, match="one image"):
        multi_scale_predict(quarter_net, torch.zeros(2, 3, 8, 8), crop_size=(8, 8), base_size=8)
    with pytest.raises(HrsegError, match="mode"):
        multi_scale_predict(quarter_net, torch.zeros(3, 8, 8), crop_size=(8, 8), base_size=8, mode="slide")
    with pytest.raises(HrsegError, match="align_corners"):
        multi_scale_predict(lambda x: {"out": x}, torch.zeros(3, 8, 8), crop_size=(8, 8), base_size=8)


# ----------------------------------------------------------------------------- memory


def _cpu_storages() -> dict[int, int]:
    """data pointer -> bytes of every CPU tensor storage the garbage collector can see."""
    import gc

    found = {}
    for obj in gc.get_objects():
        if issubclass(type(obj), torch.Tensor) and obj.device.type == "cpu":  # type(): no lazy-module warnings
            storage = obj.untyped_storage()
            found[storage.data_ptr()] = storage.nbytes()
    return found


class _LiveTensorProbe:
    """Wraps a model; at every forward pass records the bytes of the tensors alive that were
    not alive when the probe was made (the model's weights, the caller's image, fixtures)."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        self.align_corners = model.align_corners
        self.num_classes = model.num_classes
        self.before = set(_cpu_storages())
        self.live: list[int] = []

    def __call__(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        self.live.append(sum(n for ptr, n in _cpu_storages().items() if ptr not in self.before))
        return self.model(x)


def test_during_a_forward_pass_only_the_sums_and_the_input_are_alive(quarter_net):
    """Bounded memory: while the network runs on a window of the largest scale, the loop
    keeps only that scale's window sum and count, the scale sum and the network input (the
    previous window's output is gone, nothing is kept per scale). Measured with the code
    before this bound was introduced: one crop-sized map more."""
    k, (h, w) = 6, (40, 64)
    image = torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(5))
    probe = _LiveTensorProbe(quarter_net)
    kw = dict(mode="cityscapes", crop_size=(h, w), base_size=w, scales=(1.0, 1.75), flip=True)
    scores = multi_scale_predict(probe, image, **kw)
    sh, sw = scaled_size(h, w, w, 1.75)  # 70 x 112: four shifted windows
    assert len(probe.live) == 2 + 4 * 2
    window_sum, count, scale_sum = 4 * k * sh * sw, 4 * sh * sw, 4 * k * h * w
    inputs = 2 * 4 * 3 * h * w + 4 * k * (h // 4) * (w // 4)  # input and its batch copy, the first pass's small logits
    bound = window_sum + count + scale_sum + inputs
    assert max(probe.live) <= bound, (probe.live, bound)
    assert torch.equal(scores, multi_scale_predict(quarter_net, image, **kw))  # the probe changes nothing


def test_a_pixel_budget_caps_the_windows_per_forward_pass(quarter_net):
    h, w = 40, 64
    image = torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(6))
    kw = dict(mode="cityscapes", crop_size=(h, w), base_size=w, scales=(1.75,), flip=True, max_batch=8)

    def batches(**extra):
        recorder = _Recorder(quarter_net)
        scores = multi_scale_predict(recorder, image, **kw, **extra)
        return [x.shape[0] for x, _ in recorder.calls], scores

    assert batches()[0] == [8]  # four windows and their mirrors in one pass
    assert batches(max_pixels_per_forward=4 * h * w)[0] == [4, 4]  # two windows + mirrors per pass
    one, scores = batches(max_pixels_per_forward=1)  # at least one window (with its mirror) per pass
    assert one == [2, 2, 2, 2]
    assert torch.equal(scores, multi_scale_predict(quarter_net, image, **{**kw, "max_batch": 2}))  # the same passes
    with pytest.raises(HrsegError, match="max_pixels_per_forward"):
        multi_scale_predict(quarter_net, image, **kw, max_pixels_per_forward=0)
