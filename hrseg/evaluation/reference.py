"""A slow, literal re-statement of the official test-time loop, used as ground truth.

``reference_predict`` follows the official ``multi_scale_inference`` / ``inference`` line by
line (one network input per forward pass, the mirrored input in a second pass, numpy
flips, ``cv2.copyMakeBorder`` padding, explicit window loops). It shares no code with
``hrseg.evaluation.inference`` on purpose: the tests compare the two, and
``benchmarks/bench_eval.py`` uses it as the "plain straightforward loop" baseline.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F


def _logits(output: Any) -> torch.Tensor:
    if isinstance(output, dict):
        return output["out"]
    if isinstance(output, (list, tuple)):
        return output[-1]
    return output


def _infer(model, image: np.ndarray, flip: bool, align_corners: bool, flip_pairs, device) -> torch.Tensor:
    """Official ``inference``: ``image`` is ``1 x 3 x h x w`` float32 numpy."""
    size = image.shape
    pred = _logits(model(torch.from_numpy(image.copy()).to(device))).float()
    pred = F.interpolate(pred, size=size[-2:], mode="bilinear", align_corners=align_corners)
    if flip:
        flip_img = image[:, :, :, ::-1]
        flip_output = _logits(model(torch.from_numpy(flip_img.copy()).to(device))).float()
        flip_output = F.interpolate(flip_output, size=size[-2:], mode="bilinear", align_corners=align_corners)
        flip_np = flip_output.cpu().numpy()
        flip_pred = flip_np.copy()
        for a, b in flip_pairs:
            flip_pred[:, a] = flip_np[:, b]
            flip_pred[:, b] = flip_np[:, a]
        flip_pred = torch.from_numpy(flip_pred[:, :, :, ::-1].copy()).to(device)
        pred = pred + flip_pred
        pred = pred * 0.5
    return pred.exp()


def _pad(image: np.ndarray, h: int, w: int, size: Sequence[int], value) -> np.ndarray:
    pad_h = max(size[0] - h, 0)
    pad_w = max(size[1] - w, 0)
    if pad_h > 0 or pad_w > 0:
        return cv2.copyMakeBorder(image, 0, pad_h, 0, pad_w, cv2.BORDER_CONSTANT, value=tuple(float(v) for v in value))
    return image.copy()


def _rescale(image: np.ndarray, base_size: int, scale: float) -> np.ndarray:
    long_size = int(base_size * scale + 0.5)
    h, w = image.shape[:2]
    if h > w:
        new_h, new_w = long_size, int(w * long_size / h + 0.5)
    else:
        new_w, new_h = long_size, int(h * long_size / w + 0.5)
    return cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)


def reference_predict(
    model: Callable[[torch.Tensor], Any],
    image: torch.Tensor,
    *,
    num_classes: int,
    scales: Sequence[float],
    flip: bool,
    crop_size: tuple[int, int],
    base_size: int,
    mode: str,
    align_corners: bool,
    flip_pairs: Sequence[tuple[int, int]] = (),
    mean: Sequence[float] = (0.485, 0.456, 0.406),
    std: Sequence[float] = (0.229, 0.224, 0.225),
    device: str | torch.device = "cpu",
) -> torch.Tensor:
    """Summed exp-logits ``1 x K x H x W`` for a ``1 x 3 x H x W`` normalised image."""
    _, _, ori_height, ori_width = image.shape
    img = image.cpu().numpy()[0].transpose((1, 2, 0)).copy()
    padvalue = -1.0 * np.array(mean) / np.array(std)
    if mode == "cityscapes":
        stride_h, stride_w = int(crop_size[0] * 1.0), int(crop_size[1] * 1.0)
    else:
        stride_h, stride_w = int(crop_size[0] * 2.0 / 3.0), int(crop_size[1] * 2.0 / 3.0)
    final_pred = torch.zeros([1, num_classes, ori_height, ori_width], device=device)
    with torch.no_grad():
        for scale in scales:
            new_img = _rescale(img, base_size, scale)
            height, width = new_img.shape[:-1]
            whole = scale <= 1.0 if mode == "cityscapes" else max(height, width) <= np.min(crop_size)
            if whole:
                if mode != "cityscapes":
                    new_img = _pad(new_img, height, width, crop_size, padvalue)
                x = np.expand_dims(new_img.transpose((2, 0, 1)), axis=0)
                preds = _infer(model, x, flip, align_corners, flip_pairs, device)
                preds = preds[:, :, 0:height, 0:width]
            else:
                if mode != "cityscapes" and (height < crop_size[0] or width < crop_size[1]):
                    new_img = _pad(new_img, height, width, crop_size, padvalue)
                new_h, new_w = new_img.shape[:-1]
                rows = int(np.ceil(1.0 * (new_h - crop_size[0]) / stride_h)) + 1
                cols = int(np.ceil(1.0 * (new_w - crop_size[1]) / stride_w)) + 1
                preds = torch.zeros([1, num_classes, new_h, new_w], device=device)
                count = torch.zeros([1, 1, new_h, new_w], device=device)
                for r in range(rows):
                    for c in range(cols):
                        h0 = r * stride_h
                        w0 = c * stride_w
                        h1 = min(h0 + crop_size[0], new_h)
                        w1 = min(w0 + crop_size[1], new_w)
                        if mode == "cityscapes":
                            h0 = max(int(h1 - crop_size[0]), 0)
                            w0 = max(int(w1 - crop_size[1]), 0)
                        crop_img = new_img[h0:h1, w0:w1, :]
                        if mode != "cityscapes" and (h1 == new_h or w1 == new_w):
                            crop_img = _pad(crop_img, h1 - h0, w1 - w0, crop_size, padvalue)
                        x = np.expand_dims(crop_img.transpose((2, 0, 1)), axis=0)
                        pred = _infer(model, x, flip, align_corners, flip_pairs, device)
                        preds[:, :, h0:h1, w0:w1] += pred[:, :, 0 : h1 - h0, 0 : w1 - w0]
                        count[:, :, h0:h1, w0:w1] += 1
                preds = preds / count
                preds = preds[:, :, :height, :width]
            preds = F.interpolate(preds, (ori_height, ori_width), mode="bilinear", align_corners=align_corners)
            final_pred += preds
    return final_pred
