"""Offline dataset loaders, synthetic generators and batching."""

from ._locate import DataNotFoundError as DataNotFoundError
from ._locate import locate_file as locate_file
from ._locate import package_dir as package_dir
from ._timeseries import CycleData as CycleData
from ._timeseries import Scaler as Scaler
from ._timeseries import TimeSeries as TimeSeries
from ._timeseries import calendar_features as calendar_features
from ._timeseries import chronological_split as chronological_split
from ._timeseries import cycle_metadata as cycle_metadata
from ._timeseries import cycle_windows as cycle_windows
from ._timeseries import day_types as day_types
from ._timeseries import fit_scaler as fit_scaler
from ._timeseries import from_cycles as from_cycles
from ._timeseries import gather_windows as gather_windows
from ._timeseries import holiday_flags as holiday_flags
from ._timeseries import load_elecdemand as load_elecdemand
from ._timeseries import load_taylor as load_taylor
from ._timeseries import make_cycle_data as make_cycle_data
from ._timeseries import time_series as time_series
from ._timeseries import to_cycles as to_cycles
