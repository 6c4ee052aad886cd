"""Multivariate forecast windows: per-column scaling fitted on train, a chronological split, time features.

:func:`make_windows` prepares a :class:`jaxlab.data.TimeSeries` the way Time-Series-Library's
``Dataset_Custom`` does for long-horizon forecasting, built on ``jaxlab.data``'s pieces:

* the steps are cut chronologically 70/10/20 into train/validation/test
  (``jaxlab.data.chronological_split``; TSL rounds the train and test counts down and gives the
  rest to validation, which differs by at most a step or two);
* every column is standardised with the mean and standard deviation of the training steps
  (a per-column :class:`jaxlab.data.Scaler`);
* the time features of each step are ``jaxlab.data.calendar_features`` (time of day as sin/cos,
  weekday one-hot, public holiday) plus the day of the year as sin/cos (12 in all);
* a window of a split is a history of ``input_len`` steps and a forecast of ``horizon`` steps that
  lies inside the split; the history may reach back into the previous split (as in TSL).

:func:`evaluate_windows` runs a forecaster over **every** window of a split, padding the last batch
instead of dropping it. Time-Series-Library's test loader once used ``drop_last=True`` and silently
left out up to ``batch_size - 1`` test windows; the tests here check that none is lost.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from jaxlab import data as jdata

SPLITS: tuple[str, ...] = ("train", "val", "test")
NUM_TIME_FEATURES = 12


def time_features(timestamps: np.ndarray, holiday_per_step: np.ndarray) -> np.ndarray:
    """Per-step time features: ``jaxlab.data.calendar_features`` (10) and the day of the year as sin/cos.

    Returns:
      float64 ``(n, 12)``.
    """
    ts = np.asarray(timestamps, "datetime64[s]")
    year_start = ts.astype("datetime64[Y]").astype("datetime64[s]")
    frac = (ts - year_start).astype(np.int64).astype(np.float64) / (365.25 * 86400.0)
    doy = np.stack([np.sin(2 * np.pi * frac), np.cos(2 * np.pi * frac)], 1)
    return np.concatenate([jdata.calendar_features(ts, holiday_per_step), doy], 1)


def fit_column_scaler(x: np.ndarray) -> jdata.Scaler:
    """Per-column standardisation ``(x - mean) / std`` (population std; constant columns get scale 1)."""
    x = np.asarray(x, np.float64)
    mu, sd = np.nanmean(x, axis=0), np.nanstd(x, axis=0)
    return jdata.Scaler(mu, np.where(sd > 0, sd, 1.0))


@dataclasses.dataclass(frozen=True, eq=False)
class ForecastWindows:
    """Normalised series with its split and windows.

    Attributes:
      name: the series' name.
      columns: the ``C`` channel names.
      timestamps: ``(n,)`` ``datetime64[s]``.
      values: normalised float32 ``(n, C)``.
      marks: float32 ``(n, F)`` time features.
      scaler: the per-column scaler fitted on the training steps (``inverse`` gives the units back).
      bounds: split -> ``(start, stop)`` step range.
      input_len, horizon: window lengths in steps.
    """

    name: str
    columns: tuple[str, ...]
    timestamps: np.ndarray
    values: np.ndarray
    marks: np.ndarray
    scaler: jdata.Scaler
    bounds: Mapping[str, tuple[int, int]]
    input_len: int
    horizon: int

    @property
    def channels(self) -> int:
        return int(self.values.shape[1])

    def origins(self, split: str, stride: int = 1) -> np.ndarray:
        """First forecast step of every window whose forecast lies in ``split`` (every ``stride``-th)."""
        if split not in self.bounds:
            raise KeyError(f"unknown split {split!r}; choose from {tuple(self.bounds)}")
        start, stop = self.bounds[split]
        return np.arange(max(start, self.input_len), stop - self.horizon + 1, stride, dtype=np.int64)

    def num_windows(self, split: str) -> int:
        return int(self.origins(split).size)

    def gather(self, origins: np.ndarray) -> dict[str, np.ndarray]:
        """Windows at ``origins``: ``x (B, L, C)``, ``x_mark (B, L, F)``, ``y (B, H, C)``, ``y_mark (B, H, F)``."""
        o = np.asarray(origins, np.int64)
        hist = o[:, None] + np.arange(-self.input_len, 0)[None]
        fut = o[:, None] + np.arange(self.horizon)[None]
        return {"x": self.values[hist], "x_mark": self.marks[hist], "y": self.values[fut],
                "y_mark": self.marks[fut]}


def make_windows(series: jdata.TimeSeries, *, input_len: int = 96, horizon: int = 96,
                 fractions: Sequence[float] = (0.7, 0.1, 0.2), columns: Sequence[str] | None = None
                 ) -> ForecastWindows:
    """Normalises ``series`` on its training part and prepares its forecast windows.

    Args:
      series: the series (any number of columns).
      input_len: history length ``L``.
      horizon: forecast length ``H``.
      fractions: chronological train/validation/test fractions.
      columns: the channels to use (default: all, in order).

    Raises:
      ValueError: when a split holds no whole window or a column has missing values.
    """
    cols = tuple(series.columns if columns is None else columns)
    values = np.stack([series.column(c) for c in cols], 1)
    if not np.isfinite(values).all():
        bad = [c for c, ok in zip(cols, np.isfinite(values).all(0)) if not ok]
        raise ValueError(f"series {series.name!r} has missing values in {bad}; fill them first "
                         "(jaxlab.data.fill_missing or time_series(..., gaps='interpolate'))")
    n = values.shape[0]
    bounds = dict(zip(SPLITS, jdata.chronological_split(n, fractions)))
    tr0, tr1 = bounds["train"]
    scaler = fit_column_scaler(values[tr0:tr1])
    holiday = jdata.holiday_flags(series.timestamps.astype("datetime64[D]"), series.country, series.subdiv)
    win = ForecastWindows(name=series.name, columns=cols, timestamps=series.timestamps,
                          values=scaler.transform(values).astype(np.float32),
                          marks=time_features(series.timestamps, holiday).astype(np.float32),
                          scaler=scaler, bounds=bounds, input_len=input_len, horizon=horizon)
    for split in SPLITS:
        if win.num_windows(split) == 0:
            a, b = bounds[split]
            raise ValueError(f"split {split!r} (steps {a}..{b} of {n}) holds no forecast window of {horizon} "
                             f"steps after a history of {input_len}; shorten the windows")
    return win


def evaluate_windows(predict: Callable[[dict[str, np.ndarray]], Any], windows: ForecastWindows, split: str,
                     *, batch_size: int = 256, metrics: Mapping[str, Callable] | None = None,
                     stride: int = 1) -> dict[str, float]:
    """Mean metrics of ``predict`` over the windows of ``split`` (the last batch is padded, never dropped).

    Args:
      predict: ``predict(batch) -> (B, H, C)`` forecasts (normalised), ``batch`` as :meth:`ForecastWindows.gather`
        returns it; it always sees ``batch_size`` windows, so it compiles once.
      windows: the prepared windows.
      split: ``"train"``, ``"val"`` or ``"test"``.
      batch_size: windows per call.
      metrics: name -> ``f(error) -> per-window sums`` (default: ``mse`` and ``mae``); each is averaged
        over every entry of every window.
      stride: evaluate every ``stride``-th window (1: all of them).

    Returns:
      ``{metric: value, "windows": count}``.
    """
    metrics = metrics or {"mse": np.square, "mae": np.abs}
    origins = windows.origins(split, stride)
    totals = {k: 0.0 for k in metrics}
    count = 0
    for start in range(0, origins.size, batch_size):
        chunk = origins[start:start + batch_size]
        real = chunk.size
        if real < batch_size:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch_size - real)])
        batch = windows.gather(chunk)
        err = np.asarray(predict(batch), np.float64)[:real] - batch["y"][:real].astype(np.float64)
        for k, f in metrics.items():
            totals[k] += float(np.sum(f(err)))
        count += real
    entries = count * windows.horizon * windows.channels
    out = {k: v / entries for k, v in totals.items()}
    out["windows"] = count
    return out


def check_batch_shapes(arrays: Mapping[str, Any], tails: Mapping[str, tuple[int, ...]], *,
                       name: Callable[[str], str], context: str) -> None:
    """Checks a batch of windows before it reaches a model: every ``arrays[k]`` is ``(B,) + tails[k]``, with
    one ``B`` for all keys (shapes are static, so this runs at trace time inside jit).

    Args:
      arrays: the batch (keys present: callers check that first, with their own hint).
      tails: the per-window shape each key must have, in the order to check.
      name: how the error names key ``k`` (``lambda k: f"batch[{k!r}]"``).
      context: the error's end: the sizes that fix the shapes and how to make such windows.

    Raises:
      ValueError: ``"<name(k)> has shape S, expected (B,) + T with one B for all keys <context>"``.
    """
    b = None
    for k, tail in tails.items():
        shape = tuple(np.shape(arrays[k]))
        if len(shape) != len(tail) + 1 or shape[1:] != tuple(tail) or (b is not None and shape[0] != b):
            raise ValueError(f"{name(k)} has shape {shape}, expected (B,) + {tuple(tail)} with one B for all keys "
                             f"{context}")
        b = shape[0]
