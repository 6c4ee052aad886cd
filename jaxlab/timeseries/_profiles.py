"""Recent historic profiles (RHP) per day type and their simpler variants (ReCycle's fallback forecast).

A profile is ReCycle's base forecast (Weyrauch et al., arXiv 2405.03429): the network only learns the
residual on top of it. The series functions work on a series folded into cycles, ``x`` of shape
``(N, D)``, and are NumPy (they run once, on the host, before training). :func:`window_rhp` is the
same ``last_rhp`` profile computed inside one window in JAX, from the window's own cycles and the day
types its calendar marks give (:func:`day_type_onehot`), so that a forecaster can carry it.

Variants (``variant=`` in :func:`profile_windows`), after ``ReCycle/data/rhp_datasets.py``:

* ``"last_rhp"`` (default): the table of per-day-type means as of the last historic day serves the
  historic residuals and the forecast alike;
* ``"loose_rhp"``: each historic day uses the table as of that day; the forecast the last one;
* ``"persistence"``: each day is predicted by the day before; the forecast repeats the last
  historic day;
* ``"tenday"``: each day is predicted by the mean of the ten days before; the forecast repeats the
  mean of the last ten historic days.

Deviation from the reference: days that contain a NaN never enter a profile mean (the reference
skips them only while its window of ``n`` days is not yet full), and a day type not yet seen has a
NaN profile (the reference uses 0); :func:`profile_run_up` gives the run-up after which no NaN
remains for regular data.
"""

from __future__ import annotations

from typing import Literal

import jax.numpy as jnp
import numpy as np

from jaxlab.core import Array

Variant = Literal["last_rhp", "loose_rhp", "persistence", "tenday"]
VARIANTS: tuple[str, ...] = ("last_rhp", "loose_rhp", "persistence", "tenday")
NUM_DAY_TYPES = 3


def rhp_tables(x: np.ndarray, day_type: np.ndarray, n: int = 3) -> np.ndarray:
    """Per-day-type mean of the last ``n`` complete days of that type, as of each day.

    Args:
      x: ``(N, D)`` series in cycles.
      day_type: ``(N,)`` ints in ``{0, 1, 2}`` (see :func:`jaxlab.data.day_types`).
      n: days averaged per type (the paper's ``rhp_cycles = 3``).

    Returns:
      ``(N, 3, D)``: entry ``[t, k]`` averages the last ``n`` NaN-free days of type ``k`` among days
      ``0..t`` (day ``t`` included); fewer if fewer exist; NaN if none.
    """
    x = np.asarray(x, np.float64)
    day_type = np.asarray(day_type)
    _check(x, day_type)
    if n < 1:
        raise ValueError(f"n (days per profile) must be >= 1, got {n}")
    big_n, d = x.shape
    out = np.full((big_n, NUM_DAY_TYPES, d), np.nan)
    ok = np.isfinite(x).all(axis=1)
    for k in range(NUM_DAY_TYPES):
        sel = ok & (day_type == k)
        idx = np.flatnonzero(sel)
        if idx.size == 0:
            continue
        csum = np.concatenate([np.zeros((1, d)), np.cumsum(x[idx], axis=0)])
        count = np.cumsum(sel)  # complete type-k days among 0..t
        hi = count
        lo = np.maximum(count - n, 0)
        has = count > 0
        out[has, k] = (csum[hi[has]] - csum[lo[has]]) / (hi[has] - lo[has])[:, None]
    return out


def rhp_tables_reference(x: np.ndarray, day_type: np.ndarray, n: int = 3) -> np.ndarray:
    """Day-by-day loop oracle for :func:`rhp_tables`."""
    x = np.asarray(x, np.float64)
    big_n, d = x.shape
    out = np.full((big_n, NUM_DAY_TYPES, d), np.nan)
    recent: list[list[np.ndarray]] = [[] for _ in range(NUM_DAY_TYPES)]
    current = np.full((NUM_DAY_TYPES, d), np.nan)
    for t in range(big_n):
        k = int(day_type[t])
        if np.isfinite(x[t]).all():
            recent[k] = (recent[k] + [x[t]])[-n:]
            current[k] = np.mean(recent[k], axis=0)
        out[t] = current
    return out


def profile_run_up(variant: Variant, n: int = 3) -> int:
    """Cycles a profile needs before the first historic day (7 n for the RHP, as in the paper)."""
    _check_variant(variant)
    return {"last_rhp": 7 * n, "loose_rhp": 7 * n, "persistence": 1, "tenday": 10}[variant]


