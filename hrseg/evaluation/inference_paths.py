"""Fast inference paths that keep the numerics, and the choice between them.

``prepare_inference_model(model, path)`` returns an :class:`InferenceModel`: a callable
``f(x) -> {"out": logits[, "aux": logits]}`` (float32, NCHW, on ``x``'s device) with the
attributes ``align_corners`` and ``num_classes`` of the model it wraps (``None`` / 0 where that
model has none) and ``path`` (the path actually chosen). The caller's model is never modified:
every path works on an eval-mode copy.

Paths (``INFERENCE_PATHS``):

``eager``          the reference: fp32, NCHW, the model exactly as built.
``channels_last``  fp32, NHWC memory layout (faster convolutions on CPU and on tensor-core GPUs).
``folded``         fp32, every BatchNorm that directly follows a convolution folded into it.
``folded_cl``      ``folded`` + ``channels_last``.
``winograd``       ``folded_cl`` with the large 3x3 convolutions (OCR's ``conv3x3_ocr``) run by
                   NNPACK's Winograd kernel on large inputs, and HRNet's branch convolutions
                   of 96+ channels by F(4x4, 3x3) matrix products (CPU;
                   ``hrseg.models.winograd``, ``hrseg.models.winograd_tiles``).
``onnx``           the model exported to ONNX and run by ONNX Runtime (CPU provider); needs
                   ``onnxruntime`` (``pip install 'hrseg[onnx]'``).
``cuda_fp16``      ``folded_cl`` under fp16 autocast (CUDA only). **Opt-in: changes results
``cuda_bf16``      beyond float tolerance** (bf16 autocast likewise).
``auto``           the fastest path that keeps float32 numerics on the device: on CPU
                   ``winograd`` where NNPACK runs (x86-64 with AVX2, ARM with NEON) and the
                   model has a layer ``WinogradRule`` takes, else
                   ``onnx`` for models of at least ``ONNX_MIN_PARAMS`` parameters when
                   onnxruntime is installed, else ``folded_cl``; ``folded_cl`` on CUDA;
                   ``folded`` elsewhere. Measured side by side on the 2-core development CPU
                   (``benchmarks/bench_winograd.py``, ``benchmarks/RESULTS.md``, three runs):
                   W48+OCR at 512x1024 ``folded_cl`` 1.33-1.42x eager, ``onnx`` 1.37-1.52x,
                   ``winograd`` 1.51-1.75x; 6-scale evaluation of W18-Small-v2+OCR 1.21-1.34x
                   and 1.34-1.46x over the official loop for ``folded_cl`` and ``winograd``
                   (before the branch tiles; with them and the host memory policy ``keep``,
                   W48+OCR ``auto`` was 1.65-1.67x eager under the same policy in two runs of
                   ``benchmarks/bench_host_memory.py``, 2026-12-03).
                   ``onnx``'s export costs about 12 s per preparation for W48.

All fp32 paths differ from ``eager`` only by float32 rounding (tested on the parity fixture).
On CUDA, PyTorch's default TF32 convolutions apply to ``eager`` and ``auto`` alike; hrseg never
changes global backend flags.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.utils._pytree as pytree
from torch import nn
from torch.overrides import TorchFunctionMode

from hrseg.errors import HrsegError
from hrseg.evaluation.export import export_onnx
from hrseg.models.winograd import has_winograd_layers, use_winograd, winograd_available
from hrseg.runtime.distributed import unwrap_model

log = logging.getLogger(__name__)

INFERENCE_PATHS = ("auto", "eager", "channels_last", "folded", "folded_cl", "winograd", "onnx", "cuda_fp16", "cuda_bf16")


@dataclass(frozen=True)
class PathInfo:
    """What one inference path does and whether it keeps float32 numerics."""

    description: str
    exact: bool  # True: differs from eager fp32 only by float32 rounding
    needs_cuda: bool = False


PATHS: dict[str, PathInfo] = {
    "eager": PathInfo("reference: fp32 NCHW eager forward", exact=True),
    "channels_last": PathInfo("fp32, channels_last (NHWC) memory layout", exact=True),
    "folded": PathInfo("fp32, BatchNorm folded into the preceding convolutions", exact=True),
    "folded_cl": PathInfo("fp32, BatchNorm folded + channels_last", exact=True),
    "winograd": PathInfo("fp32, folded_cl + NNPACK Winograd for the large 3x3 convolutions on CPU", exact=True),
    "onnx": PathInfo("ONNX export run by ONNX Runtime (CPU provider)", exact=True),
    "cuda_fp16": PathInfo("CUDA fp16 autocast on folded + channels_last; changes results beyond float32 tolerance", exact=False, needs_cuda=True),
    "cuda_bf16": PathInfo("CUDA bf16 autocast on folded + channels_last; changes results beyond float32 tolerance", exact=False, needs_cuda=True),
}

#: The size of the random input used to trace which BatchNorm follows which convolution.
TRACE_SIZE = (64, 64)


class InferencePathError(HrsegError):
    """An inference path is unknown or cannot run here."""


# --------------------------------------------------------------------------------------
# BatchNorm folding
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConvBNPair:
    """A BatchNorm (``bn``, a dotted module name) whose only input is ``conv``'s output."""

    conv: str
    bn: str


