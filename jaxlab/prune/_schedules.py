"""Sparsity schedules: one-shot and the gradual cubic schedule of Zhu & Gupta (arXiv 1710.01878)."""

from __future__ import annotations

from typing import Callable


def _check(final_sparsity: float, initial_sparsity: float = 0.0) -> None:
    for name, s in (("final_sparsity", final_sparsity), ("initial_sparsity", initial_sparsity)):
        if not 0.0 <= s < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {s}")


def one_shot_schedule(sparsity: float, step: int = 0) -> Callable[[int], float]:
    """Sparsity 0 before ``step``, ``sparsity`` from ``step`` on."""
    _check(sparsity)
    return lambda t: float(sparsity) if t >= step else 0.0


def cubic_schedule(final_sparsity: float, begin_step: int, end_step: int, *, initial_sparsity: float = 0.0,
                   frequency: int = 1) -> Callable[[int], float]:
    """Zhu & Gupta's gradual schedule: s_t = s_f + (s_i - s_f) (1 - (t - t_0) / (t_1 - t_0))^3.

    The sparsity changes only every ``frequency`` steps between ``begin_step`` and ``end_step`` and
    stays at ``final_sparsity`` after.

    Examples:
      >>> s = cubic_schedule(0.9, 0, 100)
      >>> s(0), round(s(50), 4), s(100), s(1000)
      (0.0, 0.7875, 0.9, 0.9)
    """
    _check(final_sparsity, initial_sparsity)
    if end_step <= begin_step:
        raise ValueError(f"end_step ({end_step}) must be after begin_step ({begin_step})")
    if frequency < 1:
        raise ValueError(f"frequency must be >= 1, got {frequency}")

    def schedule(t: int) -> float:
        if t < begin_step:
            return float(initial_sparsity)
        if t >= end_step:
            return float(final_sparsity)
        t = begin_step + ((t - begin_step) // frequency) * frequency
        frac = 1.0 - (t - begin_step) / (end_step - begin_step)
        return float(final_sparsity + (initial_sparsity - final_sparsity) * frac ** 3)

    return schedule