def profile_windows(
    x: np.ndarray,
    day_type: np.ndarray,
    origins: np.ndarray,
    *,
    history: int,
    horizon: int,
    variant: Variant = "last_rhp",
    n: int = 3,
) -> tuple[np.ndarray, np.ndarray]:
    """The profile of each historic and forecast day of each window.

    Args:
      x: ``(N, D)`` series in cycles (values after the last historic day are never used).
      day_type: ``(N,)`` day types.
      origins: ``(B,)`` index of each window's first forecast cycle.
      history, horizon: window lengths in cycles.
      variant: one of :data:`VARIANTS`.
      n: days per type for the RHP variants.

    Returns:
      ``(hist_profile (B, history, D), forecast_profile (B, horizon, D))``.
    """
    _check_variant(variant)
    x = np.asarray(x, np.float64)
    day_type = np.asarray(day_type)
    _check(x, day_type)
    origins = np.asarray(origins, np.int64)
    back = {"last_rhp": 0, "loose_rhp": 0, "persistence": 1, "tenday": 10}[variant]
    if origins.size and (origins.min() - history - back < 0 or origins.max() + horizon > x.shape[0]):
        raise ValueError(
            f"origins {origins.min()}..{origins.max()} need cycles {origins.min() - history - back}"
            f"..{origins.max() + horizon - 1} for variant {variant!r} but the series has "
            f"{x.shape[0]}; choose origins >= history + {back}"
        )
    hist_idx = origins[:, None] + np.arange(-history, 0)[None, :]
    fc_idx = origins[:, None] + np.arange(horizon)[None, :]
    if variant in ("last_rhp", "loose_rhp"):
        tables = rhp_tables(x, day_type, n)
        last = tables[origins - 1]  # (B, 3, D) as of the last historic day
        fc = np.take_along_axis(last, day_type[fc_idx][:, :, None], axis=1)
        if variant == "last_rhp":
            hist = np.take_along_axis(last, day_type[hist_idx][:, :, None], axis=1)
        else:
            hist = tables[hist_idx, day_type[hist_idx]]
        return hist, fc
    if variant == "persistence":
        prev = x[hist_idx - 1]
        fc = np.repeat(x[origins - 1][:, None], horizon, axis=1)
        return prev, fc
    # tenday: mean of the 10 days before each day
    csum = np.concatenate([np.zeros((1, x.shape[1])), np.cumsum(x, axis=0)])
    mean10 = lambda i: (csum[i] - csum[i - 10]) / 10.0  # noqa: E731  (days i-10 .. i-1)
    hist = mean10(hist_idx)
    fc = np.repeat(mean10(origins)[:, None], horizon, axis=1)
    return hist, fc


def _check(x: np.ndarray, day_type: np.ndarray) -> None:
    if x.ndim != 2:
        raise ValueError(f"x must be (cycles, D), got shape {x.shape}; fold it with to_cycles")
    if day_type.shape != (x.shape[0],):
        raise ValueError(f"day_type must have shape ({x.shape[0]},), got {day_type.shape}")
    if day_type.size and (day_type.min() < 0 or day_type.max() >= NUM_DAY_TYPES):
        raise ValueError("day_type values must be 0 (Mon-Fri), 1 (Saturday) or 2 (Sunday/holiday)")


def _check_variant(variant: str) -> None:
    if variant not in VARIANTS:
        raise ValueError(f"unknown profile variant {variant!r}; choose one of {VARIANTS}")


# ----------------------------------------------------------------------------- inside one window (JAX)


def day_type_onehot(meta: Array) -> Array:
    """One-hot day types ``(..., 3)`` from cycle metadata ``(..., >= 8)`` in :func:`jaxlab.data.cycle_metadata`'s layout.

    The first 7 features are the weekday one-hot (Monday first), the 8th the holiday flag. Type 2
    (Sunday or holiday) wins over type 1 (Saturday), as in :func:`jaxlab.data.day_types`.
    """
    if meta.shape[-1] < 8:
        raise ValueError(f"calendar marks need >= 8 features (weekday one-hot, holiday), got {meta.shape[-1]}")
    sunday_or_holiday = jnp.maximum(meta[..., 6], meta[..., 7])
    saturday = meta[..., 5] * (1 - sunday_or_holiday)
    return jnp.stack([1 - saturday - sunday_or_holiday, saturday, sunday_or_holiday], axis=-1)


def window_rhp(tokens: Array, hist_types: Array, fc_types: Array, n: int = 3) -> tuple[Array, Array]:
    """The ``last_rhp`` profile of one window from its own cycles: ``(hist_profile, fc_profile)``.

    Args:
      tokens: ``(B, L, D)`` history cycles (finite).
      hist_types: ``(B, L, K)`` one-hot day types of the history cycles.
      fc_types: ``(B, H, K)`` one-hot day types of the forecast cycles.
      n: cycles averaged per day type.

    Returns:
      ``(B, L, D)`` and ``(B, H, D)``: each cycle gets the mean of the last ``n`` history cycles of its
      type. A type absent from the history falls back to the mean of the last ``n`` history cycles
      (:func:`profile_windows` on the window alone gives NaN there; otherwise the two agree).
    """
    if n < 1:
        raise ValueError(f"n (cycles per profile) must be >= 1, got {n}")
    m = hist_types.astype(tokens.dtype)
    from_end = jnp.cumsum(m[:, ::-1], axis=1)[:, ::-1]          # type-k cycles among t..L-1
    w = m * (from_end <= n)
    count = jnp.sum(w, axis=1)                                   # (B, K)
    table = jnp.einsum("blk,bld->bkd", w, tokens) / jnp.maximum(count, 1)[..., None]
    length = tokens.shape[1]
    recent = jnp.mean(tokens[:, max(length - n, 0):], axis=1)    # (B, D)
    table = jnp.where(count[..., None] > 0, table, recent[:, None])
    hist = jnp.einsum("blk,bkd->bld", m, table)
    fc = jnp.einsum("bhk,bkd->bhd", fc_types.astype(tokens.dtype), table)
    return hist, fc