def _foldable_bn(module: nn.Module) -> bool:
    return isinstance(module, nn.modules.batchnorm._BatchNorm) and module.running_mean is not None and module.running_var is not None


def _input_channels(model: nn.Module) -> int:
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            return module.in_channels
    raise InferencePathError(f"{type(model).__name__} has no Conv2d; cannot trace it for BatchNorm folding")


#: Tensor functions and properties that read metadata only: a conv output read this way (for
#: example ``x.shape`` before a resize) may still be folded, since folding changes values only.
_METADATA_FUNCTIONS = frozenset(
    "size dim ndimension numel nelement is_contiguous stride storage_offset element_size get_device "
    "is_floating_point is_complex __len__".split()
)
_METADATA_PROPERTIES = frozenset("shape ndim dtype device layout requires_grad is_cuda is_cpu is_meta is_sparse is_quantized names grad_fn is_leaf".split())


def _reads_metadata_only(func: Callable[..., Any]) -> bool:
    name = getattr(func, "__name__", "")
    if name == "__get__":
        return getattr(getattr(func, "__self__", None), "__name__", "") in _METADATA_PROPERTIES
    return name in _METADATA_FUNCTIONS


class _Dataflow(TorchFunctionMode):
    """Records, during one forward pass, which module (the innermost one running) reads the
    values of each Conv2d output, through any torch function or tensor method."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.calls: dict[str, int] = {}
        self.conv_output: dict[int, str] = {}  # id(conv output) -> conv name
        self.readers: dict[int, list[str]] = {}  # id(conv output) -> modules that read its values
        self.bn_input: dict[str, int] = {}  # BN name -> id(its input)
        self.keep_alive: list[torch.Tensor] = []  # ids stay unique while the tensors live
        self.handles: list[Any] = []
        for name, module in model.named_modules():
            self.handles.append(module.register_forward_pre_hook(self._enter(name)))
            self.handles.append(module.register_forward_hook(self._leave(name)))

    def _enter(self, name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple[Any, ...]) -> None:
            self.stack.append(name)
            self.calls[name] = self.calls.get(name, 0) + 1
            if _foldable_bn(module) and args and isinstance(args[0], torch.Tensor):
                self.bn_input[name] = id(args[0])

        return hook

    def _leave(self, name: str) -> Callable[..., None]:
        def hook(module: nn.Module, _args: Any, output: Any) -> None:
            self.stack.pop()
            if isinstance(module, nn.Conv2d) and isinstance(output, torch.Tensor):
                self.conv_output[id(output)] = name
                self.readers[id(output)] = []
                self.keep_alive.append(output)

        return hook

    def read(self, tensors: Any, reader: str) -> None:
        for leaf in pytree.tree_leaves(tensors):
            if isinstance(leaf, torch.Tensor) and id(leaf) in self.readers:
                self.readers[id(leaf)].append(reader)

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = kwargs or {}
        if not _reads_metadata_only(func):
            self.read((args, kwargs), self.stack[-1] if self.stack else "<outside the model>")
        return func(*args, **kwargs)

    def remove_hooks(self) -> None:
        for handle in self.handles:
            handle.remove()


def find_conv_bn_pairs(model: nn.Module, sample_size: tuple[int, int] = TRACE_SIZE) -> list[ConvBNPair]:
    """Every BatchNorm whose input is a Conv2d output that nothing else reads.

    Found by tracing one eval-mode forward pass of ``model`` (training flags are restored
    afterwards, BatchNorm statistics are not touched) on a random ``sample_size`` input: the BatchNorm must receive the convolution's output tensor
    itself, and every value read of that tensor (by any torch function or tensor method, in any
    module, or as a model output) must happen inside that BatchNorm. Modules called more than
    once are left alone. This covers ``Sequential(conv, bn)``, the residual blocks'
    ``conv1``/``bn1`` and OCR's ``Sequential(conv, Sequential(bn, relu))`` alike."""
    param = next(model.parameters())
    x = torch.randn(1, _input_channels(model), *sample_size, device=param.device, dtype=param.dtype)
    training = {module: module.training for module in model.modules()}
    flow = _Dataflow(model)
    try:
        model.eval()
        with torch.no_grad(), flow:
            outputs = model(x)
        flow.read(outputs, "<model output>")
    finally:
        flow.remove_hooks()
        for module, mode in training.items():
            module.training = mode
    pairs = []
    for bn, tensor_id in flow.bn_input.items():
        conv = flow.conv_output.get(tensor_id)
        if conv is None or flow.calls.get(conv) != 1 or flow.calls.get(bn) != 1:
            continue
        if all(reader == bn for reader in flow.readers[tensor_id]):
            pairs.append(ConvBNPair(conv, bn))
    return pairs


