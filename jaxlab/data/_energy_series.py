"""Hourly energy-related series that ship in PyPI packages: Capital Bikeshare 2011 (ISLP) and TMY3 solar
irradiance for Greensboro, NC (pvlib).

Both come back as :class:`jaxlab.data.TimeSeries` with daily cycles of 24 hours.
"""

from __future__ import annotations

import numpy as np

from ._locate import locate_file
from ._timeseries import TimeSeries, time_series

_ISLP_HINT = "pip install --no-deps islp==0.6.0"
_PVLIB_HINT = "pip install --no-deps pvlib==0.16.1"

#: ISLP's weather situations, coded 1-4 as in the UCI bike-sharing data.
WEATHERSIT_CODES = {"clear": 1.0, "cloudy/misty": 2.0, "light rain/snow": 3.0, "heavy rain/snow": 4.0}


def load_bikeshare() -> TimeSeries:
    """Capital Bikeshare (Washington, DC), hourly rentals in 2011 with the weather (ISLP's ``Bikeshare``).

    ISLP ships 8,645 of the year's 8,760 hours (hours without data are missing, mostly at night). The
    missing hours are filled by linear interpolation in time of every column, which is how AutoPQ's
    "Mobility" series (the UCI bike-sharing data) fills them: the two agree at all 8,645 shipped hours and
    at the 115 filled ones. Columns: ``bikers`` (rentals per hour, the target), ``temp``, ``atemp``,
    ``hum``, ``windspeed`` (normalised as in the UCI data), ``weathersit`` (1 clear ... 4 heavy rain or
    snow), ``workingday``, ``holiday``. Holidays: ``US``/``DC``.

    Raises:
      DataNotFoundError: when ISLP is not installed (``pip install --no-deps islp==0.6.0``; ``--no-deps``
        because ISLP's dependencies include torch).
    """
    import pandas as pd

    path = locate_file("ISLP/Bikeshare.csv", python_package="ISLP", package_path="data/Bikeshare.csv",
                       install_hint=_ISLP_HINT)
    df = pd.read_csv(path)
    unknown = set(df["weathersit"]) - set(WEATHERSIT_CODES)
    if unknown:
        raise ValueError(f"{path}: unknown weathersit values {sorted(unknown)}; expected {sorted(WEATHERSIT_CODES)}")
    day = df["day"].to_numpy(np.int64) - 1
    stamps = (np.datetime64("2011-01-01T00:00:00", "s") + day * np.timedelta64(86400, "s")
              + df["hr"].to_numpy(np.int64) * np.timedelta64(3600, "s"))
    cols = ("bikers", "temp", "atemp", "hum", "windspeed", "weathersit", "workingday", "holiday")
    values = np.stack([df[c].map(WEATHERSIT_CODES).to_numpy(np.float64) if c == "weathersit"
                       else df[c].to_numpy(np.float64) for c in cols], 1)
    return time_series(stamps, values, columns=cols, target="bikers", name="bikeshare", units="bikes/h",
                       country="US", subdiv="DC", gaps="interpolate")


def load_tmy3_ghi(year: int = 2001) -> TimeSeries:
    """Global horizontal irradiance of a typical meteorological year at Greensboro, NC (NREL TMY3 723170).

    **Each month comes from a different year** (1980-2003: the TMY3 method picks the most typical
    January, February, ... separately), so the series breaks at every month boundary; it is not a
    continuous record. The file's hour-ending local standard times (01:00 ... 24:00) become hour-starting
    stamps of one calendar ``year`` (non-leap; default 2001), so the series runs from ``year``-01-01 00:00
    for 8,760 hours. Columns: ``GHI`` (W/m^2, the target), ``ETR`` (extraterrestrial horizontal
    radiation, W/m^2), ``TotCld`` (total sky cover, tenths), ``DryBulb`` (deg C). Holidays: ``US``/``NC``
    (of ``year``; they hardly matter for irradiance).

    Raises:
      DataNotFoundError: when pvlib is not installed (``pip install --no-deps pvlib==0.16.1``).
      ValueError: when ``year`` is a leap year (TMY3 has 365 days).
    """
    import pandas as pd

    if (year % 4 == 0 and year % 100 != 0) or year % 400 == 0:
        raise ValueError(f"year {year} is a leap year; TMY3 has 365 days, pass a non-leap year such as 2001")
    path = locate_file("pvlib/723170TYA.CSV", python_package="pvlib", package_path="data/723170TYA.CSV",
                       install_hint=_PVLIB_HINT)
    df = pd.read_csv(path, skiprows=1)
    if len(df) != 8760:
        raise ValueError(f"{path}: expected 8,760 hourly rows of a typical year, got {len(df)}")
    stamps = np.datetime64(f"{year}-01-01T00:00:00", "s") + np.arange(8760) * np.timedelta64(3600, "s")
    names = {"GHI": "GHI (W/m^2)", "ETR": "ETR (W/m^2)", "TotCld": "TotCld (tenths)", "DryBulb": "Dry-bulb (C)"}
    values = np.stack([df[src].to_numpy(np.float64) for src in names.values()], 1)
    return time_series(stamps, values, columns=tuple(names), target="GHI", name="tmy3_ghi", units="W/m^2",
                       country="US", subdiv="NC")
