"""jaxlab.sparse's tests compile at backend level 0 (tests/compile_helpers.py).

Compiling is most of their time: many small programs, each run once or a few times on tiny inputs (the tests
of tests/sparse: 33.4 -> 27.6 CPU-s at level 0). HLO fusion and SPMD partitioning still run; LLVM optimises
less. What XLA makes of a program at its default level is what the benchmarks measure, not these tests.
"""

from ..compile_helpers import _quick_compiles  # noqa: F401  (an autouse fixture of this package)
