"""Reading, converting and strictly loading checkpoints.

Formats understood by ``load_checkpoint`` (detected, or named with ``kind=``):

``segmentation``
    Released HRNet-Semantic-Segmentation files (``hrnet_ocr_cs_8162_torch11.pth`` ...): a flat
    dict with a ``model.`` prefix and possibly ``loss.*`` entries (dropped); also the official
    resume file ``checkpoint.pth.tar`` (``{"state_dict": ...}``).
``imagenet``
    HRNet-Image-Classification weights (``hrnetv2_w48_imagenet_pretrained.pth``): the
    classification-only modules are dropped, the backbone is loaded strictly, the segmentation
    head keeps its initialisation.
``hrseg``
    Our own checkpoints (``{"format": "hrseg", "model": state_dict, ...}``).
``state_dict``
    A bare ``model.state_dict()`` without prefixes.

BatchNorm formats: ``standard`` or ``inplace_abn``. The ``_torch04`` releases were trained with
In-Place ABN, whose affine scale is ``|weight| + 1e-5``; loading them into standard BN converts
``w -> |w| + 1e-5`` (official.md §4). ``bn_format="auto"`` picks ``inplace_abn`` for a
segmentation checkpoint whose name contains ``_torch04`` or that has no ``num_batches_tracked``
buffers (In-Place ABN has none).

Every load is strict: missing, unexpected or mis-shaped keys raise ``CheckpointError`` listing
them. Files are read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import os
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping

import torch
from torch import nn

from hrseg.config import from_dict, to_dict
from hrseg.errors import HrsegError
from hrseg.models.config import HRNET_CONFIGS, ModelConfig
from hrseg.models.segmentation import HEADS, build_model

CheckpointKind = Literal["auto", "segmentation", "imagenet", "hrseg", "state_dict"]
BNFormat = Literal["auto", "standard", "inplace_abn"]

#: Modules of HRNet-Image-Classification that the segmentation models do not have.
IMAGENET_ONLY_PREFIXES = ("incre_modules.", "downsamp_modules.", "final_layer.", "classifier.")
ABN_EPS = 1e-5
HRSEG_FORMAT = "hrseg"
_LIST_LIMIT = 40


class CheckpointError(HrsegError):
    """A checkpoint cannot be read or does not match the model."""


@dataclass
class LoadReport:
    """What ``load_checkpoint`` did, for logs and for tests."""

    path: str
    kind: str
    bn_format: str
    loaded: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    kept_init: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        lines = [f"{self.path}: {self.kind} checkpoint, {len(self.loaded)} tensors loaded (BN format: {self.bn_format})"]
        if self.dropped:
            lines.append(f"  dropped {len(self.dropped)} checkpoint entries not used by the model: {_prefix_summary(self.dropped)}")
        if self.kept_init:
            lines.append(f"  kept the initialisation of {len(self.kept_init)} model entries: {_prefix_summary(self.kept_init)}")
        lines += [f"  {note}" for note in self.notes]
        return "\n".join(lines)


def _prefix_summary(keys: list[str]) -> str:
    prefixes = sorted({k.split(".")[0] for k in keys})
    return ", ".join(f"{p}.*" for p in prefixes)


def _listing(title: str, keys: list[str]) -> str:
    shown = "\n".join(f"    {k}" for k in keys[:_LIST_LIMIT])
    more = f"\n    ... and {len(keys) - _LIST_LIMIT} more" if len(keys) > _LIST_LIMIT else ""
    return f"  {title} ({len(keys)}):\n{shown}{more}"


# --------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------


def read_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu", *, corrupt_hint: str | None = None) -> dict:
    """``torch.load(weights_only=True)`` with errors that name the file and say what is wrong.

    A file that holds pickled Python objects (code could run on load) is refused as unsafe,
    naming the blocked global. ``corrupt_hint`` replaces the default advice for a truncated or
    corrupt file (an interrupted download)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a directory, expected a checkpoint file")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"{path}: empty file (0 bytes), not a checkpoint")
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises RuntimeError, UnpicklingError, EOFError, ...
        text = str(exc).strip()
        if "weights only load failed" in text.lower() or "weightsunpickler" in text.lower():
            raise CheckpointError(unsafe_pickle_message(path, text)) from None
        reason = text.splitlines()[0] if text else type(exc).__name__
        if zipfile.is_zipfile(path) or "zip" in reason.lower() or isinstance(exc, EOFError):
            hint = corrupt_hint or "the file looks truncated or corrupt (an interrupted download?)"
        else:
            hint = "not a PyTorch checkpoint"
        raise CheckpointError(f"{path}: cannot read checkpoint ({size} bytes): {hint}. torch.load said: {reason}") from None
    if not isinstance(data, Mapping):
        raise CheckpointError(f"{path}: expected a dict of tensors, found {type(data).__name__}")
    return dict(data)