def _fold_into(conv: nn.Conv2d, bn: nn.modules.batchnorm._BatchNorm) -> None:
    """``conv`` <- ``bn(conv(.))`` in eval mode; the arithmetic is done in float64."""
    weight = conv.weight.detach().double()
    bias = conv.bias.detach().double() if conv.bias is not None else torch.zeros(weight.shape[0], dtype=torch.float64, device=weight.device)
    gamma = bn.weight.detach().double() if bn.weight is not None else torch.ones_like(bias)
    beta = bn.bias.detach().double() if bn.bias is not None else torch.zeros_like(bias)
    scale = gamma / torch.sqrt(bn.running_var.detach().double() + bn.eps)
    dtype = conv.weight.dtype
    conv.weight = nn.Parameter((weight * scale.reshape(-1, 1, 1, 1)).to(dtype), requires_grad=False)
    conv.bias = nn.Parameter(((bias - bn.running_mean.detach().double()) * scale + beta).to(dtype), requires_grad=False)


def fold_batchnorm(model: nn.Module, *, sample_size: tuple[int, int] = TRACE_SIZE) -> nn.Module:
    """An eval-mode copy of ``model`` with every BatchNorm that directly follows a Conv2d
    folded into that convolution (the BatchNorm becomes ``nn.Identity``). ``model`` itself is
    not modified. BatchNorms that cannot be folded stay (and are logged)."""
    return _fold_in_place(copy.deepcopy(unwrap_model(model)).eval(), sample_size)


