"""Poly LR, iterations per epoch and the extra (trainval) phase against the official formulas."""

from __future__ import annotations

import pytest

from hrseg.engine.schedule import ScheduleError, build_schedule, iters_per_epoch, poly_lr


def official_lr(base_lr: float, cur_iters: int, max_iters: int, power: float = 0.9) -> float:
    """``adjust_learning_rate`` of the official lib/utils/utils.py."""
    return base_lr * ((1 - float(cur_iters) / max_iters) ** power)


@pytest.mark.parametrize(
    ("samples", "batch", "world", "expected"),
    [(2975, 3, 4, 247), (3475, 3, 4, 289), (30462, 10, 4, 761), (20210, 4, 4, 1263), (9000, 4, 4, 562), (2975, 3, 1, 991)],
)
def test_iters_per_epoch_official_formula(samples, batch, world, expected):
    assert iters_per_epoch(samples, batch, world) == expected


def test_accumulation_counts_like_processes():
    assert iters_per_epoch(2975, 3, 1, accumulate=4) == iters_per_epoch(2975, 3, 4)


def test_too_small_dataset_is_an_error():
    with pytest.raises(ScheduleError, match="5 training samples.*batch size 3.*2 process"):
        iters_per_epoch(5, 3, 2)


@pytest.mark.parametrize("it", [0, 1, 247, 1000, 60_000, 119_351, 119_547])
def test_poly_lr_equals_official(it):
    assert poly_lr(0.01, it, 119_548) == official_lr(0.01, it, 119_548)


def test_poly_lr_issue_91_log_value():
    # issue #91: "lr 3.1277e-05" at epoch 483, iteration 50 of 247 (Cityscapes OCR, 4 GPUs)
    schedule = build_schedule(epochs=484, lr=0.01, train_samples=2975, batch_size=3, world_size=4)
    assert schedule.total_iters == 119_548
    assert schedule.lr_after_step(483, 50) == pytest.approx(3.1277e-05, abs=5e-10)


def test_poly_lr_clamped_at_zero():
    assert poly_lr(0.01, 484 * 247, 484 * 247) == 0.0
    assert poly_lr(0.01, 484 * 247 + 1, 484 * 247) == 0.0


def test_lr_after_step_uses_epoch_times_epoch_iters():
    schedule = build_schedule(epochs=10, lr=0.02, train_samples=100, batch_size=4, world_size=2)  # 12 iterations/epoch
    assert schedule.phases[0].iters_per_epoch == 12
    for epoch, i in [(0, 0), (0, 11), (0, 12), (3, 5), (9, 11)]:
        assert schedule.lr_after_step(epoch, i) == official_lr(0.02, epoch * 12 + i, 120)


def test_extra_phase_restarts_poly_from_extra_lr():
    schedule = build_schedule(
        epochs=484, lr=0.01, train_samples=2975, batch_size=3, world_size=4, extra_epochs=484, extra_lr=0.001, extra_samples=3475
    )
    main, extra = schedule.phases
    assert (main.max_iters, extra.max_iters) == (119_548, 139_876)
    assert schedule.total_epochs == 968 and schedule.phase(484) is extra and schedule.phase(483) is main
    assert schedule.lr_after_step(484, 0) == official_lr(0.001, 0, 139_876)
    assert schedule.lr_after_step(500, 7) == official_lr(0.001, 16 * 289 + 7, 139_876)
    with pytest.raises(ScheduleError, match="epoch 968 is outside"):
        schedule.phase(968)