def unsafe_pickle_message(path: str | os.PathLike, torch_message: str) -> str:
    """What to tell the user when ``torch.load(weights_only=True)`` refused a file: the blocked
    global (or pickle operation) from torch's message, never torch's advice to load with
    ``weights_only=False`` (that would run the code in the file)."""
    found = re.search(r"GLOBAL\s+([\w.]+)", torch_message, re.IGNORECASE)
    if found:
        what = f"the pickled global {found.group(1).rstrip('.')}"
    else:
        other = re.search(r"(unsupported [^.\n]*)", torch_message, re.IGNORECASE)
        what = other.group(1).strip() if other else "pickled Python objects other than tensors"
    return (
        f"{path}: refused as unsafe: it contains {what}, and loading it could run code. hrseg loads "
        "weights only (tensors, numbers, strings, lists and dicts). Use a checkpoint from the official "
        "releases or from hrseg, or re-save the weights as a plain state_dict where the file is trusted"
    )


def detect_kind(data: Mapping[str, Any]) -> str:
    if data.get("format") == HRSEG_FORMAT and isinstance(data.get("model"), Mapping):
        return "hrseg"
    if isinstance(data.get("state_dict"), Mapping):
        return "segmentation"
    keys = [k for k in data if isinstance(k, str)]
    if any(k.startswith("model.") for k in keys):
        return "segmentation"
    if any(k.startswith(IMAGENET_ONLY_PREFIXES) for k in keys):
        return "imagenet"
    return "state_dict"


def extract_state_dict(data: Mapping[str, Any], kind: str) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The model's tensors from a file of the given kind, plus the entries dropped by design."""
    dropped: list[str] = []
    tables = [data["model"] if kind == "hrseg" else data.get("state_dict") if isinstance(data.get("state_dict"), Mapping) else data]
    odd = [repr(k) for table in tables for k in table if not isinstance(k, str)]
    if odd:
        raise CheckpointError(f"expected parameter names (strings) as keys, found {', '.join(odd[:5])}")
    if kind == "hrseg":
        state = dict(data["model"])
    elif kind == "segmentation":
        source = data["state_dict"] if isinstance(data.get("state_dict"), Mapping) else data
        state = {}
        for key, value in source.items():
            if key.startswith("loss."):
                dropped.append(key)
            else:
                state[key[len("model.") :] if key.startswith("model.") else key] = value
    elif kind == "imagenet":
        state = {}
        for key, value in data.items():
            (dropped.append(key) if key.startswith(IMAGENET_ONLY_PREFIXES) else state.__setitem__(key, value))
    elif kind == "state_dict":
        state = dict(data)
    else:
        raise ValueError(f"unknown checkpoint kind {kind!r}; valid: auto, segmentation, imagenet, hrseg, state_dict")
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"entries that are not tensors: {', '.join(map(str, bad[:10]))}")
    return state, dropped


def _bn_modules(model: nn.Module) -> dict[str, nn.Module]:
    return {name: m for name, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}


def convert_inplace_abn(state: dict[str, torch.Tensor], bn_prefixes: list[str]) -> dict[str, torch.Tensor]:
    """In-Place ABN scale ``|w| + 1e-5`` -> standard BN ``weight``; biases are unchanged."""
    out = dict(state)
    for prefix in bn_prefixes:
        key = f"{prefix}.weight"
        if key in out:
            out[key] = out[key].abs() + ABN_EPS
    return out


# --------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------


def load_checkpoint(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    kind: CheckpointKind = "auto",
    bn_format: BNFormat = "auto",
) -> LoadReport:
    """Load ``path`` into ``model`` strictly and return a ``LoadReport``.

    Raises ``CheckpointError`` for unreadable files and for any missing, unexpected or
    mis-shaped key (all of them listed)."""
    path = Path(path)
    data = read_checkpoint(path)
    detected = detect_kind(data) if kind == "auto" else kind
    state, dropped = extract_state_dict(data, detected)
    report = LoadReport(path=str(path), kind=detected, bn_format="standard", dropped=dropped)

    model_state = model.state_dict()
    bn = _bn_modules(model)
    has_nbt = any(k.endswith("num_batches_tracked") for k in state)
    if bn_format == "auto":
        abn = detected == "segmentation" and ("_torch04" in path.name or not has_nbt)
        if abn:
            why = "file name contains _torch04" if "_torch04" in path.name else "no num_batches_tracked buffers"
            report.notes.append(f"In-Place ABN checkpoint detected ({why}): BN weight w -> |w| + 1e-5")
    else:
        abn = bn_format == "inplace_abn"
    if abn:
        state = convert_inplace_abn(state, list(bn))
        report.bn_format = "inplace_abn"

    # num_batches_tracked does not affect outputs; files without it (In-Place ABN, old
    # PyTorch) keep the model's own counters.
    missing_nbt = [k for k in model_state if k.endswith("num_batches_tracked") and k not in state]
    if missing_nbt and not has_nbt:
        for key in missing_nbt:
            state[key] = model_state[key]
        report.notes.append(f"{len(missing_nbt)} num_batches_tracked buffers absent from the file; kept the model's")

    head_prefixes: tuple[str, ...] = getattr(model, "head_prefixes", ())
    if detected == "imagenet":
        report.kept_init = [k for k in model_state if k.startswith(head_prefixes)]
        if report.kept_init:
            report.notes.append("ImageNet weights initialise the backbone only; the segmentation head keeps its initialisation")
        expected = {k: v for k, v in model_state.items() if not k.startswith(head_prefixes)}
    else:
        expected = model_state

    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or mismatched:
        parts = [f"{path}: {detected} checkpoint does not match the model {_model_name(model)}"]
        if missing:
            parts.append(_listing("missing from the checkpoint", missing))
        if unexpected:
            parts.append(_listing("unexpected in the checkpoint", unexpected))
        if mismatched:
            parts.append(_listing("shape mismatch", mismatched))
        hint = _mismatch_hint(state, model)
        if hint:
            parts.append(f"  hint: {hint}")
        raise CheckpointError("\n".join(parts))

    to_load = {k: state[k] for k in expected}
    if detected == "imagenet":
        to_load.update({k: model_state[k] for k in report.kept_init})
    model.load_state_dict(to_load, strict=True)
    report.loaded = list(expected)
    return report


