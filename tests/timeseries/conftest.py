"""The time-series layer's tests compile at backend level 0 (see ``zoo_helpers``), and draw inputs with NumPy."""

from .zoo_helpers import _quick_compiles, draw  # noqa: F401  (fixtures: this package's tests use them)
