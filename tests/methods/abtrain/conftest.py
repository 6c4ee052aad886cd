"""AB-training's tests compile at backend level 0, eager ops and the trainer's programs included (see
tests/timeseries/zoo_helpers): compiling is most of their time. Level 0 is LLVM's code generation; the
collective checks read the HLO, which the XLA passes before code generation still shape."""

from ...timeseries.zoo_helpers import _quick_compiles  # noqa: F401  (a fixture: this package's tests use it)