def _model_name(model: nn.Module) -> str:
    backbone = getattr(model, "backbone_name", type(model).__name__)
    head = getattr(model, "head_name", "")
    classes = getattr(model, "num_classes", None)
    return f"{backbone}{'_' + head if head else ''}" + (f" ({classes} classes)" if classes else "")


def _mismatch_hint(state: Mapping[str, torch.Tensor], model: nn.Module) -> str:
    try:
        cfg = infer_model_config(state)
    except CheckpointError:
        return ""
    return f"the checkpoint looks like {cfg.backbone}_{cfg.head} with {cfg.num_classes} classes"


def infer_model_config(state: Mapping[str, torch.Tensor], **overrides: Any) -> ModelConfig:
    """Guess backbone, head and class count from a (prefix-free) state dict by comparing its
    keys and shapes with every known architecture (built on the meta device)."""
    head = "ocr" if "cls_head.weight" in state else "fcn" if "last_layer.3.weight" in state else None
    if head is None:
        raise CheckpointError("cannot tell the head: neither cls_head.weight (OCR) nor last_layer.3.weight (FCN) present")

    def conv_weight(key: str) -> torch.Tensor:
        value = state.get(key)
        if not isinstance(value, torch.Tensor) or value.ndim != 4 or min(value.shape[:2]) < 1:
            found = "missing" if value is None else f"a {type(value).__name__} of shape {tuple(getattr(value, 'shape', ()))}"
            raise CheckpointError(f"cannot infer the architecture: {key} should be a 4-d convolution weight, found {found}")
        return value

    classifier = conv_weight("cls_head.weight" if head == "ocr" else "last_layer.3.weight")
    num_classes = int(classifier.shape[0])
    extra: dict[str, Any] = {}
    if head == "ocr":
        extra = dict(
            ocr_mid_channels=int(classifier.shape[1]),
            ocr_key_channels=int(conv_weight("ocr_distri_head.object_context_block.f_pixel.0.weight").shape[0]),
        )
    shapes = {k: tuple(v.shape) for k, v in state.items() if not k.endswith("num_batches_tracked")}
    for backbone in HRNET_CONFIGS:
        with torch.device("meta"):
            candidate = build_model(backbone, head, num_classes, **extra)
        cand = {k: tuple(v.shape) for k, v in candidate.state_dict().items() if not k.endswith("num_batches_tracked")}
        if cand == shapes:
            return ModelConfig(backbone=backbone, head=head, num_classes=num_classes, **extra, **overrides)
    assert head in HEADS
    raise CheckpointError(f"the {head} checkpoint ({num_classes} classes) matches none of the backbones {', '.join(HRNET_CONFIGS)}")


def model_config_from_file(path: str | os.PathLike, **overrides: Any) -> tuple[ModelConfig, str]:
    """The ``ModelConfig`` stored in an hrseg checkpoint, or inferred from an official one."""
    data = read_checkpoint(path)
    kind = detect_kind(data)
    if kind == "hrseg" and isinstance(data.get("model_config"), Mapping):
        cfg = from_dict(ModelConfig, dict(data["model_config"]), source=f"{path} (model_config)")
        if overrides:
            from dataclasses import replace

            cfg = replace(cfg, **overrides)
        return cfg, kind
    if kind == "imagenet":
        raise CheckpointError(f"{path}: an ImageNet classification checkpoint has no segmentation head")
    state, _ = extract_state_dict(data, kind)
    return infer_model_config(state, **overrides), kind


def make_checkpoint(model: nn.Module, model_config: ModelConfig, **extra: Any) -> dict[str, Any]:
    """Our checkpoint format: a plain dict that ``torch.load(weights_only=True)`` reads.

    ``model`` is the bare model: under DDP pass ``hrseg.runtime.distributed.unwrap_model(model)``
    (this floor does not know the wrappers), as training does."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    return {"format": HRSEG_FORMAT, "version": 1, "model_config": to_dict(model_config), "model": state, **extra}
