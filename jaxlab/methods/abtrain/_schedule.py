"""The phase schedule of AB-training and its learning rate with rebounds.

With ``t`` the number of steps done (the reference's ``total_train_iterations``), the step that follows
runs in phase

* ``"full"`` while ``t < W`` (warm-up: synchronous data parallelism on ``W = A B``-free full weights);
* ``"ab"`` from ``t = W`` (``decompose`` without truncation) until the next multiple of ``S`` above ``W``;
* ``"full"`` for ``F`` steps after every sync at ``t = k S > W``;
* ``"ab"`` again from ``t = k S + F`` (new SVD and ``truncate``).

So the events at ``t`` are ``decompose`` (``t = W``), ``sync`` (``t = k S > W``) and ``truncate``
(``t = k S + F`` with ``k S > W``). ``W >= T`` never leaves the warm-up: plain data parallelism. The
phase is a pure function of ``t``, which is what lets a resumed run know its phase from its step.

Learning rate: a base schedule (linear warm-up from ``min_lr``, cosine to ``min_lr``, constant cool-down,
as the reference's timm scheduler) and, after every event, the reference's rebound: for the ``k``-th step
after an event (``k = 1 .. R``), ``lr = min(base, k (lr_before - 1e-5) / R)``, where ``lr_before`` is the
rate the step before the event used (so a rebound that starts inside another one starts lower, as in
the reference). Negative rates (``lr_before < 1e-5``) are clipped to 0.
"""

from __future__ import annotations

import dataclasses
import functools
import math

#: The rate a rebound starts from (the reference's ``warmup_lr``).
REBOUND_FLOOR = 1e-5


@dataclasses.dataclass(frozen=True)
class Schedule:
    """Phases of an AB-training run.

    Attributes:
      total_steps: ``T``.
      warmup_steps: ``W``, full-rank data-parallel steps before the first decomposition.
      sync_every: ``S``, steps between global syncs.
      full_steps: ``F``, full-rank steps after each sync (``0 <= F < S``).
    """

    total_steps: int
    warmup_steps: int
    sync_every: int
    full_steps: int

    def __post_init__(self):
        if self.total_steps < 1:
            raise ValueError(f"total_steps must be >= 1, got {self.total_steps}")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if self.sync_every < 1:
            raise ValueError(f"sync_every must be >= 1, got {self.sync_every}")
        if not 0 <= self.full_steps < self.sync_every:
            raise ValueError(f"full_steps must be in [0, sync_every={self.sync_every}), got {self.full_steps}")

    @property
    def active(self) -> bool:
        """Whether the run ever leaves the warm-up (``W < T``)."""
        return self.warmup_steps < self.total_steps

    def last_sync(self, t: int) -> int | None:
        """The last sync step ``k S`` with ``W < k S <= t`` (None before the first)."""
        k = (t // self.sync_every) * self.sync_every
        return k if k > self.warmup_steps else None

    def phase(self, t: int) -> str:
        """``"full"`` or ``"ab"``: the phase of the step that follows ``t`` steps done."""
        if t < self.warmup_steps or not self.active:
            return "full"
        last = self.last_sync(t)
        if last is not None and t - last < self.full_steps:
            return "full"
        return "ab"

    def events(self, t: int) -> tuple[str, ...]:
        """Phase changes to apply after ``t`` steps, before the next: ``decompose``, ``sync``, ``truncate``."""
        if not self.active or t >= self.total_steps or t < self.warmup_steps:
            return ()
        if t == self.warmup_steps:
            return ("decompose",)
        out = []
        if t % self.sync_every == 0:
            out.append("sync")
        last = self.last_sync(t)
        if last is not None and t - last == self.full_steps:
            out.append("truncate")
        return tuple(out)

    def event_steps(self) -> list[tuple[int, tuple[str, ...]]]:
        """Every ``(t, events)`` of the run, in order."""
        return [(t, e) for t in range(self.total_steps) if (e := self.events(t))]

    def full_rank_steps(self) -> int:
        """Steps that run in the full phase (warm-up included)."""
        return sum(1 for t in range(self.total_steps) if self.phase(t) == "full")

    def scaled(self, total_steps: int) -> Schedule:
        """The same proportions for ``total_steps`` (rounded): e.g. the VGG16 schedule of 15,000 steps at 3,000."""
        f = total_steps / self.total_steps
        s = max(1, round(self.sync_every * f))
        return Schedule(total_steps, round(self.warmup_steps * f), s, min(s - 1, round(self.full_steps * f)))


@dataclasses.dataclass(frozen=True)
class LearningRate:
    """Base schedule plus rebounds: ``lr(t)`` is the rate of the step that follows ``t`` steps done.

    Attributes:
      peak: the rate after the warm-up.
      total_steps: length of the run.
      warmup_steps: linear ramp from ``min_lr`` to ``peak``.
      cooldown_steps: constant ``min_lr`` at the end.
      min_lr: start and end rate (the reference's 1e-5).
      rebound_steps: ``R`` of the rebound after each event (0: no rebound).
      schedule: the phase schedule whose events start rebounds (None: no events).
    """

    peak: float
    total_steps: int
    warmup_steps: int = 0
    cooldown_steps: int = 0
    min_lr: float = 1e-5
    rebound_steps: int = 0
    schedule: Schedule | None = None

    def base(self, t: int) -> float:
        """The base schedule (no rebounds)."""
        if t < self.warmup_steps:
            return self.min_lr + (self.peak - self.min_lr) * t / self.warmup_steps
        decay = self.total_steps - self.cooldown_steps - self.warmup_steps
        if decay <= 0 or t >= self.total_steps - self.cooldown_steps:
            return self.min_lr
        x = (t - self.warmup_steps) / decay
        return self.min_lr + 0.5 * (self.peak - self.min_lr) * (1.0 + math.cos(math.pi * x))

    @functools.cached_property
    def _table(self) -> list[float]:
        rates: list[float] = []
        anchor: int | None = None
        slope = 0.0
        for t in range(self.total_steps + 1):
            if self.rebound_steps and self.schedule is not None and self.schedule.events(t):
                anchor = t
                before = rates[t - 1] if t > 0 else self.base(0)
                slope = max(before - REBOUND_FLOOR, 0.0) / self.rebound_steps
            lr = self.base(t)
            if anchor is not None and 1 <= t - anchor + 1 <= self.rebound_steps:
                lr = min(lr, (t - anchor + 1) * slope)
            rates.append(lr)
        return rates

    def __call__(self, t: int) -> float:
        if not 0 <= t <= self.total_steps:
            raise ValueError(f"step {t} outside [0, {self.total_steps}]")
        return self._table[t]
