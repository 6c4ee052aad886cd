"""Neuron Transplantation's tests compile at backend level 0, eager ops and the library's jits included (see
tests/timeseries/zoo_helpers): compiling is most of their time."""

from ...timeseries.zoo_helpers import _quick_compiles  # noqa: F401  (a fixture: this package's tests use it)
