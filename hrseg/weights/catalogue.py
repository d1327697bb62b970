"""The catalogue of pretrained weights that ``hrseg fetch`` knows by name.

Two kinds of entries:

``imagenet``
    HRNet-Image-Classification backbones, used as ``train.pretrained`` to initialise training.
``segmentation``
    The checkpoints released with the HRNet-OCR branch of HRNet-Semantic-Segmentation, loadable
    with ``hrseg.models.checkpoint.load_checkpoint`` for evaluation or fine-tuning.

Every download URL below was read from an official README; ``url_source`` on each entry says which one.
No sha256 is written here because none of these files could be downloaded while the catalogue
was assembled: the first successful download records its hash in a ledger next to the weights
(see ``hrseg.weights.download``) and later downloads must match it. Where no direct download URL could be
confirmed the entry has no URLs, ``notes`` says why, and ``manual`` says where a person can get
the file; ``hrseg fetch get NAME --from PATH`` then imports it.

Facts per checkpoint (model, classes, ``align_corners`` as trained, BatchNorm format, expected
numbers and their test protocol) follow the official README and the official experiment YAMLs;
"inferred" marks values deduced from the YAMLs rather than read from a checkpoint.
``find_weight_file`` tells which entry a file on disk is (by file name, else by sha256), so that
evaluation, prediction and export use the ``align_corners`` the file was trained with.

This is the one home of the published numbers: ``Benchmark`` per released file, and
``UNRELEASED_BENCHMARKS`` for the official results whose weights were never released (the
60-class PASCAL-Context rows); the README results table (``hrseg.tracking.results_table``)
reads them with ``published_benchmarks``.
"""

from __future__ import annotations

import os
import types
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from hrseg.errors import HrsegError
from hrseg.io import sha256_file

WeightKind = Literal["imagenet", "segmentation"]
BNFormat = Literal["standard", "inplace_abn"]

SEG_RELEASE = "https://github.com/hsfzxjy/models.storage/releases/download/HRNet-OCR/"
CLS_RELEASE = "https://github.com/HRNet/HRNet-Image-Classification/releases/download/PretrainedWeights/"
CLS_RELEASE_PAGE = "https://github.com/HRNet/HRNet-Image-Classification/releases/tag/PretrainedWeights"

SEG_URL_SOURCE = (
    "confirmed: HRNet/HRNet-Semantic-Segmentation README.md, branch HRNet-OCR (read at commit "
    "01ffd65), 'Github' link of the model's row"
)
CLS_URL_SOURCE = (
    "confirmed: HRNet/HRNet-Image-Classification README.md (read at commit f760c98), table "
    "'Newly added checkpoints'"
)
NO_URL_SOURCE = "none confirmed (see notes)"

_CLS_NO_URL_NOTE = (
    "No direct download URL could be confirmed. The official README links only OneDrive "
    "(reported dead, HRNet-Semantic-Segmentation#250) and BaiduYun share pages; a maintainer "
    f"points to the release page {CLS_RELEASE_PAGE} (HRNet-Image-Classification#30), but this "
    "file's asset name there is not confirmed (a 2021 third-party report, "
    "SimonVandenhende/Multi-Task-Learning-PyTorch#17, lists only HRNet_W18_C_pretrained.pth, "
    "HRNet_W18_C_ssld_pretrained.pth and HRNet_W18_C_cosinelr_cutmix_300epoch.pth.tar for W18 "
    "and no small-model file). Download it by hand and import it with --from, or serve it "
    "from a mirror."
)


class CatalogueError(HrsegError):
    """An unknown catalogue name."""


@dataclass(frozen=True)
class Benchmark:
    """One published number for a checkpoint and how it was measured."""

    value: float
    metric: str  # "mIoU" (segmentation) or "top-1" (ImageNet accuracy, %)
    protocol: str
    tta: bool = False  # test-time augmentation: several scales and/or flip (else one scale, no flip)

    def __str__(self) -> str:
        return f"{self.value:g} {self.metric}"