def _fold_in_place(folded: nn.Module, sample_size: tuple[int, int]) -> nn.Module:
    pairs = find_conv_bn_pairs(folded, sample_size)
    for pair in pairs:
        conv = folded.get_submodule(pair.conv)
        bn = folded.get_submodule(pair.bn)
        _fold_into(conv, bn)
        parent_name, _, leaf = pair.bn.rpartition(".")
        parent = folded.get_submodule(parent_name) if parent_name else folded
        setattr(parent, leaf, nn.Identity())
    left = [name for name, m in folded.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    log.debug("folded %d BatchNorm layers into convolutions", len(pairs))
    if left:
        log.info("%d BatchNorm layers do not follow a convolution and were kept: %s", len(left), ", ".join(left[:10]))
    return folded


# --------------------------------------------------------------------------------------
# The prepared model
# --------------------------------------------------------------------------------------


class InferenceModel:
    """A prepared model: ``f(x) -> {"out": ...[, "aux": ...]}`` under ``torch.no_grad``.

    Inputs are moved to ``device``; outputs are contiguous float32 NCHW tensors on the input's
    device, whatever the path does inside."""

    def __init__(
        self,
        run: Callable[[torch.Tensor], dict[str, torch.Tensor]],
        *,
        path: str,
        align_corners: bool | None,
        num_classes: int,
        device: torch.device,
        module: nn.Module | None = None,
    ) -> None:
        self._run = run
        self.path = path
        self.align_corners = align_corners  # the wrapped model's
        self.num_classes = num_classes
        self.device = device
        self.module = module  # the prepared torch module (None for onnx)

    def __call__(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if x.ndim != 4:
            raise InferencePathError(f"expected an N x C x H x W image batch, got shape {tuple(x.shape)}")
        with torch.no_grad():
            outputs = self._run(x.to(self.device, non_blocking=True))
        return {k: v.to(x.device).float().contiguous() for k, v in outputs.items()}

    def __repr__(self) -> str:
        return f"InferenceModel(path={self.path!r}, device={self.device}, num_classes={self.num_classes}, align_corners={self.align_corners})"


def _torch_runner(module: nn.Module, channels_last: bool, autocast: torch.dtype | None, device: torch.device) -> Callable[[torch.Tensor], dict[str, torch.Tensor]]:
    memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def run(x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = x.contiguous(memory_format=memory_format)
        context = torch.autocast(device.type, dtype=autocast) if autocast is not None else contextlib.nullcontext()
        with context:
            return module(x)

    return run


def _onnx_runner(model: nn.Module, sample_size: tuple[int, int], has_aux: bool) -> Callable[[torch.Tensor], dict[str, torch.Tensor]]:
    missing = missing_onnx_packages()
    if missing:
        raise InferencePathError(f"inference path 'onnx' needs {' and '.join(missing)}, not installed here; pip install 'hrseg[onnx]'")
    import onnxruntime as ort


    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    with tempfile.TemporaryDirectory(prefix="hrseg-onnx-") as tmp:
        path = export_onnx(model, Path(tmp) / "model.onnx", height=sample_size[0], width=sample_size[1], dynamic=True, include_aux=has_aux)
        session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]

    def run(x: torch.Tensor) -> dict[str, torch.Tensor]:
        arrays = session.run(names, {"image": x.detach().cpu().float().contiguous().numpy()})
        return {name: torch.from_numpy(a) for name, a in zip(names, arrays)}

    return run


def _model_device(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


#: ``auto`` on CPU uses ONNX Runtime for models with at least this many parameters (W32, W48;
#: measured on W48): there it beats ``folded_cl`` at evaluation sizes; for the small models
#: the two are equal and the export is not worth its time.
ONNX_MIN_PARAMS = 20_000_000


def missing_onnx_packages() -> list[str]:
    """Which of the packages the ``onnx`` path needs (the ``[onnx]`` extra) are not importable."""
    missing = []
    for name in ("onnx", "onnxruntime"):
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    return missing


def onnx_path_available() -> bool:
    """True when the ``onnx`` path can run: onnx (for the export) and onnxruntime."""
    return not missing_onnx_packages()


def resolve_path(path: str, device: torch.device, model: nn.Module | None = None) -> str:
    """The concrete path ``auto`` stands for on ``device`` for ``model`` (other names are
    checked and returned unchanged)."""
    if path not in INFERENCE_PATHS:
        raise InferencePathError(f"unknown inference path {path!r}; valid: {', '.join(INFERENCE_PATHS)}")
    if path == "auto":
        if device.type == "cpu":
            if winograd_available() and (model is None or has_winograd_layers(model)):
                return "winograd"
            large = model is not None and sum(p.numel() for p in model.parameters()) >= ONNX_MIN_PARAMS
            return "onnx" if large and onnx_path_available() else "folded_cl"
        return "folded_cl" if device.type == "cuda" else "folded"
    if path == "winograd" and device.type != "cpu":
        raise InferencePathError(f"inference path 'winograd' runs on the CPU (NNPACK), got device {device}; use 'folded_cl' on {device.type}")
    if PATHS[path].needs_cuda:
        if not torch.cuda.is_available():
            raise InferencePathError(f"inference path {path!r} needs a CUDA GPU; none is available here")
        if device.type != "cuda":
            raise InferencePathError(f"inference path {path!r} needs a CUDA device, got device {device}")
    return path


def prepare_inference_model(
    model: nn.Module,
    path: str = "auto",
    device: str | torch.device | None = None,
    *,
    sample_size: tuple[int, int] | None = None,
) -> InferenceModel:
    """Prepare ``model`` for inference along ``path`` (one of ``INFERENCE_PATHS``).

    ``device`` defaults to the model's device. ``sample_size`` (height, width) is the input
    size used to trace the model (for BatchNorm folding, and as the ONNX export's example size;
    the export is dynamic either way); default ``TRACE_SIZE``. The caller's model is not
    modified: the prepared model is an eval-mode copy."""
    base = unwrap_model(model)
    device = torch.device(device) if device is not None else _model_device(base)
    chosen = resolve_path(path, device, base)
    info = PATHS[chosen]
    if not info.exact:
        log.warning("inference path %r: %s (opt-in)", chosen, info.description)
    size = tuple(sample_size) if sample_size is not None else TRACE_SIZE
    if len(size) != 2 or min(size) < 1:
        raise InferencePathError(f"sample_size must be (height, width) with positive values, got {sample_size!r}")
    align_corners = getattr(base, "align_corners", None)
    common = {
        "path": chosen,
        "align_corners": None if align_corners is None else bool(align_corners),
        "num_classes": int(getattr(base, "num_classes", 0)),
        "device": device,
    }

    if chosen == "onnx":
        has_aux = getattr(base, "head_name", "") == "ocr"
        common["device"] = torch.device("cpu")  # ONNX Runtime's CPU provider; outputs go back to x's device
        return InferenceModel(_onnx_runner(base, size, has_aux), **common)

    fold = chosen in ("folded", "folded_cl", "winograd", "cuda_fp16", "cuda_bf16")
    channels_last = chosen in ("channels_last", "folded_cl", "winograd", "cuda_fp16", "cuda_bf16")
    module = copy.deepcopy(base).to(device).eval()
    if fold:
        module = _fold_in_place(module, size)
    if channels_last:
        module = module.to(memory_format=torch.channels_last)
    if chosen == "winograd" and not use_winograd(module):
        log.info("inference path 'winograd': no layer of this model is large enough for Winograd (or NNPACK is not available): it runs as 'folded_cl'")
    for param in module.parameters():
        param.requires_grad_(False)
    autocast = {"cuda_fp16": torch.float16, "cuda_bf16": torch.bfloat16}.get(chosen)
    log.info("inference path %r on %s: %s", chosen, device, info.description)
    return InferenceModel(_torch_runner(module, channels_last, autocast, device), module=module, **common)
