"""The fwdgrad experiments' tests compile at backend level 0 (tests/compile_helpers.py).

Their programs (tiny MLP sweeps, closed-form descents) run once or twice each, so XLA's CPU backend
(LLVM) optimisations cost more time than they save (80 -> 48 CPU-s for this directory); level 0 computes
the same function. No test here measures compiled memory or FLOPs.
"""

from ...compile_helpers import _quick_compiles  # noqa: F401  (an autouse fixture of this package)
