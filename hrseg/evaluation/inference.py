"""Test-time inference: the official multi-scale / flip / sliding-window arithmetic.

This module reproduces ``BaseDataset.multi_scale_inference`` / ``inference`` and the
Cityscapes and LIP overrides of the official HRNet-Semantic-Segmentation code (HRNet-OCR
branch, ``lib/datasets/base_dataset.py``, ``cityscapes.py``, ``lip.py``; official.md section 7),
step by step, on one image:

1. For every scale ``s`` (in the given order) the *normalised* image is resized with
   ``cv2.resize(..., INTER_LINEAR)`` so that its long side is ``int(base_size * s + 0.5)``
   and the short side ``int(short * long_new / long + 0.5)`` (``scaled_size``).
   OpenCV is used on purpose: its bilinear kernel differs from ``F.interpolate`` by ~1e-5.
2. The scaled image is cut into network inputs:

   - ``mode="generic"`` (LIP, PASCAL-Context, COCO-Stuff, ADE20K): if the long side is at most
     ``min(crop)``, the image is padded bottom/right to the crop size with the normalised
     black value ``-mean/std`` and run once; otherwise it is padded to at least the crop size
     and covered by crop-sized windows with stride ``int(crop * 2/3)``; windows that reach
     the bottom/right border are padded with ``-mean/std`` (not shifted).
   - ``mode="cityscapes"``: scales ``<= 1`` run the whole scaled image (no padding);
     scales ``> 1`` use crop-sized windows with stride = crop, each window shifted back
     so that it lies inside the image.

3. Every network input gives ``exp(logits)``: the main output is bilinearly resized to the
   input size (with ``model.align_corners``, like every resize below); with ``flip`` the
   mirrored input is run too, its resized logits have the left/right class channels swapped
   (LIP: 14/15, 16/17, 18/19) and are mirrored back, and the two *logit* maps are averaged
   before ``exp``.
4. Window outputs are summed into the scaled frame and divided by the per-pixel window count,
   cropped to the unpadded scaled size, bilinearly resized to the input size and summed over
   scales.

``finalize_prediction`` then does what the official ``testval`` does: crop the testval
padding, resize to the label size and take the argmax.

Differences from the official loop: everything runs under ``torch.inference_mode`` on the
model's device, the image is resized once per scale on the CPU and window sums are
accumulated in the official row-major order. With ``max_batch=1`` (the default) every network
input has its own forward pass in the official order, and the scores are bit-identical to a
literal transcription of the official loop (``hrseg.evaluation.reference``, tested). With
``max_batch >= 2`` the mirrored copy shares the batch with the original and several windows
share a forward pass (faster on GPUs); BatchNorm is in eval mode so every sample is computed
independently in exact arithmetic (float64: 1e-12, tested), but float32 convolution kernels
round differently for another batch size. Everything after the network is ``exp`` of a convex
combination of logits followed by sums of positive numbers, so an absolute logit difference
``delta`` becomes a relative score difference of at most ``delta`` (plus a few ulps): ~1e-5 for
trained models, up to ~1e-2 for the random test network whose padded windows reach logits of
~77. The argmax can differ only at near-ties (tested against that bound).

Memory (``benchmarks/bench_memory.py``): besides the forward pass, at most the scaled-size
window sum of the current scale, the input-sized scale sum and three crop-sized maps in the
flip mean are alive at once; means, ``exp``, the division by the window count and the scale
sum are computed in place (the same numbers as the official out-of-place expressions) and
window inputs are cut only when their forward pass comes.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import cv2
import numpy as np
import torch

from hrseg.errors import HrsegError
from hrseg.models.segmentation import resize_logits

InferenceMode = Literal["generic", "cityscapes"]
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class InferenceError(HrsegError):
    """Invalid test-time inference settings or inputs."""


# --------------------------------------------------------------------------------------
# Geometry (pure functions)
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """A window ``[y0, y1) x [x0, x1)`` in the (possibly padded) scaled image."""

    y0: int
    y1: int
    x0: int
    x1: int

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    @property
    def width(self) -> int:
        return self.x1 - self.x0


def scaled_size(height: int, width: int, base_size: int, scale: float) -> tuple[int, int]:
    """``(new_height, new_width)`` with the long side ``int(base_size * scale + 0.5)`` and the
    aspect ratio kept, rounded like the official ``multi_scale_aug`` (landscape and square
    images scale their width to the long side)."""
    long_side = int(base_size * scale + 0.5)
    if height > width:
        return long_side, int(width * long_side / height + 0.5)
    return int(height * long_side / width + 0.5), long_side


def generic_stride(crop_size: tuple[int, int]) -> tuple[int, int]:
    """The official sliding-window stride of the generic datasets: ``int(crop * 2/3)``."""
    return int(crop_size[0] * 2.0 / 3.0), int(crop_size[1] * 2.0 / 3.0)


def sliding_windows(
    height: int,
    width: int,
    crop_size: tuple[int, int],
    stride: tuple[int, int],
    *,
    shift_inside: bool,
) -> list[Window]:
    """Row-major windows covering a ``height x width`` image.

    ``rows = ceil((height - crop_h) / stride_h) + 1`` (likewise columns); window ``(r, c)``
    starts at ``(r * stride_h, c * stride_w)`` and is clipped at the border. With
    ``shift_inside`` (Cityscapes) a clipped window is moved back to full crop size inside the
    image (never before 0); otherwise it stays clipped (and is padded when run)."""
    crop_h, crop_w = crop_size
    stride_h, stride_w = stride
    if min(crop_h, crop_w, stride_h, stride_w) < 1:
        raise InferenceError(f"crop size {crop_size} and stride {stride} must be positive")
    if height < 1 or width < 1:
        raise InferenceError(f"cannot cut windows from an empty {height}x{width} image")
    rows = math.ceil((height - crop_h) / stride_h) + 1
    cols = math.ceil((width - crop_w) / stride_w) + 1
    windows = []
    for r in range(max(rows, 1)):
        for c in range(max(cols, 1)):
            y0, x0 = r * stride_h, c * stride_w
            y1, x1 = min(y0 + crop_h, height), min(x0 + crop_w, width)
            if shift_inside:
                y0, x0 = max(y1 - crop_h, 0), max(x1 - crop_w, 0)
            windows.append(Window(y0, y1, x0, x1))
    return windows


def window_counts(windows: Iterable[Window], height: int, width: int) -> np.ndarray:
    """How many windows cover each pixel (``int64`` array ``height x width``)."""
    counts = np.zeros((height, width), np.int64)
    for w in windows:
        counts[w.y0 : w.y1, w.x0 : w.x1] += 1
    return counts


def pad_value(mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> np.ndarray:
    """The normalised value of a black pixel, ``-mean / std`` (float32, RGB order)."""
    return (-1.0 * np.asarray(mean, np.float64) / np.asarray(std, np.float64)).astype(np.float32)


def flip_permutation(num_classes: int, flip_pairs: Iterable[tuple[int, int]] = ()) -> list[int]:
    """Channel order that swaps left/right classes of a mirrored prediction."""
    perm = list(range(num_classes))
    for a, b in flip_pairs:
        if not (0 <= a < num_classes and 0 <= b < num_classes):
            raise InferenceError(f"flip pair ({a}, {b}) is outside the {num_classes} classes")
        perm[a], perm[b] = b, a
    return perm


def _pad_bottom_right(image: np.ndarray, size: tuple[int, int], value: np.ndarray) -> np.ndarray:
    """Official ``pad_image``: pad ``HxWx3`` up to ``size`` (never crop) with ``value``."""
    h, w = image.shape[:2]
    pad_h, pad_w = max(size[0] - h, 0), max(size[1] - w, 0)
    if pad_h == 0 and pad_w == 0:
        return image
    out = np.empty((h + pad_h, w + pad_w, image.shape[2]), image.dtype)
    out[...] = value
    out[:h, :w] = image
    return out


# --------------------------------------------------------------------------------------
# The network part: exp of (flip-averaged) upsampled logits
# --------------------------------------------------------------------------------------


def _main_logits(output: Any) -> torch.Tensor:
    if isinstance(output, dict):
        return output["out"]
    if isinstance(output, (list, tuple)):  # official models return [aux, out]
        return output[-1]
    return output


@dataclass(frozen=True)
class _Runner:
    """Runs batches of network inputs and returns ``exp`` of their (flip-averaged) logits."""

    model: Callable[[torch.Tensor], Any]
    align_corners: bool  # the model's
    flip: bool
    perm: list[int] | None  # channel swap for mirrored outputs (None: identity)
    max_batch: int
    device: torch.device
    autocast_dtype: torch.dtype | None
    max_pixels: int | None = None  # input pixels per forward pass, mirrored copies included

    @property
    def inputs_per_forward(self) -> int:
        """Distinct network inputs per forward pass (their mirrored copies ride along)."""
        return max(1, self.max_batch // 2) if self.flip else self.max_batch

    def inputs_per_forward_of(self, height: int, width: int) -> int:
        """``inputs_per_forward`` for ``height x width`` inputs, capped by ``max_pixels``
        (never below one input, with its mirror when they share a pass)."""
        if self.max_pixels is None:
            return self.inputs_per_forward
        copies = 2 if (self.flip and self.max_batch >= 2) else 1
        return max(1, min(self.inputs_per_forward, self.max_pixels // (copies * height * width)))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``N x 3 x h x w`` on ``device`` -> ``N x K x h x w`` exp-logits (one forward
        pass of ``N`` or ``2N`` inputs; callers keep ``N <= inputs_per_forward``).

        Memory: at most three ``N x K x h x w`` maps are alive at once (the prediction, the
        mirrored prediction and its flipped copy); the mean and ``exp`` are taken in place,
        which computes the same numbers as the out-of-place official expressions."""
        n = x.shape[0]
        if not self.flip:
            return self._upsample(self._forward(x), x).exp_()
        if self.max_batch >= 2:
            both = self._forward(torch.cat([x, x.flip(-1)]))
            low, low_mirrored = both[:n], both[n:]
        else:  # one input per forward pass, as in the official loop
            low, low_mirrored = self._forward(x), self._forward(x.flip(-1))
        if self.perm is not None:  # a channel permutation commutes with the per-channel resize
            low_mirrored = low_mirrored[:, self.perm]
        pred = self._upsample(low, x)
        flipped = self._upsample(low_mirrored, x).flip(-1)
        pred.add_(flipped)
        del flipped
        return pred.mul_(0.5).exp_()

    def _upsample(self, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return resize_logits(logits, x.shape[-2:], align_corners=self.align_corners)

    def _forward(self, batch: torch.Tensor) -> torch.Tensor:
        ctx = (
            torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)
            if self.autocast_dtype is not None
            else contextlib.nullcontext()
        )
        with ctx:
            logits = _main_logits(self.model(batch))
        return logits.float()


