"""WeatherMixer's tests compile at backend level 0 (eager ops and the library's own jits too) and place NumPy
arrays (see tests/timeseries/zoo_helpers): compiling is nearly all of their time."""

from ...timeseries.zoo_helpers import _quick_compiles, draw  # noqa: F401  (fixtures: this package's tests use them)