@dataclass(frozen=True)
class WeightEntry:
    """One downloadable weight file.

    ``urls`` are tried in order (primary first, then mirrors); ``filename`` is the name the
    file gets on disk (the official name, which the official configs and our recipes use).
    """

    name: str
    kind: WeightKind
    filename: str
    urls: tuple[str, ...]
    url_source: str  # which document confirmed the URLs
    manual: str  # where a person can get the file by hand (share pages, access codes)
    sha256: str | None
    dataset: str  # a hrseg.data dataset key, or "imagenet"
    backbone: str  # a hrseg.models backbone name
    head: Literal["fcn", "ocr"] | None  # None for ImageNet backbones
    num_classes: int
    align_corners: bool | None  # as trained; None for ImageNet backbones
    bn_format: BNFormat  # "standard" (_torch11, ImageNet) or "inplace_abn" (_torch04)
    benchmarks: tuple[Benchmark, ...] = ()
    notes: str = ""

    @property
    def model(self) -> str:
        """The hrseg model name (``hrnetv2_w48_ocr``), or the backbone for ImageNet weights."""
        return f"{self.backbone}_{self.head}" if self.head else self.backbone

    @property
    def expected(self) -> Benchmark | None:
        """The headline number (the first benchmark), if any."""
        return self.benchmarks[0] if self.benchmarks else None


def _imagenet(
    name: str, filename: str, backbone: str, top1: float, manual: str, *, urls: tuple[str, ...] = (), notes: str = ""
) -> WeightEntry:
    return WeightEntry(
        name=name,
        kind="imagenet",
        filename=filename,
        urls=urls,
        url_source=CLS_URL_SOURCE if urls else NO_URL_SOURCE,
        manual=manual,
        sha256=None,
        dataset="imagenet",
        backbone=backbone,
        head=None,
        num_classes=1000,
        align_corners=None,
        bn_format="standard",
        benchmarks=(Benchmark(top1, "top-1", "ImageNet val, 224x224 centre crop (HRNet-Image-Classification README)"),),
        notes=notes or _CLS_NO_URL_NOTE,
    )


def _segmentation(
    name: str,
    filename: str,
    head: Literal["fcn", "ocr"],
    dataset: str,
    num_classes: int,
    align_corners: bool,
    benchmarks: tuple[Benchmark, ...],
    baidu: str,
    *,
    notes: str = "",
) -> WeightEntry:
    bn_format: BNFormat = "inplace_abn" if "_torch04" in filename else "standard"
    return WeightEntry(
        name=name,
        kind="segmentation",
        filename=filename,
        urls=(SEG_RELEASE + filename,),
        url_source=SEG_URL_SOURCE,
        manual=f"BaiduYun {baidu} (HRNet-OCR README)",
        sha256=None,
        dataset=dataset,
        backbone="hrnetv2_w48",
        head=head,
        num_classes=num_classes,
        align_corners=align_corners,
        bn_format=bn_format,
        benchmarks=benchmarks,
        notes=notes,
    )


_CS_VAL = "Cityscapes val, single scale 1024x2048, no flip"
_CS_TEST = "Cityscapes test server, scales 0.5-1.75 + flip, trained on train+val"
_LIP = "LIP val (testval, 473x473), single scale + flip"
_PC59 = "PASCAL-Context val, 59 classes, scales 0.5-2.0 + flip (520x520 windows)"
_PC60 = "PASCAL-Context val, 60 classes, scales 0.5-2.0 + flip (520x520 windows)"
_OHEM_SS = "single scale, no flip (trained with OHEM, 520x520)"
_OHEM_MS = "scales 0.5-2.0 + flip (trained with OHEM, 520x520)"
_ALIGN_FALSE = (
    "align_corners=False is inferred: this model family's YAMLs pin ALIGN_CORNERS False since "
    "2019-12-23, while the README says True; check both when reproducing the number."
)
_ALIGN_DEFAULT = "align_corners=True is inferred: the YAML leaves ALIGN_CORNERS at its default (True)."
_ABN = "Trained with In-Place ABN (PyTorch 0.4.1): BN weights load as |w| + 1e-5."

