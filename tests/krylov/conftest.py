"""These tests compile at backend level 0 (see tests/sparse/quick_compile)."""

from ..sparse.quick_compile import _quick_compiles  # noqa: F401  (an autouse fixture of this package)
