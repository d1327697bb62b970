"""The official learning-rate schedule: poly decay per iteration, optionally in two phases.

Official arithmetic (``tools/train.py`` and ``lib/utils/utils.py``, official.md section 6):

- ``epoch_iters = int(len(train_list) / BATCH_SIZE_PER_GPU / number_of_processes)``; we use
  the *real* world size (the official yaml's ``GPUS`` had to match it by hand) and divide by
  the gradient-accumulation steps as well;
- ``max_iters = epochs * epoch_iters``;
- after the optimizer step of iteration ``i`` of epoch ``e``, the LR is set to
  ``base_lr * (1 - (e * epoch_iters + i) / max_iters) ** 0.9``, so the first two steps both
  run at ``base_lr``. The loop walks the whole data loader, which can hold one batch more
  than ``epoch_iters``; the LR is clamped at 0 rather than going negative;
- ``*_epoch484x2`` recipes add an *extra* phase: ``extra_epochs`` more epochs on
  ``extra_split`` (trainval) with a fresh poly decay from ``extra_lr`` over
  ``extra_epochs * extra_epoch_iters``, keeping the optimizer state. Its first step still runs
  at the LR the main phase left behind (about 0), exactly as in the official code.
"""

from __future__ import annotations

from dataclasses import dataclass

from hrseg.errors import HrsegError


class ScheduleError(HrsegError):
    """A schedule that cannot run (e.g. a dataset smaller than one global batch)."""


def iters_per_epoch(num_samples: int, batch_size: int, world_size: int = 1, accumulate: int = 1) -> int:
    """Official ``int(len(dataset) / batch_size_per_process / processes)`` (/ accumulation)."""
    iters = int(num_samples / batch_size / world_size / accumulate)
    if iters < 1:
        raise ScheduleError(
            f"{num_samples} training samples give no full iteration with batch size {batch_size} per process x "
            f"{world_size} process(es) x {accumulate} accumulation step(s); lower train.batch_size or use more data"
        )
    return iters


def poly_lr(base_lr: float, iteration: int, max_iters: int, power: float = 0.9) -> float:
    """``base_lr * (1 - iteration / max_iters) ** power``, 0 once ``iteration >= max_iters``."""
    if iteration >= max_iters:
        return 0.0
    return base_lr * ((1 - float(iteration) / max_iters) ** power)


@dataclass(frozen=True)
class Phase:
    """A run of epochs with one poly decay: the main phase, or the extra (fine-tune) phase."""

    name: str  # "train" or "extra"
    split: str  # the list file the phase trains on
    first_epoch: int
    epochs: int
    iters_per_epoch: int
    base_lr: float

    @property
    def max_iters(self) -> int:
        return self.epochs * self.iters_per_epoch

    @property
    def end_epoch(self) -> int:
        return self.first_epoch + self.epochs


@dataclass(frozen=True)
class Schedule:
    phases: tuple[Phase, ...]
    power: float = 0.9

    @property
    def total_epochs(self) -> int:
        return self.phases[-1].end_epoch if self.phases else 0

    @property
    def total_iters(self) -> int:
        """Scheduled iterations (the loader may add up to one per epoch, as officially)."""
        return sum(p.max_iters for p in self.phases)

    def phase(self, epoch: int) -> Phase:
        for phase in self.phases:
            if phase.first_epoch <= epoch < phase.end_epoch:
                return phase
        raise ScheduleError(f"epoch {epoch} is outside the schedule (0..{self.total_epochs - 1})")

    def lr_after_step(self, epoch: int, i_iter: int) -> float:
        """The LR to set after the optimizer step of iteration ``i_iter`` (0-based) of ``epoch``."""
        phase = self.phase(epoch)
        return poly_lr(phase.base_lr, (epoch - phase.first_epoch) * phase.iters_per_epoch + i_iter, phase.max_iters, self.power)


def build_schedule(
    *,
    epochs: int,
    lr: float,
    train_samples: int,
    batch_size: int,
    world_size: int = 1,
    accumulate: int = 1,
    power: float = 0.9,
    train_split: str = "train",
    extra_epochs: int = 0,
    extra_lr: float = 0.001,
    extra_samples: int = 0,
    extra_split: str = "trainval",
) -> Schedule:
    """The main phase and, when ``extra_epochs > 0``, the extra phase."""
    if epochs < 0 or extra_epochs < 0:
        raise ScheduleError(f"train.epochs ({epochs}) and train.extra_epochs ({extra_epochs}) must be >= 0")
    phases = []
    if epochs > 0:
        phases.append(Phase("train", train_split, 0, epochs, iters_per_epoch(train_samples, batch_size, world_size, accumulate), lr))
    if extra_epochs > 0:
        phases.append(
            Phase("extra", extra_split, epochs, extra_epochs, iters_per_epoch(extra_samples, batch_size, world_size, accumulate), extra_lr)
        )
    if not phases:
        raise ScheduleError("train.epochs and train.extra_epochs are both 0: nothing to train")
    return Schedule(tuple(phases), power)