_ENTRIES = (
    # ---- ImageNet backbones (HRNet-Image-Classification) ----
    _imagenet(
        "hrnetv2_w48_imagenet", "hrnetv2_w48_imagenet_pretrained.pth", "hrnetv2_w48", 79.3,
        "BaiduYun https://pan.baidu.com/s/13b8srQn8ARF9zHsaxvpRWA, access code 68g2; "
        "OneDrive https://1drv.ms/u/s!Aus8VCZ_C_33dKvqI6pBZlifgJk; " + CLS_RELEASE_PAGE,
    ),
    _imagenet(
        "hrnetv2_w32_imagenet", "hrnetv2_w32_imagenet_pretrained.pth", "hrnetv2_w32", 78.5,
        "BaiduYun https://pan.baidu.com/s/1xn92PSCg5KtXkKcnnLOycw, access code itc1; "
        "OneDrive https://1drv.ms/u/s!Aus8VCZ_C_33dYBMemi9xOUFR0w; " + CLS_RELEASE_PAGE,
    ),
    _imagenet(
        "hrnetv2_w18_imagenet", "hrnetv2_w18_imagenet_pretrained.pth", "hrnetv2_w18", 76.8,
        "BaiduYun https://pan.baidu.com/s/1Px_g1E2BLVRkKC5t-b-R5Q, access code r5xn; "
        "OneDrive https://1drv.ms/u/s!Aus8VCZ_C_33cMkPimlmClRvmpw; " + CLS_RELEASE_PAGE,
    ),
    _imagenet(
        "hrnetv2_w18_small_v1_imagenet", "hrnet_w18_small_model_v1.pth", "hrnetv2_w18_small_v1", 72.3,
        "BaiduYun https://pan.baidu.com/s/1snP_gTz50pJp2g07anVIEA, access code v3sw; "
        "OneDrive https://1drv.ms/u/s!Aus8VCZ_C_33gRv2PI1vjJyn2g7G?e=i8Rdzx",
    ),
    _imagenet(
        "hrnetv2_w18_small_v2_imagenet", "hrnet_w18_small_model_v2.pth", "hrnetv2_w18_small_v2", 75.1,
        "BaiduYun https://pan.baidu.com/s/1tbL45sOS4mXNGgyS4YCQww, access code bnc9; "
        "OneDrive https://1drv.ms/u/s!Aus8VCZ_C_33gRmfdPR79WBS61Qn?e=HVZUi8",
    ),
    _imagenet(
        "hrnetv2_w48_imagenet_ssld", "HRNet_W48_C_ssld_pretrained.pth", "hrnetv2_w48", 83.6,
        CLS_RELEASE_PAGE,
        urls=(CLS_RELEASE + "HRNet_W48_C_ssld_pretrained.pth",),
        notes="Converted from PaddleClas (SSLD distillation); the init of the official '_paddle' "
        "experiment YAMLs. Key layout assumed equal to the other HRNet-Image-Classification "
        "files (not checked against a downloaded file).",
    ),
    _imagenet(
        "hrnetv2_w18_imagenet_ssld", "HRNet_W18_C_ssld_pretrained.pth", "hrnetv2_w18", 81.2,
        CLS_RELEASE_PAGE,
        urls=(CLS_RELEASE + "HRNet_W18_C_ssld_pretrained.pth",),
        notes="Converted from PaddleClas (SSLD distillation). Key layout assumed equal to the "
        "other HRNet-Image-Classification files (not checked against a downloaded file).",
    ),
    # ---- Released segmentation checkpoints (HRNet-OCR README) ----
    _segmentation(
        "hrnetv2_w48_cityscapes", "hrnet_cs_8090_torch11.pth", "fcn", "cityscapes", 19, False,
        (Benchmark(80.9, "mIoU", _CS_VAL),),
        "https://pan.baidu.com/s/1KyiOUOR0SYxKtJfIlD5o-w, access code pmix",
        notes=_ALIGN_FALSE + " Carries loss.criterion.weight (dropped on load).",
    ),
    _segmentation(
        "hrnetv2_w48_ocr_cityscapes", "hrnet_ocr_cs_8162_torch11.pth", "ocr", "cityscapes", 19, True,
        (Benchmark(81.6, "mIoU", _CS_VAL),),
        "https://pan.baidu.com/s/1BGNt4Xmx3yfXUS8yjde0hQ, access code fa6i",
        notes="Carries loss.criterion.weight (dropped on load).",
    ),
    _segmentation(
        "hrnetv2_w48_ocr_cityscapes_trainval", "hrnet_ocr_cs_trainval_8227_torch11.pth", "ocr", "cityscapes", 19, True,
        (Benchmark(82.3, "mIoU", _CS_TEST, tta=True),),
        "https://pan.baidu.com/s/16mD81UnGzjUBD-haDQfzIQ, access code ycrk",
        notes="The README's test command misnames this file hrnet_ocr_trainval_cs_8227_torch11.pth. "
        "Trained on train+val: do not report Cityscapes val numbers with it.",
    ),
    _segmentation(
        "hrnetv2_w48_lip", "hrnet_lip_5583_torch04.pth", "fcn", "lip", 20, False,
        (Benchmark(55.83, "mIoU", _LIP, tta=True),),
        "https://pan.baidu.com/s/15DamFiGEoxwDDF1TwuZdnA, access code fahi",
        notes=_ABN + " " + _ALIGN_FALSE,
    ),
    _segmentation(
        "hrnetv2_w48_ocr_lip", "hrnet_ocr_lip_5648_torch04.pth", "ocr", "lip", 20, True,
        (Benchmark(56.48, "mIoU", _LIP, tta=True),),
        "https://pan.baidu.com/s/1dFYSR2bahRnvpIOdh88kOQ, access code xex2",
        notes=_ABN + " The README says this result reproduces only with PyTorch 0.4.1.",
    ),
    _segmentation(
        "hrnetv2_w48_pascal_ctx", "hrnet_pascal_ctx_5410_torch11.pth", "fcn", "pascal_ctx", 59, False,
        (Benchmark(54.1, "mIoU", _PC59, tta=True),),
        "https://pan.baidu.com/s/1m0MqpHSk0SX380EYEMawSA, access code wz6v",
        notes=_ALIGN_FALSE + " The README's 60-class HRNetV2-W48+OCR row links this same "
        "59-class file by mistake; no 60-class checkpoint is released on GitHub.",
    ),
    _segmentation(
        "hrnetv2_w48_ocr_pascal_ctx", "hrnet_ocr_pascal_ctx_5618_torch11.pth", "ocr", "pascal_ctx", 59, True,
        (Benchmark(56.2, "mIoU", _PC59, tta=True),),
        "https://pan.baidu.com/s/1XYP54gr3XB76tHmCcKdU9g, access code yyxh",
    ),
    _segmentation(
        "hrnetv2_w48_cocostuff", "hrnet_cocostuff_3617_torch04.pth", "fcn", "cocostuff", 171, True,
        (Benchmark(36.2, "mIoU", "COCO-Stuff-10k val, " + _OHEM_SS), Benchmark(37.9, "mIoU", "COCO-Stuff-10k val, " + _OHEM_MS, tta=True)),
        "https://pan.baidu.com/s/1VAV6KThH1Irzv9HZgLWE2Q, access code 92gw",
        notes=_ABN + " " + _ALIGN_DEFAULT,
    ),
    _segmentation(
        "hrnetv2_w48_ocr_cocostuff", "hrnet_ocr_cocostuff_3965_torch04.pth", "ocr", "cocostuff", 171, True,
        (Benchmark(39.7, "mIoU", "COCO-Stuff-10k val, " + _OHEM_SS), Benchmark(40.6, "mIoU", "COCO-Stuff-10k val, " + _OHEM_MS, tta=True)),
        "https://pan.baidu.com/s/1HFSYyVwKBG3E6y76gcPjDA, access code sjc4",
        notes=_ABN,
    ),
    _segmentation(
        "hrnetv2_w48_ade20k", "hrnet_ade20k_4312_torch04.pth", "fcn", "ade20k", 150, True,
        (Benchmark(43.1, "mIoU", "ADE20K val, " + _OHEM_SS), Benchmark(44.2, "mIoU", "ADE20K val, " + _OHEM_MS, tta=True)),
        "https://pan.baidu.com/s/11neVkzxx27qS2-mPFW9dfg, access code f6xf",
        notes=_ABN + " " + _ALIGN_DEFAULT,
    ),
    _segmentation(
        "hrnetv2_w48_ocr_ade20k", "hrnet_ocr_ade20k_4451_torch04.pth", "ocr", "ade20k", 150, True,
        (Benchmark(44.5, "mIoU", "ADE20K val, " + _OHEM_SS), Benchmark(45.5, "mIoU", "ADE20K val, " + _OHEM_MS, tta=True)),
        "https://pan.baidu.com/s/1HLhjiLIdgaOHs0SzEtkgkQ, access code peg4",
        notes=_ABN,
    ),
)

