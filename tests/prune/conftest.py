"""jaxlab.prune's tests compile at backend level 0 and draw inputs with NumPy (see tests/timeseries/zoo_helpers)."""

from ..timeseries.zoo_helpers import _quick_compiles, draw  # noqa: F401  (fixtures: this package's tests use them)