# --------------------------------------------------------------------------------------
# Multi-scale prediction
# --------------------------------------------------------------------------------------


def multi_scale_predict(
    model: Callable[[torch.Tensor], Any],
    image: torch.Tensor | np.ndarray,
    *,
    scales: Sequence[float] = (1.0,),
    flip: bool = False,
    crop_size: tuple[int, int],
    base_size: int,
    mode: InferenceMode = "generic",
    flip_pairs: Iterable[tuple[int, int]] = (),
    num_classes: int | None = None,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    device: str | torch.device | None = None,
    max_batch: int = 1,
    autocast_dtype: torch.dtype | None = None,
    max_pixels_per_forward: int | None = None,
) -> torch.Tensor:
    """Sum over ``scales`` of ``exp`` of flip-averaged logits, at the input size.

    ``model`` is any callable ``f(x) -> {"out": logits}`` (or a tensor, or the official
    ``[aux, out]`` list) whose logits may be at a lower resolution than ``x``; it carries the
    ``align_corners`` of its resizes as ``model.align_corners`` (hrseg models and prepared
    models do), which every resize of its logits here uses.
    ``image`` is one normalised RGB image, ``3 x H x W`` (or ``1 x 3 x H x W``, or ``H x W x 3``
    numpy). ``num_classes`` (only needed for the LIP channel swap) defaults to
    ``model.num_classes`` or the output's channel count.
    ``mean``/``std`` give the pad value ``-mean/std``. ``max_batch`` bounds the number of
    network inputs per forward pass, mirrored copies included (1 = official one-by-one,
    bit-identical to the reference loop). ``max_pixels_per_forward`` is a memory budget for
    ``max_batch >= 2``: windows share a forward pass only while their input pixels (mirrored
    copies included) stay within it; a pass always takes at least one input.
    Returns a float32 ``1 x K x H x W`` tensor on ``device`` (default: the model's device,
    else the image's).
    """
    if mode not in ("generic", "cityscapes"):
        raise InferenceError(f"unknown inference mode {mode!r}; expected 'generic' or 'cityscapes'")
    if not scales:
        raise InferenceError("at least one test scale is needed")
    if any(not (s > 0) for s in scales):
        raise InferenceError(f"test scales must be positive, got {list(scales)}")
    if max_batch < 1:
        raise InferenceError(f"max_batch must be at least 1, got {max_batch}")
    if max_pixels_per_forward is not None and max_pixels_per_forward < 1:
        raise InferenceError(f"max_pixels_per_forward must be at least 1, got {max_pixels_per_forward}")
    crop_size = (int(crop_size[0]), int(crop_size[1]))
    align_corners = getattr(model, "align_corners", None)
    if align_corners is None:
        raise InferenceError(f"the model callable ({type(model).__name__}) has no .align_corners attribute: give it the align_corners it was trained with")
    align_corners = bool(align_corners)
    num_classes = num_classes if num_classes is not None else getattr(model, "num_classes", None)
    flip_pairs = tuple(flip_pairs)

    array = _to_hwc_numpy(image)
    ori_h, ori_w = array.shape[:2]
    if device is None:
        device = _model_device(model) or (image.device if isinstance(image, torch.Tensor) else torch.device("cpu"))
    device = torch.device(device)
    fill = pad_value(mean, std)

    def runner_for(k: int | None) -> _Runner:
        perm = flip_permutation(k, flip_pairs) if (flip and flip_pairs and k is not None) else None
        return _Runner(model, align_corners, flip, perm, max_batch, device, autocast_dtype, max_pixels_per_forward)

    if flip and flip_pairs and num_classes is None:
        raise InferenceError("num_classes is needed for the flip channel swap (the model has no .num_classes)")
    run = runner_for(num_classes)

    final: torch.Tensor | None = None
    with torch.inference_mode():
        for scale in scales:
            new_h, new_w = scaled_size(ori_h, ori_w, base_size, scale)
            scaled = array if (new_h, new_w) == (ori_h, ori_w) else cv2.resize(array, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
            if scaled.ndim == 2:  # cv2 drops a trailing singleton channel axis
                scaled = scaled[:, :, None]
            if mode == "cityscapes":
                preds = _cityscapes_scale(run, scaled, scale, crop_size, device)
            else:
                preds = _generic_scale(run, scaled, crop_size, fill, device)
            preds = resize_logits(preds, (ori_h, ori_w), align_corners=align_corners)
            if final is None:
                final = preds
            else:
                final.add_(preds)  # in place: one input-sized map for the sum, not two
            del preds, scaled  # this scale's maps go before the next scale is run
    assert final is not None
    return final


def _generic_scale(run: _Runner, img: np.ndarray, crop: tuple[int, int], fill: np.ndarray, device: torch.device) -> torch.Tensor:
    height, width = img.shape[:2]
    if max(height, width) <= min(crop):
        padded = _pad_bottom_right(img, crop, fill)
        preds = run(_to_input(padded, device))
        return preds[:, :, :height, :width]
    img = _pad_bottom_right(img, crop, fill)
    windows = sliding_windows(img.shape[0], img.shape[1], crop, generic_stride(crop), shift_inside=False)
    preds = _accumulate(run, img.shape[:2], windows, lambda w: _pad_bottom_right(img[w.y0 : w.y1, w.x0 : w.x1], crop, fill), device)
    return preds[:, :, :height, :width]


def _cityscapes_scale(run: _Runner, img: np.ndarray, scale: float, crop: tuple[int, int], device: torch.device) -> torch.Tensor:
    if scale <= 1.0:
        return run(_to_input(img, device))
    windows = sliding_windows(img.shape[0], img.shape[1], crop, crop, shift_inside=True)
    return _accumulate(run, img.shape[:2], windows, lambda w: img[w.y0 : w.y1, w.x0 : w.x1], device)


def _accumulate(
    run: _Runner, size: tuple[int, int], windows: list[Window], window_input: Callable[[Window], np.ndarray], device: torch.device
) -> torch.Tensor:
    """Run the windows (a few per forward pass) and average the overlaps; window outputs are
    added in the official row-major order. Window inputs are cut (and padded) only when their
    forward pass comes."""
    preds: torch.Tensor | None = None
    count = torch.zeros((1, 1, size[0], size[1]), dtype=torch.float32, device=device)
    step = run.inputs_per_forward_of(windows[0].height, windows[0].width)  # every window is crop-sized when run
    for start in range(0, len(windows), step):
        chunk = windows[start : start + step]
        outputs = run(torch.cat([_to_input(window_input(w), device) for w in chunk]))
        if preds is None:
            preds = torch.zeros((1, outputs.shape[1], size[0], size[1]), dtype=torch.float32, device=device)
        for i, w in enumerate(chunk):
            preds[:, :, w.y0 : w.y1, w.x0 : w.x1] += outputs[i : i + 1, :, : w.height, : w.width]
            count[:, :, w.y0 : w.y1, w.x0 : w.x1] += 1
        del outputs  # before the next forward pass
    assert preds is not None
    return preds.div_(count)  # in place: the same quotients without a second scaled-size map


def _to_input(img: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))[None].to(device)


