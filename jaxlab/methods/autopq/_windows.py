"""AutoPQ's data: the four series, the reference's splits, and one forecast window per time step.

A window has a forecast origin ``o`` (the first forecast step) and holds

* ``target`` ``(H,)``: ``y[o : o + H]``;
* ``history`` ``(L,)``: ``y[o - L : o]``, the point forecasters' input;
* ``future`` ``(H, F)``: what is known about the horizon: the calendar (workday, holiday, time of day
  sin/cos, month sin/cos) and the exogenous series (weather as an oracle forecast, as the reference
  does);
* ``lag`` ``(H,)``: the target lagged by ``H + 1`` steps, ``y[o - H - 1 : o - 1]`` (the reference's
  ``ClockShift(lag=H + 1)``; the newest value ``y[o - 1]`` is not in it);
* ``cond`` ``(H * F + H,)``: ``future`` and ``lag`` flattened and standard-scaled on the training
  windows: the cINN's conditions.

The target and the exogenous series are standard-scaled on the training steps. Splits follow the
reference (``data/utils.py``): the test part is the last 20% of the steps and the validation part the
last 30% of the rest; a split's windows forecast inside it, while their histories may reach into the
split before (known data; the reference instead drops the first ``2 H`` steps of every split).
Windows start at every step (stride 1) unless a stride is given.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, NamedTuple

import numpy as np

from jaxlab import data as jdata

#: Names of the calendar features per step.
CALENDAR = ("workday", "holiday", "day_sin", "day_cos", "month_sin", "month_cos")


@dataclasses.dataclass(frozen=True)
class SeriesSpec:
    """A series of the experiment.

    Attributes:
      name: key in :data:`SERIES`.
      horizon: H, forecast steps.
      exogenous: columns used as known covariates over the horizon.
      limits: physical (lower, upper) limits of the target (None: unbounded).
      history: L, the point forecasters' history length in steps.
      period: the daily period in steps (profile and persistence forecasters).
    """

    name: str
    horizon: int
    exogenous: tuple[str, ...]
    limits: tuple[float | None, float | None]
    history: int
    period: int


SERIES: dict[str, SeriesSpec] = {
    "elecdemand": SeriesSpec("elecdemand", 48, ("Temperature",), (0.0, None), 336, 48),
    "taylor": SeriesSpec("taylor", 48, (), (0.0, None), 336, 48),
    "bikeshare": SeriesSpec("bikeshare", 24, ("temp", "hum", "windspeed", "weathersit"), (0.0, None), 168, 24),
    "tmy3_ghi": SeriesSpec("tmy3_ghi", 24, ("TotCld", "DryBulb", "ETR"), (0.0, None), 72, 24),
}

LOADERS: dict[str, Callable[[], jdata.TimeSeries]] = {
    "elecdemand": jdata.load_elecdemand,
    "taylor": jdata.load_taylor,
    "bikeshare": jdata.load_bikeshare,
    "tmy3_ghi": jdata.load_tmy3_ghi,
}


class Windows(NamedTuple):
    """The windows of one split (see the module docstring); float32 except ``origins``."""

    origins: np.ndarray
    target: np.ndarray
    history: np.ndarray
    future: np.ndarray
    lag: np.ndarray
    cond: np.ndarray


class ForecastData(NamedTuple):
    """A series cut into windows.

    Attributes:
      spec: the :class:`SeriesSpec` (for a custom series, one built by the caller).
      series: the source series.
      splits: ``{"train", "val", "test"}`` -> :class:`Windows`.
      bounds: the splits' ``(start, stop)`` steps.
      scaler: the target's :class:`jaxlab.data.Scaler` (scaled = (y - offset) / scale).
      future_names: names of the ``F`` future features (calendar, then exogenous).
    """

    spec: SeriesSpec
    series: jdata.TimeSeries
    splits: dict[str, Windows]
    bounds: dict[str, tuple[int, int]]
    scaler: jdata.Scaler
    future_names: tuple[str, ...]


def reference_bounds(n: int, test: float = 0.2, val: float = 0.3) -> dict[str, tuple[int, int]]:
    """The reference's split of ``n`` steps: test = the last ``test`` share, val = the last ``val`` of the rest.

    Examples:
      >>> reference_bounds(1000)
      {'train': (0, 560), 'val': (560, 800), 'test': (800, 1000)}
    """
    split = int(n - n * test)
    start_val = int(split - split * val)
    if not 0 < start_val < split < n:
        raise ValueError(f"{n} steps are too few to split into train/val/test")
    return {"train": (0, start_val), "val": (start_val, split), "test": (split, n)}


def calendar_steps(series: jdata.TimeSeries) -> np.ndarray:
    """Per-step calendar ``(n, 6)``: workday, holiday, time of day and month as sin/cos."""
    ts = series.timestamps
    days = ts.astype("datetime64[D]")
    holiday = jdata.holiday_flags(days, series.country, series.subdiv)
    weekday = (days.astype(np.int64) + 3) % 7                      # Monday = 0
    workday = (weekday < 5) & ~holiday
    seconds = (ts - days).astype(np.int64).astype(np.float64)
    day_angle = 2 * np.pi * seconds / 86400.0
    month = (ts.astype("datetime64[M]").astype(np.int64) % 12).astype(np.float64)   # January = 0
    month_angle = 2 * np.pi * month / 12.0
    return np.stack([workday, holiday, np.sin(day_angle), np.cos(day_angle), np.sin(month_angle),
                     np.cos(month_angle)], 1).astype(np.float64)


def make_windows(series: jdata.TimeSeries, spec: SeriesSpec, *, strides: dict[str, int] | None = None,
                 test: float = 0.2, val: float = 0.3) -> ForecastData:
    """Cuts ``series`` into the windows of every split.

    Args:
      series: the series (its ``target`` column is forecast).
      spec: horizon, exogenous columns, history length.
      strides: steps between window origins per split (default 1 everywhere).
      test, val: the reference's split shares.

    Raises:
      ValueError: when a split holds no window or a column has missing values.
    """
    h, length = spec.horizon, spec.history
    y = series.column(series.target)
    n = y.shape[0]
    bounds = reference_bounds(n, test, val)
    tr0, tr1 = bounds["train"]
    scaler = jdata.fit_scaler(y[tr0:tr1], "standard")
    ys = scaler.transform(y)
    parts = [calendar_steps(series)]
    for col in spec.exogenous:
        v = series.column(col)
        parts.append(jdata.fit_scaler(v[tr0:tr1], "standard").transform(v)[:, None])
    feats = np.concatenate(parts, 1)
    if not np.isfinite(ys).all() or not np.isfinite(feats).all():
        raise ValueError(f"series {series.name!r} has missing values; fill them first "
                         "(e.g. time_series(..., gaps='interpolate'))")
    strides = {"train": 1, "val": 1, "test": 1, **(strides or {})}
    first = max(length, h + 1)
    raw: dict[str, dict[str, np.ndarray]] = {}
    for name, (a, b) in bounds.items():
        origins = np.arange(max(a, first), b - h + 1, strides[name], dtype=np.int64)
        if origins.size == 0:
            raise ValueError(f"split {name!r} (steps {a}..{b}) holds no window of {h} steps after a history of "
                             f"{length}; use a shorter history or horizon")
        steps = origins[:, None] + np.arange(h)[None]
        raw[name] = {
            "origins": origins,
            "target": ys[steps],
            "history": ys[origins[:, None] + np.arange(-length, 0)[None]],
            "future": feats[steps],
            "lag": ys[steps - (h + 1)],
        }
    flat = {k: np.concatenate([v["future"].reshape(len(v["origins"]), -1), v["lag"]], 1) for k, v in raw.items()}
    mu, sd = flat["train"].mean(0), flat["train"].std(0)
    sd = np.where(sd > 0, sd, 1.0)
    splits = {k: Windows(origins=v["origins"], target=v["target"].astype(np.float32),
                         history=v["history"].astype(np.float32), future=v["future"].astype(np.float32),
                         lag=v["lag"].astype(np.float32), cond=((flat[k] - mu) / sd).astype(np.float32))
              for k, v in raw.items()}
    names = CALENDAR + tuple(spec.exogenous)
    return ForecastData(spec=spec, series=series, splits=splits, bounds=bounds, scaler=scaler, future_names=names)


def load_windows(name: str, *, strides: dict[str, int] | None = None) -> ForecastData:
    """:func:`make_windows` of one of the :data:`SERIES` (loaded from its package)."""
    if name not in SERIES:
        raise ValueError(f"unknown series {name!r}; choose from {tuple(SERIES)}")
    return make_windows(LOADERS[name](), SERIES[name], strides=strides)
