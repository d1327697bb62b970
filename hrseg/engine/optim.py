"""The official optimizer: SGD with weight decay on every parameter, optional head LR group.

``tools/train.py``: SGD(momentum 0.9, nesterov False, weight decay on all parameters, BN and
biases included). When ``TRAIN.NONBACKBONE_KEYWORDS`` is set (PASCAL-Context and COCO-Stuff
recipes), parameters whose name contains one of the keywords form a second group whose LR is
``lr * NONBACKBONE_MULT``; the official ``adjust_learning_rate`` then hard-codes x10 for that
group, which equals ``NONBACKBONE_MULT`` in every official recipe. Here the group always uses
``train.head_lr_mult``.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from hrseg.config import ConfigError
from hrseg.recipe import TrainConfig

log = logging.getLogger(__name__)


def split_parameters(model: nn.Module, keywords: tuple[str, ...]) -> tuple[list[nn.Parameter], list[nn.Parameter], list[str]]:
    """(backbone params, head params, head param names): head = name contains a keyword."""
    base, head, head_names = [], [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if keywords and any(k in name for k in keywords):
            head.append(param)
            head_names.append(name)
        else:
            base.append(param)
    return base, head, head_names


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.SGD:
    """SGD over one group, or two when ``cfg.head_keywords`` is set (group 1 = head, LR x mult).

    ``model`` is the unwrapped model (names without a ``module.`` prefix)."""
    base, head, head_names = split_parameters(model, cfg.head_keywords)
    if cfg.head_keywords and not head:
        raise ConfigError(
            f"train.head_keywords: none of {list(cfg.head_keywords)} occurs in a parameter name of this model "
            f"(e.g. {next(iter(dict(model.named_parameters())), '')!r}); use cls/aux/ocr for OCR, last_layer for FCN"
        )
    groups: list[dict] = [{"params": base, "lr": cfg.lr}]
    if head:
        groups.append({"params": head, "lr": cfg.lr * cfg.head_lr_mult})
        log.info("%d head parameter tensors at LR x %g (%s)", len(head), cfg.head_lr_mult, ", ".join(sorted({n.split('.')[0] for n in head_names})))
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=cfg.nesterov)


def set_lr(optimizer: torch.optim.Optimizer, lr: float, head_lr_mult: float = 1.0) -> None:
    """Group 0 gets ``lr``; a second (head) group gets ``lr * head_lr_mult``."""
    optimizer.param_groups[0]["lr"] = lr
    for group in optimizer.param_groups[1:]:
        group["lr"] = lr * head_lr_mult
