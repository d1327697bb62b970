"""Training engine: losses, LR schedule, optimizer, the train loop and what it writes (progress,
``log.csv`` and curve, overlays).

The entry point is ``hrseg.engine.train.train(recipe, out_dir, *, resume=True, device=None,
tracker=None)`` (``hrseg train`` and the DVC train stage call it, with an
``hrseg.tracking.tracker.MlflowTracker``). It is not re-exported
here so that ``hrseg.engine.train`` keeps naming the module."""

from hrseg.engine.losses import SegmentationLoss, cross_entropy, ohem_cross_entropy
from hrseg.engine.schedule import Phase, Schedule, build_schedule, iters_per_epoch, poly_lr

__all__ = [
    "Phase",
    "Schedule",
    "SegmentationLoss",
    "build_schedule",
    "cross_entropy",
    "iters_per_epoch",
    "ohem_cross_entropy",
    "poly_lr",
]