def _to_hwc_numpy(image: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(image, torch.Tensor):
        t = image.detach()
        if t.ndim == 4:
            if t.shape[0] != 1:
                raise InferenceError(f"multi_scale_predict takes one image, got a batch of {t.shape[0]}")
            t = t[0]
        if t.ndim != 3 or t.shape[0] != 3:
            raise InferenceError(f"expected a 3 x H x W image tensor, got shape {tuple(image.shape)}")
        return np.ascontiguousarray(t.float().cpu().numpy().transpose(1, 2, 0))
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] != 3:
        raise InferenceError(f"expected an H x W x 3 image array, got shape {array.shape}")
    return np.ascontiguousarray(array, dtype=np.float32)


def _model_device(model: Any) -> torch.device | None:
    if isinstance(model, torch.nn.Module):
        for p in model.parameters():
            return p.device
    dev = getattr(model, "device", None)
    return torch.device(dev) if isinstance(dev, (str, torch.device)) else None


# --------------------------------------------------------------------------------------
# From summed scores to a label map
# --------------------------------------------------------------------------------------


def finalize_prediction(
    scores: torch.Tensor,
    label_size: tuple[int, int] | None = None,
    *,
    pad: tuple[int, int] = (0, 0),
    align_corners: bool,
) -> torch.Tensor:
    """Official ``testval`` tail: crop ``pad = (pad_h, pad_w)`` rows/columns of testval
    padding from the bottom/right, bilinearly resize to ``label_size`` when it differs
    (``align_corners``: the model's), then argmax over classes. Returns an int64 ``H x W``
    tensor on the scores' device."""
    return resize_logits(scores, label_size, align_corners=align_corners, pad=pad).argmax(dim=1)[0]