#: Every known weight file by name (read-only).
CATALOGUE: Mapping[str, WeightEntry] = types.MappingProxyType({entry.name: entry for entry in _ENTRIES})

#: Published numbers of models whose weights were not released, by the name their catalogue
#: entry would have (HRNet-OCR README; the master README gives 48.3 for 480x480 too).
UNRELEASED_BENCHMARKS: Mapping[str, tuple[Benchmark, ...]] = types.MappingProxyType(
    {
        "hrnetv2_w48_pascal_ctx60": (Benchmark(48.3, "mIoU", _PC60, tta=True),),
        "hrnetv2_w48_ocr_pascal_ctx60": (Benchmark(50.1, "mIoU", _PC60, tta=True),),
    }
)


def published_benchmarks(name: str) -> tuple[Benchmark, ...]:
    """The published numbers of model ``name``: a released file's (``CATALOGUE``) or an
    unreleased model's (``UNRELEASED_BENCHMARKS``); an unknown name raises ``CatalogueError``."""
    if name in UNRELEASED_BENCHMARKS:
        return UNRELEASED_BENCHMARKS[name]
    return get_entry(name).benchmarks


def get_entry(name: str) -> WeightEntry:
    """The catalogue entry called ``name``; an unknown name raises an error listing the valid ones."""
    try:
        return CATALOGUE[name]
    except KeyError:
        raise CatalogueError(f"unknown weights {name!r}; expected one of: {', '.join(CATALOGUE)}") from None


def find_weight_file(path: str | os.PathLike, catalogue: Mapping[str, WeightEntry] = CATALOGUE) -> tuple[WeightEntry, str] | None:
    """The catalogue entry a weight file is, and how it was recognised (``"file name"`` or
    ``"sha256"``); ``None`` for a file the catalogue does not know.

    The file name is compared first. Only when no entry has that name, and some entry records a
    sha256, is the file hashed (about 1 s for a 250 MB release) and compared with the recorded
    hashes."""
    path = Path(path)
    for entry in catalogue.values():
        if entry.filename == path.name:
            return entry, "file name"
    hashed = {entry.sha256: entry for entry in catalogue.values() if entry.sha256}
    if hashed and path.is_file():
        entry = hashed.get(sha256_file(path))
        if entry is not None:
            return entry, "sha256"
    return None
