"""jaxlab.sparse's tests compile at backend level 0 (see quick_compile)."""

from .quick_compile import _quick_compiles  # noqa: F401  (an autouse fixture of this package)
