"""Timing of jitted functions: compile separately, warm up, block until ready, median and spread."""

from __future__ import annotations

import dataclasses
import statistics
import time
from typing import Any, Callable

import jax


@dataclasses.dataclass(frozen=True)
class Timing:
    """Result of :func:`time_fn`. All times in seconds."""

    compile_s: float
    median_s: float
    min_s: float
    iqr_s: float
    times_s: tuple[float, ...]

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def time_fn(
    fn: Callable[..., Any],
    *args: Any,
    warmup: int = 2,
    repeats: int = 10,
    min_time_s: float = 0.0,
    compile: bool = True,
) -> Timing:
    """Times ``fn(*args)``.

    If ``fn`` is a jitted function and ``compile`` is true, it is lowered and compiled first and the
    compile time is reported apart; the compiled executable is then timed. Every call is followed by
    ``jax.block_until_ready`` so asynchronous dispatch does not hide the work.

    Args:
      fn: the function to time (jitted or plain Python; anything returning arrays).
      *args: its arguments.
      warmup: untimed calls before timing.
      repeats: timed calls (at least this many).
      min_time_s: keep repeating until the timed calls add up to at least this long.
      compile: compile ahead of time when ``fn`` has ``.lower`` (a jitted function).

    Returns:
      A :class:`Timing` with the compile time, median, minimum and interquartile range.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    compile_s = 0.0
    call = fn
    if compile and hasattr(fn, "lower"):
        t0 = time.perf_counter()
        call = fn.lower(*args).compile()
        compile_s = time.perf_counter() - t0
    for _ in range(warmup):
        jax.block_until_ready(call(*args))
    times: list[float] = []
    total = 0.0
    while len(times) < repeats or total < min_time_s:
        t0 = time.perf_counter()
        jax.block_until_ready(call(*args))
        dt = time.perf_counter() - t0
        times.append(dt)
        total += dt
    times_sorted = sorted(times)
    if len(times) >= 4:
        q = statistics.quantiles(times_sorted, n=4)
        iqr = q[2] - q[0]
    else:
        iqr = times_sorted[-1] - times_sorted[0]
    return Timing(
        compile_s=compile_s,
        median_s=statistics.median(times_sorted),
        min_s=times_sorted[0],
        iqr_s=iqr,
        times_s=tuple(times),
    )
