"""jaxlab.nn's tests compile at backend level 0, eager ops included (see tests/timeseries/zoo_helpers)."""

from ..timeseries.zoo_helpers import _quick_compiles, draw  # noqa: F401  (fixtures: this package's tests use them)
